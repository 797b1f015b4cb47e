"""No surprise: a typo never leads to a command that changes the machine, help says what each
option does with a name for its value, the plan names changes to the machine's own namespace,
a lab applied in the other mode is named with the flag, and the plan and apply counts agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from passtplan.changes import ApplyReport, Plan, fingerprint, plan_summary
from passtplan.cli import CHANGING, app
from passtplan.commands import common
from passtplan.desired import desired_state
from passtplan.diff import diff
from passtplan.lang.loader import load_lab
from passtplan.render import plan_text, report_text
from passtplan.walk import Outcome, Status
from tests.conftest import FIXTURES, REPO
from tests.observed import observed_state

COMMANDS = [
    command.name or command.callback.__name__  # type: ignore[union-attr]
    for command in app.registered_commands
]


@pytest.mark.parametrize("typo", ["deploy", "aply", "apply2", "destory", "destroi", "rolback"])
def test_a_typo_never_suggests_a_command_that_changes_the_machine(
    cli: CliRunner, typo: str
) -> None:
    result = cli.invoke(app, [typo])
    assert result.exit_code == 2
    assert f"No such command '{typo}'." in result.output
    assert not any(f"'{name}'" in result.output for name in CHANGING)


def test_a_typo_of_a_reading_command_is_answered(cli: CliRunner) -> None:
    result = cli.invoke(app, ["valdate"])
    assert result.exit_code == 2
    assert "No such command 'valdate'. Did you mean 'validate'?" in result.output


def test_deploy_and_inspect_are_no_aliases(cli: CliRunner) -> None:
    for name in ("deploy", "inspect"):
        assert cli.invoke(app, [name, "--help"]).exit_code == 2


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_each_options_value(cli: CliRunner, command: str) -> None:
    result = cli.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    # a value is named (PLAN, SECONDS, FILE), never by its type (<str>, <float>, PLAN <path>),
    # and the usage line writes an argument as click does (PLAN, not {PLAN})
    assert re.findall(r"<[\w\[\]]+>", result.output) == []
    usage = result.output.splitlines()[0]
    assert "{" not in usage, usage


def test_each_command_says_its_own_sandbox(cli: CliRunner) -> None:
    helps = {}
    for command in COMMANDS:
        text = " ".join(cli.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output.split())
        if "--sandbox" in text:
            helps[command] = text.split("--sandbox", 1)[1].split(" --", 1)[0]
    assert set(helps) == {
        *("plan", "apply", "rollback", "destroy", "check", "show", "graph", "diagram", "ssh")
    }
    assert len(set(helps.values())) == len(helps)


def _plan(case: str, *, sandbox: bool = False) -> Plan:
    loaded = load_lab(FIXTURES / "diff" / case / "lab.yaml")
    desired = desired_state(loaded.lab, sandbox=sandbox, manifests=loaded.manifests)
    state = observed_state(FIXTURES / "diff" / case / "observed.yaml", desired.lab)
    return Plan(loaded, desired, state, diff(desired, state), fingerprint(state), None)


def test_a_plan_names_each_change_to_this_machines_root_namespace() -> None:
    text = plan_text(_plan("sysctl-restore"))
    header = text.split("passtplan will perform")[0]
    assert "changes this machine's own root namespace" in header
    assert "~ sysctl.host[net.ipv4.ip_forward] will be updated in place" in header


def test_a_plan_of_the_sandbox_or_of_namespaces_only_has_no_such_warning() -> None:
    assert "root namespace" not in plan_text(_plan("vm-sandbox-fresh", sandbox=True))
    assert "root namespace" not in plan_text(_plan("vm-sandbox-fresh"))  # host: nothing to do


def test_the_plan_and_the_apply_count_alike() -> None:
    plan = _plan("parent-recreated-cascade")
    done = [(c, Outcome(c.address, Status.DONE, "done", 0.0)) for c in plan.changes]
    report = report_text(ApplyReport(plan, done, [], 0.0))
    add, change, destroy = re.findall(r"\d+", plan_summary(plan.pending))
    assert f"Resources: {add} added, {change} changed, {destroy} destroyed (" in report


def test_a_lab_applied_in_the_other_mode_is_named_with_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "RUN_DIR", tmp_path)
    loaded = load_lab(FIXTURES / "diff" / "converged" / "lab.yaml")
    assert common.other_mode(loaded, sandbox=False, command="destroy") is None  # applied nowhere
    (tmp_path / "g@sandbox").mkdir()
    (tmp_path / "g@sandbox" / "owned.json").write_text("{}")
    assert common.other_mode(loaded, sandbox=False, command="destroy") == (
        "Warning: lab g is not applied on this node, but it is with --sandbox: "
        "for that one, run passtplan destroy with --sandbox."
    )
    assert common.other_mode(loaded, sandbox=True, command="plan") is None  # applied here
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "owned.json").write_text("{}")
    assert common.other_mode(loaded, sandbox=False, command="plan") is None  # both


def test_a_warning_prints_once_and_not_for_a_command_that_makes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = REPO / "plans" / "passt-macvlan"
    common.load(seed)
    printed = capsys.readouterr().err.splitlines()
    assert len(printed) == 1 and "plaintext password" in printed[0]
    common.load(seed, warn=False)  # destroy, check, show, rollback
    assert capsys.readouterr().err == ""
