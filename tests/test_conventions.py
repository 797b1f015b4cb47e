"""What Terraform, kubectl and containerlab users reach for first, without root: completion, -h,
-o, colour's painter, version and an empty list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from passtplan import __version__, render, style
from passtplan.cli import app
from tests.kube.fake_apiserver import ClusterConfig, FakeCluster


def passtplan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: a fresh process, its environment as given."""
    return subprocess.run(
        [sys.executable, "-m", "passtplan", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_is_generated_for_passtplan(shell: str) -> None:
    # As typer's own tests do: no detection of the parent shell, so the shell is the option's value.
    no_detection = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    proc = passtplan("--show-completion", shell, env=no_detection)
    assert proc.returncode == 0, proc.stderr
    assert f"_PASSTPLAN_COMPLETE=complete_{shell}" in proc.stdout


def test_completion_completes_commands() -> None:
    # What the bash script asks passtplan when TAB is pressed after `passtplan pl`.
    env = {"_PASSTPLAN_COMPLETE": "complete_bash", "COMP_WORDS": "passtplan pl", "COMP_CWORD": "1"}
    proc = passtplan(env=env)
    assert proc.stdout.split() == ["plan"]


def commands() -> list[str]:
    return sorted(c.name or c.callback.__name__ for c in app.registered_commands if c.callback)


@pytest.mark.parametrize("command", [[], *([name] for name in commands())])
def test_dash_h_is_help_on_every_command(cli: CliRunner, command: list[str]) -> None:
    short = cli.invoke(app, [*command, "-h"])
    assert short.exit_code == 0, short.output
    assert short.stdout.startswith("Usage: ")
    assert short.stdout == cli.invoke(app, [*command, "--help"]).stdout


def test_json_and_output_disagreeing_is_a_usage_error(cli: CliRunner) -> None:
    result = cli.invoke(app, ["plan", "lab.yaml", "--json", "-o", "yaml"])
    assert result.exit_code == 2
    assert "--json and -o yaml disagree" in result.stderr


def test_painter_colours_plan_report_and_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(style, "enabled", lambda: True)
    text = (
        "  # link.a/v0 will be created (not present)\n"
        "  + link.a/v0\n"
        "      + kind: veth\n"
        "  # route.a[default] must be replaced (via changed)\n"
        "  -/+ route.a[default]\n"
        "      ~ via: 10.0.0.1 -> 10.0.0.2\n"
        "  - netns.b\n"
        "\n"
        "Plan: 2 to add, 1 to change, 2 to destroy.\n"
        "  +   link.a/v0: FAILED: File exists\n"
        "Apply failed. Resources: 0 done\n"
        "  CHECK  FROM  TO        RESULT   TIME  DETAIL\n"
        "  ping   a     10.0.0.2  pass     1 ms  ttl=64\n"
        "  tcp    a     b:80      fail     2 ms  refused\n"
        "  tcp    a     b:81      not run  -     no netns\n"
        "\n"
        "Destroy complete! Resources: 1 done\n"
    )
    green, red, yellow, bold, reset = "\033[32m", "\033[31m", "\033[33m", "\033[1m", "\033[0m"
    lines = render.colored(text).split("\n")
    assert lines[0] == f"  {bold}# link.a/v0{reset} will be created (not present)"
    assert lines[1] == f"  {green}+{reset} link.a/v0"
    assert lines[2] == f"      {green}+{reset} kind: veth"
    assert lines[4] == f"  {red}-/+{reset} route.a[default]"
    assert lines[5] == f"      {yellow}~{reset} via: 10.0.0.1 -> 10.0.0.2"
    assert lines[6] == f"  {red}-{reset} netns.b"
    assert lines[8] == f"{bold}Plan:{reset} 2 to add, 1 to change, 2 to destroy."
    assert lines[9] == f"  {green}+{reset}   link.a/v0: {red}FAILED{reset}: File exists"
    assert lines[10] == f"\033[1;31mApply failed.{reset} Resources: 0 done"
    assert lines[11] == "  CHECK  FROM  TO        RESULT   TIME  DETAIL"
    assert lines[12] == f"  ping   a     10.0.0.2  {green}pass{reset}     1 ms  ttl=64"
    assert lines[13] == f"  tcp    a     b:80      {red}fail{reset}     2 ms  refused"
    assert lines[14] == f"  tcp    a     b:81      {red}not run{reset}  -     no netns"
    assert lines[16] == f"\033[1;32mDestroy complete!{reset} Resources: 1 done"


def test_no_colour_when_stdout_is_not_a_terminal() -> None:
    # pytest captures stdout into a file here: whatever the environment, no colour.
    assert not style.enabled()
    assert render.colored("  + netns.a\n") == "  + netns.a\n"


def test_version_lines() -> None:
    proc = passtplan("version")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["passtplan", "passt", "QEMU", "kernel"]
    assert lines[0] == f"passtplan {__version__}"
    assert lines[3] == f"kernel {os.uname().sysname} {os.uname().release} {os.uname().machine}"
    data = json.loads(passtplan("version", "-o", "json").stdout)
    assert data["passtplan"] == __version__
    assert yaml.safe_load(passtplan("version", "-o", "yaml").stdout) == data


def test_version_of_the_clusters_kubevirt(cli: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    with FakeCluster(ClusterConfig(kubevirt_version="v1.4.2")) as cluster:
        config.write_text(json.dumps(cluster.kubeconfig()))
        result = cli.invoke(app, ["version", "--kubeconfig", str(config)])
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[-1] == f"KubeVirt v1.4.2 (cluster {cluster.url})"
        verbose = passtplan("--verbose", "version", "--kubeconfig", str(config))
    assert "kubernetes: read the KubeVirt CR: ok [" in verbose.stderr


def test_version_with_an_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    unreachable = FakeCluster().kubeconfig()
    unreachable["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:1"
    config.write_text(json.dumps(unreachable))
    proc = passtplan("version", "--kubeconfig", str(config))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: cannot reach the cluster at http://127.0.0.1:1")
    assert proc.stderr.count("\n") == 1


def test_list_with_no_lab_is_a_friendly_line(tmp_path: Path) -> None:
    proc = passtplan("list", env={"PASSTPLAN_RUN_DIR": str(tmp_path)})
    assert (proc.returncode, proc.stderr) == (0, "")
    assert (
        proc.stdout == f"No labs are applied on this machine (nothing recorded under {tmp_path}).\n"
    )
    empty = passtplan("list", "-o", "json", env={"PASSTPLAN_RUN_DIR": str(tmp_path)})
    assert json.loads(empty.stdout) == {"labs": []}
