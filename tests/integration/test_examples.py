"""Every example lab that needs no VM: apply, converge, destroy, nothing left behind."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from passtplan.cycles import load_lab
from tests.conftest import PLANS
from tests.integration.conftest import Lab, ip

NO_VM_LABS = [p for p in sorted(PLANS.glob("*/lab.yaml")) if not load_lab(p).lab.vms]


def renamed(path: Path) -> str:
    return re.sub(r"(?m)^(metadata:\n  name: )\S+", r"\1LABNAME", path.read_text(), count=1)


def test_examples_without_vms_exist() -> None:
    assert {p.parent.name for p in NO_VM_LABS} >= {"veth-pair", "bridge-trio", "macvlan-pods"}


@pytest.mark.parametrize("example", NO_VM_LABS, ids=lambda p: p.parent.name)
def test_apply_converge_destroy(example: Path, make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(renamed(example))
    applied = lab.apply()
    assert "Apply complete!" in applied.stdout
    lab.converged()
    lab.apply()  # a second apply changes nothing
    assert "No changes." in lab.apply().stdout
    loaded = load_lab(lab.path).lab
    for check in loaded.checks:
        if check.ping and check.expect == "success":
            ip("netns", "exec", lab.netns(check.source), "ping", "-c1", "-W2", check.ping)
    assert "Destroy complete!" in lab.destroy().stdout
    assert lab.leftovers() == []
    assert "No changes." in lab.destroy().stdout
