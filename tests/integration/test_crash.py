"""Kills, races and collisions: a lab that a SIGKILL, a second terminal or a foreign namespace
interrupts is always planned, applied and destroyed cleanly by the next command.

The kills come from the engine's test hook (PASSTPLAN_TEST_KILL_AFTER=K: SIGKILL as the K-th
action finishes), run in a child process, so each action boundary is hit exactly.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from passtplan.providers.lock import lab_lock, lock_path
from passtplan.providers.ownership import RUN_DIR
from tests.conftest import PLANS, seed_lab
from tests.integration.conftest import Lab, cleanup, ip, ip_json

TRIO = (PLANS / "bridge-trio" / "lab.yaml").read_text().replace("bridge-trio", "LABNAME")
DEADLINE = 120.0
CLI = [sys.executable, "-m", "passtplan"]


def passtplan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process of its own, as a person runs it (a kill ends only it)."""
    return subprocess.run(
        [sys.executable, "-m", "passtplan", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env={**os.environ, **(env or {})},
        check=False,
    )


def killed_after(lab: Lab, count: int, command: str = "apply", *extra: str) -> int:
    result = passtplan(
        command,
        str(lab.path),
        "--auto-approve",
        *extra,
        env={"PASSTPLAN_TEST_KILL_AFTER": str(count)},
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode


def recovers(lab: Lab, *extra: str) -> None:
    """The next apply converges with its checks, the plan after it is empty, and destroy leaves
    nothing of the lab."""
    lab.apply(*extra)
    lab.converged(*extra)
    lab.destroy(*extra)
    assert lab.leftovers() == []


@pytest.fixture
def fresh(make_lab: Callable[[str], Lab], prefix: str) -> Iterator[Callable[[str], Lab]]:
    """Labs made one after another, each removed whole before the next (a kill leaves things)."""
    made: list[Lab] = []

    def make(text: str) -> Lab:
        lab = make_lab(text)
        made.append(lab)
        return lab

    yield make
    for lab in made:
        cleanup(lab.name)


def actions_of(lab: Lab, *extra: str) -> int:
    """How many actions an apply of the lab runs (no-ops and batches counted as the walk does)."""
    result = lab.run("plan", str(lab.path), "--json", *extra)
    return sum(1 for c in json.loads(result.stdout)["changes"] if c["actions"] != ["no-op"])


def test_apply_killed_at_every_action_boundary_recovers(fresh: Callable[[str], Lab]) -> None:
    total = actions_of(fresh(TRIO))
    assert total > 10
    for count in range(1, total + 1):
        lab = fresh(TRIO)
        code = killed_after(lab, count)
        assert code in (-signal.SIGKILL, 0), f"after {count}: exit {code}"
        recovers(lab)


def test_destroy_killed_at_every_action_boundary_recovers(fresh: Callable[[str], Lab]) -> None:
    probe = fresh(TRIO)
    probe.apply()
    total = len(json.loads(probe.plan("--json").stdout)["changes"])  # the lab's resources
    probe.destroy()
    for count in range(1, total + 1):
        lab = fresh(TRIO)
        lab.apply()
        code = killed_after(lab, count, "destroy")
        assert code in (-signal.SIGKILL, 0), f"after {count}: exit {code}"
        lab.destroy()
        assert lab.leftovers() == []


def test_apply_and_destroy_killed_at_random_times_recover(fresh: Callable[[str], Lab]) -> None:
    """Kills that land anywhere, mid-action included, not only between actions."""
    chance = random.Random(int.from_bytes(os.urandom(4), "big"))
    for trial in range(6):
        lab = fresh(TRIO)
        command = "destroy" if trial % 2 else "apply"
        if command == "destroy":
            lab.apply()
        proc = subprocess.Popen(
            [*CLI, command, str(lab.path), "--auto-approve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        delay = chance.uniform(0.3, 1.5)  # start-up is about 0.5 s: the kill lands in the walk
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=DEADLINE)
        recovers(lab)


FOUND_BY_PATH = """
apiVersion: passtplan/v1alpha1
kind: Lab
metadata: {name: LABNAME}
namespaces:
  shared:
    resolve: {path: /run/netns/SHARED}
    links:
      hand0: {addresses: [10.8.0.1/24]}
      lab0: {kind: bridge, addresses: [10.9.0.1/24]}
      v0: {kind: veth, peer: mine/v0, master: lab0}
    routes:
      - {to: 10.77.0.0/16, via: 10.9.0.2}
  mine:
    links:
      v0: {kind: veth, peer: shared/v0, addresses: [10.9.0.2/24]}
"""


def test_kills_in_a_namespace_found_by_path_leak_nothing(
    fresh: Callable[[str], Lab], foreign_netns: Callable[[str], str]
) -> None:
    shared = foreign_netns("shared")
    ip("link", "add", "hand0", "type", "bridge", netns=shared)
    ip("link", "set", "hand0", "up", netns=shared)
    before = _snapshot(shared)
    text = FOUND_BY_PATH.replace("SHARED", shared)
    total = actions_of(fresh(text))
    for count in range(1, total + 1):
        lab = fresh(text)
        killed_after(lab, count)
        lab.destroy()  # what the lab made in the shared namespace goes, however far it got
        assert _snapshot(shared) == before, f"after {count}"
        assert lab.leftovers() == []


def _snapshot(netns: str) -> dict[str, object]:
    links = sorted(link["ifname"] for link in ip_json("link", "show", netns=netns))
    addresses = sorted(
        f"{a['ifname']} {i['local']}/{i['prefixlen']}"
        for a in ip_json("address", "show", netns=netns)
        for i in a["addr_info"]
        if i.get("scope") != "link"
    )
    routes = sorted(r["dst"] for r in ip_json("route", "show", netns=netns))
    return {"links": links, "addresses": addresses, "routes": routes}


def test_a_second_writer_is_refused_with_the_holder_named(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(TRIO)
    with lab_lock(lab.name, "passtplan apply (the test)"):
        result = passtplan("apply", str(lab.path), "--auto-approve")
        assert result.returncode == 1
        assert f"lab {lab.name} is locked by pid {os.getpid()} (passtplan apply (the test)" in (
            result.stderr
        )
        assert lab.leftovers() == [] or not any(n.startswith(lab.name) for n in lab.leftovers())
    # a plan only reads: it never waits for the lock
    lab.plan()


def test_a_second_writer_waits_with_a_lock_timeout(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(TRIO)
    with lab_lock(lab.name, "passtplan apply (the test)"):
        waiting = subprocess.Popen(
            [*CLI, "apply", str(lab.path), "--auto-approve", "--lock-timeout", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lock = lock_path(lab.name)
        deadline = time.monotonic() + 30
        while not _holds_open(waiting.pid, lock) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling until the second writer has opened the lock file
        assert waiting.poll() is None, "the second writer did not wait"
    _, err = waiting.communicate(timeout=DEADLINE)
    assert waiting.returncode == 0, err
    lab.converged()
    lab.destroy()


def _holds_open(pid: int, path: Path) -> bool:
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if fd.readlink() == path:
                return True
        except OSError:
            continue
    return False


def test_apply_racing_destroy_ends_in_a_state_the_next_command_plans(
    make_lab: Callable[[str], Lab],
) -> None:
    lab = make_lab(TRIO)
    both = [
        subprocess.Popen([*CLI, cmd, str(lab.path), "--auto-approve", "--lock-timeout", "60"])
        for cmd in ("apply", "destroy")
    ]
    for proc in both:
        assert proc.wait(timeout=DEADLINE) in (0, 1)
    recovers(lab)


def test_a_namespace_by_the_labs_name_is_never_adopted(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(TRIO)
    taken = lab.netns("green")
    ip("netns", "add", taken)
    ip("link", "add", "theirs", "type", "bridge", netns=taken)
    result = lab.run("apply", str(lab.path), "--auto-approve", code=1)
    assert f"netns {taken} already exists and this lab did not make it" in result.output
    assert [n for n in lab.leftovers() if n != taken] == []  # nothing was changed
    lab.run("destroy", str(lab.path), "--auto-approve")
    assert [link["ifname"] for link in ip_json("link", "show", "theirs", netns=taken)] == ["theirs"]


def test_a_namespace_creation_cut_short_is_finished(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(TRIO)
    # what a kill between `claim` and the mount leaves: the record, and an empty file
    record = RUN_DIR / lab.name / "owned.log"
    record.parent.mkdir(parents=True)
    claim = {"op": "claim-many", "kind": "namespaces", "addresses": ["red"], "address": ""}
    record.write_text(json.dumps(claim) + "\n")
    Path(f"/run/netns/{lab.netns('red')}").touch()
    recovers(lab)


def test_an_empty_namespace_file_the_lab_did_not_make_is_refused(
    make_lab: Callable[[str], Lab],
) -> None:
    lab = make_lab(TRIO)
    stray = Path(f"/run/netns/{lab.netns('red')}")
    stray.touch()
    try:
        result = lab.run("apply", str(lab.path), "--auto-approve", code=1)
        assert f"{stray} exists and is not a namespace; remove it" in result.output
    finally:
        stray.unlink()


def test_a_peer_namespace_added_later_verifies(make_lab: Callable[[str], Lab]) -> None:
    """The switch already holds ports whose peers are elsewhere; a new namespace's veth joins it,
    and its peer's namespace id is assigned by the kernel only then."""
    without_green = "".join(line for line in TRIO.splitlines(True) if "p-green:" not in line)
    without_green = (
        without_green[: without_green.index("  green:")]
        + without_green[without_green.index("  blue:") :]
    )
    without_green = without_green.replace("  - {from: red, ping: 192.168.50.2}\n", "")
    without_green = without_green.replace("  - {from: green, ping: 192.168.50.3}\n", "")
    lab = make_lab(without_green)
    lab.apply()
    lab.path.write_text(TRIO.replace("LABNAME", lab.name))
    applied = lab.apply()
    assert "Checks: 3 passed" in applied.output
    lab.converged()
    lab.destroy()


def test_sigint_stops_at_an_action_boundary_and_apply_finishes(
    make_lab: Callable[[str], Lab],
) -> None:
    spokes = "\n".join(
        f"  s{i}:\n    links:\n      eth0: {{kind: veth, peer: hub/p{i}, "
        f"addresses: [10.1.{i}.2/24]}}"
        for i in range(40)
    )
    hub = "\n".join(f"      p{i}: {{kind: veth, peer: s{i}/eth0}}" for i in range(40))
    text = (
        "apiVersion: passtplan/v1alpha1\nkind: Lab\nmetadata: {name: LABNAME}\nnamespaces:\n"
        f"  hub:\n    links:\n{hub}\n{spokes}\n"
    )
    lab = make_lab(text)
    proc = subprocess.Popen(
        [*CLI, "apply", str(lab.path), "--auto-approve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = RUN_DIR / lab.name / "owned.log"
    deadline = time.monotonic() + 60
    while not log.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for the walk's first recorded action
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=DEADLINE)
    assert "Traceback" not in err
    if proc.returncode == 1:  # interrupted (the walk may have ended first on a fast machine)
        assert "Interrupted: finishing the actions under way" in err
        assert "interrupted: what ran is recorded; run apply again to finish" in out
    else:
        assert proc.returncode == 0, err
    recovers(lab)


def test_seed_apply_killed_at_every_action_boundary_recovers(
    fresh: Callable[[str], Lab],
) -> None:
    """The seed lab in the sandbox, the VM's start and the swap included."""
    seed_dir = PLANS / "passt-macvlan"
    text = seed_lab()

    def seed() -> Lab:
        lab = fresh(text)
        (lab.directory / "passt-vm.yaml").write_text((seed_dir / "passt-vm.yaml").read_text())
        return lab

    total = actions_of(seed(), "--sandbox")
    for count in range(1, total + 1):
        lab = seed()
        code = killed_after(lab, count, "apply", "--sandbox")
        assert code in (-signal.SIGKILL, 0), f"after {count}: exit {code}"
        recovers(lab, "--sandbox")
