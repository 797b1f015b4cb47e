"""Every lab in plans/ validates, and the seed lab is the one DESIGN.md describes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from passtplan.cli import app
from passtplan.cycles import load_lab
from passtplan.errors import Severity
from tests.conftest import PLANS

LABS = sorted(PLANS.glob("*/lab.yaml"))


def test_there_are_four_example_labs_at_least() -> None:
    assert len(LABS) >= 4


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.parent.name)
def test_example_lab_validates(lab: Path, cli: CliRunner) -> None:
    result = cli.invoke(app, ["validate", str(lab)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"{lab}: valid (lab {lab.parent.name}:")


def test_validate_takes_many_files_and_fails_if_one_is_bad(cli: CliRunner, tmp_path: Path) -> None:
    broken = tmp_path / "lab.yaml"
    broken.write_text(
        (PLANS / "veth-pair/lab.yaml").read_text().replace("10.10.0.1/24", "10.10.0.1")
    )
    result = cli.invoke(app, ["validate", *map(str, LABS), str(broken)])
    assert result.exit_code == 1
    assert result.stdout.count(": valid (") == len(LABS)
    assert f"{broken}:15:" in result.stderr
    assert "has no prefix length" in result.stderr


def test_broken_copy_of_seed_reports_every_error_with_position(
    cli: CliRunner, tmp_path: Path
) -> None:
    seed = PLANS / "passt-macvlan"
    text = (seed / "lab.yaml").read_text()
    text = text.replace("mode: vepa", "mode: vepaa").replace("via: 10.64.0.1", "via: 10.65.0.1")
    text = text.replace("from: office, ping", "from: ofice, ping")
    (tmp_path / "lab.yaml").write_text(text)
    (tmp_path / "passt-vm.yaml").write_text((seed / "passt-vm.yaml").read_text())
    # A structural error hides the lab-wide rules; fix it and the rest are reported together.
    first = cli.invoke(app, ["validate", str(tmp_path / "lab.yaml")])
    assert first.exit_code == 1
    assert first.stderr.splitlines() == [
        f"{tmp_path}/lab.yaml:23:15: namespaces.pod.links.macvlan1.mode: 'vepaa' is not allowed; "
        "expected 'vepa', 'bridge', 'private', 'passthru' or 'source' (did you mean 'vepa'?)"
    ]
    (tmp_path / "lab.yaml").write_text(text.replace("vepaa", "vepa"))
    second = cli.invoke(app, ["validate", str(tmp_path / "lab.yaml")])
    assert second.exit_code == 1
    errors = [line for line in second.stderr.splitlines() if "warning:" not in line]
    assert errors == [
        f"{tmp_path}/lab.yaml:28:12: checks[0].from: 'ofice' is neither a namespace of the lab "
        "nor vm/NAME (did you mean 'office'?)",
        f"{tmp_path}/lab.yaml:51:30: sandbox.namespaces.office.routes[0].via: gateway 10.65.0.1 "
        "is not in the subnet of any address in namespace 'office' (10.64.1.46/16); add an "
        "address in its subnet, correct the gateway, or set onlink: true",
    ]


def test_seed_lab_matches_the_design() -> None:
    loaded = load_lab(PLANS / "passt-macvlan/lab.yaml")
    lab = loaded.lab
    assert lab.metadata.name == "passt-macvlan"
    pod = lab.namespaces["pod"]
    assert pod.resolve is not None and pod.resolve.vm == "passt-macvlan"
    assert pod.links["eth0"].state == "absent"
    macvlan = pod.links["macvlan1"]
    assert (macvlan.kind, macvlan.parent, macvlan.mode) == ("macvlan", "host/ens192", "vepa")
    assert macvlan.addresses == ("10.7.120.202/16",)
    assert [(r.to, r.via, r.dev) for r in pod.routes] == [("default", "10.7.0.1", "macvlan1")]
    assert [(c.source, c.target) for c in lab.checks] == [
        ("office", "10.7.120.202"),
        ("office", "10.7.120.202:22"),
        ("vm/passt-macvlan", "10.64.1.46"),
    ]
    assert sorted(lab.sandbox.namespaces) == ["gw", "host", "office", "switch"]
    manifest = loaded.manifests["passt-macvlan"]
    assert (manifest.passt_form, manifest.interface, manifest.ports) == ("passt", "default", None)
    # The seed sets root's password in clear text: a warning, not an error.
    assert [w.severity for w in loaded.warnings] == [Severity.WARNING]
    assert "userDataSecretRef" in loaded.warnings[0].message
