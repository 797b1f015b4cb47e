"""`passtplan check`: a check that could not run is not a pass."""

from __future__ import annotations

from collections.abc import Callable

from tests.integration.conftest import Lab

LAB = """
apiVersion: passtplan/v1alpha1
kind: Lab
metadata: {name: LABNAME}
namespaces:
  a:
    links:
      v0: {kind: veth, peer: b/v0, addresses: [10.0.0.1/24]}
  b:
    links:
      v0: {kind: veth, peer: a/v0, addresses: [10.0.0.2/24]}
checks:
  - {from: a, ping: 10.0.0.2}
  - {from: office, ping: 10.0.0.1}
sandbox:
  namespaces:
    office:
      links:
        eth0: {kind: veth, peer: b/up, addresses: [10.0.0.3/24]}
"""


def test_checks_of_a_lab_never_applied_fail_and_say_so(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(LAB)
    result = lab.run("check", str(lab.path), code=1)
    assert "Checks: 0 passed, 0 failed, 1 could not run, 1 skipped." in result.output
    assert f"Lab {lab.name} is not applied on this node: run passtplan apply first." in (
        result.output
    )


def test_checks_that_run_only_in_the_other_mode_fail_and_name_the_flag(
    make_lab: Callable[[str], Lab],
) -> None:
    lab = make_lab(LAB.replace("  - {from: a, ping: 10.0.0.2}\n", ""))
    result = lab.run("check", str(lab.path), code=1)
    assert "Checks: 0 passed, 0 failed, 1 skipped." in result.output
    assert f"No check of lab {lab.name} runs in this mode; run passtplan check with --sandbox." in (
        result.output
    )


def test_checks_of_an_applied_lab_pass(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(LAB)
    lab.apply()
    result = lab.run("check", str(lab.path))
    assert "Checks: 1 passed, 0 failed, 1 skipped." in result.output
    lab.destroy()
