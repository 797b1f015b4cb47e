"""Checks side by side: a lab whose targets are down fails in about one timeout, not the sum;
an answer that waiting cannot change (refused, no route, ICMP unreachable) fails at once; no
probe outlives its check's timeout; results keep the lab's order."""

from __future__ import annotations

import time
from collections.abc import Callable

from passtplan.cycles import load_lab
from passtplan.desired import desired_state
from passtplan.providers.checks import CheckResult, run_checks
from tests.integration.conftest import Lab

TIMEOUT = 3.0
LAB = """
apiVersion: passtplan/v1alpha1
kind: Lab
metadata: {name: LABNAME}
namespaces:
  a:
    links:
      v0: {kind: veth, peer: b/v0, addresses: [10.0.0.1/24]}
    routes:
      - {to: 198.51.100.0/24, via: 10.0.0.2}
  b:
    sysctls: {net.ipv4.ip_forward: "1"}
    links:
      v0: {kind: veth, peer: a/v0, addresses: [10.0.0.2/24]}
checks:
CHECKS
"""


def checks_of(lab: Lab) -> tuple[list[CheckResult], float]:
    loaded = load_lab(lab.path)
    desired = desired_state(loaded.lab, sandbox=False, manifests=loaded.manifests)
    started = time.monotonic()
    results = run_checks(loaded.lab.checks, desired)
    return results, time.monotonic() - started


def test_checks_that_time_out_take_about_one_timeout_not_the_sum(
    make_lab: Callable[[str], Lab],
) -> None:
    # b has the address's subnet but no such host: nothing answers the neighbour lookup
    # within the timeout, so each check runs to its deadline
    silent = [f"  - {{from: a, tcp: '10.0.0.{n}:22', timeout: {TIMEOUT}}}" for n in (7, 8, 9)]
    lab = make_lab(LAB.replace("CHECKS", "\n".join(silent)))
    lab.apply(code=1)  # its checks fail
    results, took = checks_of(lab)
    assert [r.status for r in results] == ["fail"] * 3
    assert [r.check.target for r in results] == ["10.0.0.7:22", "10.0.0.8:22", "10.0.0.9:22"]
    assert all(r.seconds <= TIMEOUT + 0.1 for r in results)  # the deadline is kept
    assert took < 2 * TIMEOUT < 3 * TIMEOUT  # side by side: not the sum of the timeouts
    lab.destroy()


def test_an_unreachable_answer_fails_at_once(make_lab: Callable[[str], Lab]) -> None:
    slow = 30.0
    checks = [
        f"  - {{from: a, tcp: '10.0.0.2:9', timeout: {slow}}}",  # refused: b listens on nothing
        f"  - {{from: a, ping: 192.0.2.1, timeout: {slow}}}",  # no route in a
        f"  - {{from: a, ping: 198.51.100.1, timeout: {slow}}}",  # b has no route: ICMP
        f"  - {{from: a, ping: 10.0.0.2, timeout: {slow}}}",  # answers
    ]
    lab = make_lab(LAB.replace("CHECKS", "\n".join(checks)))
    lab.apply(code=1)  # its checks fail
    results, took = checks_of(lab)
    assert [r.status for r in results] == ["fail", "fail", "fail", "pass"]
    assert results[0].detail == "Connection refused"
    assert results[1].detail == "Network is unreachable"
    assert results[2].detail == "network unreachable (from 10.0.0.2)"
    assert took < slow / 2  # none waited for its deadline
    lab.destroy()
