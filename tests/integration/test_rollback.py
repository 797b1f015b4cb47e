"""A way back: `passtplan rollback` undoes the last apply, and `apply --rollback-on-failure`
undoes a failed one; either way the live state is as it was before that apply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

from passtplan.apply import FAIL_AT
from tests.conftest import PLANS, seed_lab
from tests.integration.conftest import Lab, ip_json

CLI = [sys.executable, "-m", "passtplan"]
BEFORE = """
apiVersion: passtplan/v1alpha1
kind: Lab
metadata: {name: LABNAME}
namespaces:
  a:
    links:
      v0: {kind: veth, peer: b/v0, addresses: [10.0.0.1/24], mtu: 1500}
  b:
    links:
      v0: {kind: veth, peer: a/v0, addresses: [10.0.0.2/24]}
    routes:
      - {to: 10.9.0.0/16, via: 10.0.0.1}
"""

AFTER = (
    BEFORE.replace("mtu: 1500", "mtu: 1400")
    .replace("      - {to: 10.9.0.0/16, via: 10.0.0.1}", "      - {to: 10.8.0.0/16, via: 10.0.0.1}")
    .replace(
        "  b:\n",
        "  c:\n    sysctls: {net.ipv4.ip_forward: '1'}\n    links:\n"
        "      br0: {kind: bridge, addresses: [10.5.0.1/24]}\n  b:\n",
    )
)


def state(lab: Lab) -> dict[str, object]:
    found: dict[str, object] = {}
    for ns in ("a", "b"):
        links = ip_json("-d", "link", "show", netns=lab.netns(ns))
        found[ns] = {
            "links": sorted((link["ifname"], link["mtu"]) for link in links),
            "addresses": sorted(
                f"{a['ifname']} {i['local']}/{i['prefixlen']}"
                for a in ip_json("address", "show", netns=lab.netns(ns))
                for i in a["addr_info"]
                if i.get("scope") != "link"
            ),
            "routes": sorted(r["dst"] for r in ip_json("route", "show", netns=lab.netns(ns))),
        }
    return found


def test_rollback_undoes_the_last_apply(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(BEFORE)
    lab.apply()
    before = state(lab)
    lab.path.write_text(AFTER.replace("LABNAME", lab.name))
    lab.apply()
    assert state(lab) != before
    result = lab.run("rollback", str(lab.path), "--auto-approve")
    assert "the live state is as before that apply" in result.output
    assert state(lab) == before
    assert lab.netns("c") not in lab.leftovers()
    lab.path.write_text(BEFORE.replace("LABNAME", lab.name))
    lab.converged()  # rolled-back state plans as it did before the undone apply
    lab.destroy()
    assert lab.leftovers() == []


def test_rollback_without_an_apply_says_so(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(BEFORE)
    result = lab.run("rollback", str(lab.path), "--auto-approve", code=1)
    assert "nothing to roll back" in result.output


def test_failed_checks_roll_the_apply_back(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(BEFORE)
    lab.apply()
    before = state(lab)
    failing = AFTER + "checks:\n  - {from: a, ping: 10.0.0.99, timeout: 1}\n"
    lab.path.write_text(failing.replace("LABNAME", lab.name))
    result = lab.run("apply", str(lab.path), "--auto-approve", "--rollback-on-failure", code=1)
    assert "The apply failed: rolling it back (rollback on failure)." in result.output
    assert "the live state is as before that apply" in result.output
    assert state(lab) == before
    plan = json.loads(lab.run("plan", str(lab.path), "--json").stdout)
    assert any(c["actions"] != ["no-op"] for c in plan["changes"])  # the failed apply, to redo
    lab.destroy()
    assert lab.leftovers() == []


def test_a_lab_can_ask_to_be_rolled_back_on_failure(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(BEFORE)
    lab.apply()
    before = state(lab)
    failing = AFTER + "checks:\n  - {from: a, ping: 10.0.0.99, timeout: 1}\n"
    failing += "settings: {rollback: on-failure}\n"
    lab.path.write_text(failing.replace("LABNAME", lab.name))
    result = lab.run("apply", str(lab.path), "--auto-approve", code=1)
    assert "the live state is as before that apply" in result.output
    assert state(lab) == before
    lab.destroy()
    assert lab.leftovers() == []


def test_each_failing_step_of_the_seed_is_rolled_back(
    make_lab: Callable[[str], Lab],
) -> None:
    """The seed lab in the sandbox, made to fail at each of its actions with
    --rollback-on-failure: every time, the live state is as before the apply (nothing)."""
    seed = PLANS / "passt-macvlan"
    text = seed_lab()
    probe = make_lab(text)
    (probe.directory / "passt-vm.yaml").write_text((seed / "passt-vm.yaml").read_text())
    plan = json.loads(probe.run("plan", str(probe.path), "--sandbox", "--json").stdout)
    total = sum(1 for c in plan["changes"] if c["actions"] != ["no-op"])
    for step in range(1, total + 1):
        lab = make_lab(text)
        (lab.directory / "passt-vm.yaml").write_text((seed / "passt-vm.yaml").read_text())
        result = subprocess.run(
            [*CLI, "apply", str(lab.path), "--sandbox", "--auto-approve", "--rollback-on-failure"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, FAIL_AT: str(step)},
            check=False,
        )
        assert result.returncode == 1, result.stdout
        assert "the live state is as before that apply" in result.stdout, (step, result.stdout)
        assert lab.leftovers() == [], step
