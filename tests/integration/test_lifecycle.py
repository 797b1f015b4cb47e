"""Foreign state, show round trips, failures half-way, saved plans, and refusing politely."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from passtplan.apply import apply_plan
from passtplan.cycles import load_lab
from passtplan.engine import make_plan, store_for
from passtplan.providers.session import Session
from passtplan.render import report_text
from passtplan.walk import Status
from tests.integration.conftest import TWO, Lab, ip, ip_json


def snapshot(netns: str) -> dict[str, object]:
    return {
        "links": sorted(
            (link["ifname"], link.get("mtu")) for link in ip_json("link", "show", netns=netns)
        ),
        "addresses": sorted(
            (a["ifname"], i["local"], i["prefixlen"])
            for a in ip_json("address", "show", netns=netns)
            for i in a["addr_info"]
        ),
        "routes": sorted(
            json.dumps(r, sort_keys=True) for r in ip_json("route", "show", netns=netns)
        ),
    }


def test_foreign_state_survives_apply_reapply_and_destroy(
    make_lab: Callable[[str], Lab], foreign_netns: Callable[[str], str]
) -> None:
    # A namespace the lab only finds (resolve by path), holding things a person made by hand.
    shared = foreign_netns("shared")
    ip("link", "add", "hand0", "type", "bridge", netns=shared)
    ip("link", "set", "hand0", "up", netns=shared)
    ip("address", "add", "192.0.2.1/24", "dev", "hand0", netns=shared)
    ip("route", "add", "198.51.100.0/24", "via", "192.0.2.254", netns=shared)
    lab = make_lab(
        TWO.replace(
            "  b:\n",
            f"  shared:\n    resolve: {{path: /run/netns/{shared}}}\n    links:\n"
            "      lab0: {kind: bridge, addresses: [10.5.0.1/24]}\n  b:\n",
        )
    )
    foreign = snapshot(shared)
    lab.apply()
    # foreign things in a namespace the lab created survive too, until that namespace goes
    ip("address", "add", "10.0.0.99/24", "dev", "v0", netns=lab.netns("a"))
    ip("route", "add", "10.66.0.0/16", "dev", "v0", netns=lab.netns("a"))
    in_lab = snapshot(lab.netns("a"))
    lab.converged()
    lab.apply()
    assert snapshot(lab.netns("a")) == in_lab
    after_apply = snapshot(shared)
    assert set(foreign["addresses"]) <= set(after_apply["addresses"])
    assert set(foreign["routes"]) <= set(after_apply["routes"])
    lab.destroy()
    assert snapshot(shared) == foreign  # the lab's bridge is gone, everything else is as it was
    assert lab.leftovers() == []


def test_show_of_a_hand_built_namespace_plans_no_changes(
    tmp_path: Path, foreign_netns: Callable[[str], str]
) -> None:
    left, right = foreign_netns("left"), foreign_netns("right")
    ip("link", "add", "br0", "type", "bridge", netns=left)
    ip(
        "link",
        "add",
        "v0",
        "netns",
        left,
        "mtu",
        "1400",
        "type",
        "veth",
        "peer",
        "name",
        "v1",
        "netns",
        right,
    )
    ip("link", "set", "v0", "master", "br0", netns=left)
    ip("link", "add", "mv0", "link", "v1", "type", "macvlan", "mode", "private", netns=right)
    for netns, dev, addr in ((left, "br0", "10.3.0.1/24"), (right, "mv0", "10.3.0.2/24")):
        ip("link", "set", dev, "up", netns=netns)
        ip("address", "add", addr, "dev", dev, netns=netns)
    ip("link", "set", "v0", "up", netns=left)
    ip("link", "set", "v1", "up", netns=right)
    ip("route", "add", "default", "via", "10.3.0.1", netns=right)
    ip("route", "add", "172.16.0.0/12", "dev", "mv0", "metric", "50", netns=right)
    lab = Lab(tmp_path, "shown")
    shown = lab.run("show", "--netns", left, "--netns", right)
    lab.path.write_text(shown.stdout)
    assert "kind: macvlan" in shown.stdout
    lab.run("validate", str(lab.path))
    lab.converged()
    as_json = json.loads(lab.run("show", "--netns", left, "--json").stdout)
    assert as_json["namespaces"][left]["links"]["br0"]["kind"] == "bridge"


def test_failure_half_way_reports_and_the_next_apply_converges(
    make_lab: Callable[[str], Lab],
) -> None:
    lab = make_lab(TWO)
    loaded = load_lab(lab.path)
    store = store_for(loaded, sandbox=False)
    with Session() as session:
        plan = make_plan(loaded, session, store, sandbox=False, destroy=False)
        # Between plan and apply someone takes the name of b's end of the veth pair.
        ip("netns", "add", lab.netns("b"))
        ip("link", "add", "v0", "type", "bridge", netns=lab.netns("b"))
        report = apply_plan(plan, session, store)
    outcome = {change.address: out for change, out in report.outcomes}
    assert outcome["netns.a"].status is Status.DONE
    assert outcome["netns.b"].status is Status.FAILED
    assert "already exists" in outcome["netns.b"].detail
    for dependent in (
        "link.a/v0",
        "link.b/v0",
        "address.b/v0[10.0.0.2/24]",
        "route.a[10.8.0.0/16]",
    ):
        assert outcome[dependent].status is Status.SKIPPED, dependent
    text = report_text(report)
    assert "netns.b: FAILED" in text
    assert "skipped: upstream dependency" in text
    assert "Apply failed." in text
    assert not report.ok
    # The CLI exits 1 on the same failure (the namespace is still in the way)...
    lab.apply(code=1)
    # ... and after fixing it, apply converges.
    ip("netns", "delete", lab.netns("b"))
    lab.apply()
    lab.converged()
    lab.destroy()
    assert lab.leftovers() == []


def test_saved_plan_applies_once_and_refuses_stale_state(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(TWO)
    saved = lab.directory / "plan.json"
    result = lab.plan("--out", str(saved), "--detailed-exitcode", code=2)
    assert "Saved the plan" in result.stdout
    assert json.loads(saved.read_text())["kind"] == "passtplan-saved-plan"
    applied = lab.run("apply", str(saved))
    assert "Apply complete!" in applied.stdout
    stale = lab.run("apply", str(saved), code=1)
    assert "live state changed since the plan was saved" in stale.stderr
    lab.plan("--out", str(saved))
    lab.path.write_text(lab.path.read_text().replace("10.8.0.0/16", "10.9.0.0/16"))
    changed = lab.run("apply", str(saved), code=1)
    assert "changed since the plan was saved" in changed.stderr


def test_json_plan_and_graph(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(TWO)
    data = json.loads(lab.plan("--json").stdout)
    assert data["format_version"] == "1.0"
    veth = next(c for c in data["changes"] if c["address"] == "link.a/v0")
    assert veth["actions"] == ["create"]
    assert veth["before"] is None
    assert veth["after"]["peer"] == "b/v0"
    assert veth["reason"] == "not present"
    assert data["summary"] == "Plan: 7 to add, 0 to change, 0 to destroy."
    dot = lab.run("graph", str(lab.path)).stdout
    assert '"netns.a" -> "link.a/v0";' in dot
    assert '"link.a/v0" -> "link.b/v0";' in dot
    mermaid = lab.run("graph", str(lab.path), "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR")


def test_apply_without_terminal_or_approval_refuses(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(TWO)
    proc = subprocess.run(
        [sys.executable, "-m", "passtplan", "apply", str(lab.path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "no terminal to confirm on" in proc.stderr
    assert lab.leftovers() == []


def test_without_root_a_one_line_error(make_lab: Callable[[str], Lab]) -> None:
    """In a user namespace the process is uid 65534 with no privileges, yet reads its files."""
    lab = make_lab(TWO)
    for command in ("plan", "apply", "destroy", "graph", "show"):
        args = [command] if command == "show" else [command, str(lab.path)]
        proc = subprocess.run(
            ["unshare", "--user", sys.executable, "-m", "passtplan", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr == (
            f"error: passtplan {command} needs root: it reads and changes network namespaces "
            "(run it with sudo)\n"
        )


def test_sysctl_is_restored_when_the_lab_lets_it_go(
    make_lab: Callable[[str], Lab], foreign_netns: Callable[[str], str]
) -> None:
    shared = foreign_netns("sys")
    forward = ["ip", "netns", "exec", shared, "cat", "/proc/sys/net/ipv4/ip_forward"]
    assert subprocess.run(forward, capture_output=True, text=True, check=True).stdout == "0\n"
    lab = make_lab(
        "apiVersion: passtplan/v1alpha1\nkind: Lab\nmetadata: {name: LABNAME}\nnamespaces:\n"
        f"  s:\n    resolve: {{path: /run/netns/{shared}}}\n"
        '    sysctls: {net.ipv4.ip_forward: "1"}\n'
    )
    lab.apply()
    lab.converged()
    assert subprocess.run(forward, capture_output=True, text=True, check=True).stdout == "1\n"
    lab.path.write_text(
        lab.path.read_text().replace('    sysctls: {net.ipv4.ip_forward: "1"}\n', "")
    )
    plan = json.loads(lab.plan("--json").stdout)
    [restore] = [c for c in plan["changes"] if c["actions"] != ["no-op"]]
    assert restore["address"] == "sysctl.s[net.ipv4.ip_forward]"
    assert restore["reason"] == "no longer in the plan: restored to 0"
    lab.apply()
    assert subprocess.run(forward, capture_output=True, text=True, check=True).stdout == "0\n"
    lab.converged()


def test_namespace_found_only_at_apply_time(make_lab: Callable[[str], Lab], prefix: str) -> None:
    later = f"{prefix}-later"
    lab = make_lab(
        "apiVersion: passtplan/v1alpha1\nkind: Lab\nmetadata: {name: LABNAME}\nnamespaces:\n"
        f"  pod:\n    resolve: {{path: /run/netns/{later}}}\n    links:\n"
        "      br0: {kind: bridge, addresses: [10.4.0.1/24]}\n"
        "    routes:\n      - {to: 10.44.0.0/16, via: 10.4.0.254}\n"
    )
    assert "(known after apply)" in lab.plan().stdout
    loaded = load_lab(lab.path)
    store = store_for(loaded, sandbox=False)
    with Session() as session:
        plan = make_plan(loaded, session, store, sandbox=False, destroy=False)
        assert {c.address: str(c.action) for c in plan.pending}["netns.pod"] == "read"
        ip("netns", "add", later)  # the namespace appears between plan and apply
        report = apply_plan(plan, session, store)
    assert report.ok, report_text(report)
    lab.converged()
    assert ip_json("route", "show", "10.44.0.0/16", netns=later)[0]["gateway"] == "10.4.0.254"
