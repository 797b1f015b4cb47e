"""The seed lab in the sandbox with its default guest, QEMU: a Debian kernel on passt's socket.

One lab for the module (a boot takes seconds under TCG): the guest's lease, MTU and ping TTL
read from inside it over its exec channel, QEMU killed and the repair planned and applied, and
a destroy that leaves no process, socket or namespace.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from passtplan.providers.ownership import RUN_DIR
from passtplan.providers.sandbox import image
from passtplan.providers.sandbox.exec import guest_exec
from passtplan.providers.sandbox.image import cached_image
from passtplan.providers.sandbox.process import Process
from tests.conftest import PLANS, seed_lab
from tests.integration.conftest import Lab, cleanup, ip

VM = "passt-macvlan"
LEASE = "10.233.70.4/32"  # the pod's CNI address, which passt hands to the guest


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if cached_image() is None:
        pytest.skip("the guest image is not built: run bash scripts/setup")
    directory = tmp_path_factory.mktemp("qemu-seed")
    name = f"pq{secrets.token_hex(3)}"
    shutil.copy(PLANS / VM / "passt-vm.yaml", directory / "passt-vm.yaml")
    lab = Lab(directory, name).write(seed_lab(guest="qemu"))
    try:
        yield lab
    finally:
        cleanup(name)


def vm_dir(lab: Lab) -> Path:
    return RUN_DIR / f"{lab.name}@sandbox" / "vm" / VM


def state(lab: Lab) -> dict[str, list[int]]:
    record = json.loads((vm_dir(lab) / "state.json").read_text())
    return {"passt": record["passt"], "guest": record["guest"]}


@pytest.fixture(scope="module")
def applied(seed: Lab) -> str:
    return seed.apply("--sandbox").stdout


def test_the_seed_checks_pass_from_the_guest(applied: str) -> None:
    assert "Apply complete!" in applied
    assert re.search(r"QEMU \((tcg|kvm), \d+ MiB, \d CPUs?.*\): the guest took 10\.233", applied)
    assert "greeting: SSH-2.0-dropbear" in applied  # sshd in the guest, through passt
    guest_ping = next(line for line in applied.splitlines() if f"vm/{VM}" in line)
    assert "pass" in guest_ping
    assert "ttl=255" in guest_ping  # passt answers the guest's ping itself
    assert "Checks: 3 passed, 0 failed, 0 skipped." in applied


def test_the_guest_holds_its_lease_with_passts_mtu(seed: Lab, applied: str) -> None:
    command = "hostname; ip -o -4 address show eth0; ip link show eth0"
    code, output = guest_exec(vm_dir(seed), command, 20)
    assert code == 0, output
    assert output.splitlines()[0] == VM  # from the VM's overlay (guest.env), not the image's
    assert f"inet {LEASE} " in output
    assert "mtu 65520" in output
    assert "52:54:00:12:34:56" in output


def test_the_guest_pings_with_ttl_255(seed: Lab, applied: str) -> None:
    code, output = guest_exec(vm_dir(seed), "ping -c 1 -W 5 10.64.1.46", 20)
    assert code == 0, output
    assert "ttl=255" in output


def test_killed_qemu_is_repaired_and_keeps_its_lease(seed: Lab, applied: str) -> None:
    qemu = Process(*state(seed)["guest"])
    subprocess.run(["kill", "-9", str(qemu.pid)], check=True)
    deadline = time.monotonic() + 10
    while qemu.running() and time.monotonic() < deadline:
        time.sleep(0.02)  # polling for QEMU to go
    plan = json.loads(seed.plan("--sandbox", "--json").stdout)
    [change] = [c for c in plan["changes"] if c["actions"] != ["no-op"]]
    assert change["address"] == f"vm.{VM}"
    assert change["actions"] == ["update"]
    assert change["reason"] == "repair: guest is not running"
    repaired = seed.apply("--sandbox").stdout
    assert f"restarted passt (pinned to {LEASE}), restarted QEMU" in repaired
    assert "Checks: 3 passed, 0 failed, 0 skipped." in repaired
    _, output = guest_exec(vm_dir(seed), "ip -o -4 address show eth0", 20)
    assert f"inet {LEASE} " in output
    seed.converged("--sandbox")


def test_destroy_leaves_no_process_socket_or_namespace(seed: Lab, applied: str) -> None:
    processes = [Process(*value) for value in state(seed).values()]
    directory = vm_dir(seed)
    seed.destroy("--sandbox")
    assert [p for p in processes if p.state() is not None] == []
    assert not directory.exists()  # sockets, pid file, console log, the initramfs copy
    assert seed.leftovers() == []
    left = subprocess.run(["pgrep", "-af", seed.name], capture_output=True, text=True, check=False)
    assert left.stdout == ""
    assert ip("netns", "list").count(seed.name) == 0


def test_without_the_image_the_plan_says_to_run_setup(
    make_lab: Callable[[str], Lab], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(image, "cached_image", lambda: None)  # a machine that never ran setup
    lab = make_lab(seed_lab(guest="qemu"))
    shutil.copy(PLANS / VM / "passt-vm.yaml", lab.directory / "passt-vm.yaml")
    result = lab.plan("--sandbox", code=1)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {lab.path}: vm.{VM} runs QEMU and its guest image is not built: run bash "
        "scripts/setup "
        "(or set sandbox: {guest: stand-in} in the lab)"
    )
    assert lab.leftovers() == []
