"""`passtplan ssh` and `console` without a guest: where ssh runs from, its command line, and the
console's relay between a real terminal (a pty) and a socket standing in for QEMU's."""

from __future__ import annotations

import os
import pty
import secrets
import shutil
import socket
import termios
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from passtplan.cli import app
from passtplan.commands.console import relay
from passtplan.commands.ssh import Access, find_access, ssh_argv
from passtplan.cycles import load_lab
from passtplan.desired import desired_state
from passtplan.errors import PasstplanError
from passtplan.lang.loader import LoadedLab
from tests.conftest import PLANS, seed_lab

SEED = PLANS / "passt-macvlan" / "lab.yaml"


def access(loaded: LoadedLab, *, sandbox: bool) -> Access:
    desired = desired_state(loaded.lab, sandbox=sandbox, manifests=loaded.manifests)
    return find_access(loaded, desired, "passt-macvlan")


def test_the_seed_logs_in_from_the_office_to_the_macvlan_address() -> None:
    assert access(load_lab(SEED), sandbox=True) == Access("office", "10.7.120.202")


def test_a_check_to_the_pod_address_counts_and_vm_or_failing_checks_do_not(tmp_path: Path) -> None:
    lab = SEED.read_text().replace(
        '  - {from: office, ping: 10.7.120.202}\n  - {from: office, tcp: "10.7.120.202:22"}',
        "  - {from: vm/passt-macvlan, ping: 10.7.120.202}\n  - {from: gw, ping: 10.64.1.46}\n"
        "  - {from: gw, ping: 10.7.120.202, expect: failure}\n"
        '  - {from: host, tcp: "10.233.70.4:22"}',
    )
    assert lab != SEED.read_text()
    (tmp_path / "lab.yaml").write_text(lab)
    (tmp_path / "passt-vm.yaml").write_text((SEED.parent / "passt-vm.yaml").read_text())
    assert access(load_lab(tmp_path / "lab.yaml"), sandbox=True) == Access("host", "10.233.70.4")


def test_on_a_node_the_office_does_not_exist() -> None:
    with pytest.raises(PasstplanError, match=r"run from office, a namespace of the sandbox only"):
        access(load_lab(SEED), sandbox=False)


def test_without_a_check_to_the_vm_the_error_names_the_fix(tmp_path: Path) -> None:
    lab = SEED.read_text().replace("ping: 10.7.120.202", "ping: 10.7.0.1")
    (tmp_path / "lab.yaml").write_text(lab.replace('"10.7.120.202:22"', '"10.7.0.1:22"'))
    (tmp_path / "passt-vm.yaml").write_text((SEED.parent / "passt-vm.yaml").read_text())
    with pytest.raises(PasstplanError, match=r"no check reaches vm passt-macvlan .* add one"):
        access(load_lab(tmp_path / "lab.yaml"), sandbox=True)


def test_ssh_argv_with_the_lab_key_and_a_command() -> None:
    key = Path("/run/passtplan/x@sandbox/ssh/id_ed25519")
    assert ssh_argv("10.7.120.202", 22, key, ["ip", "-4", "addr"]) == [
        "ssh",
        "-i",
        str(key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-p",
        "22",
        "root@10.7.120.202",
        "--",  # the command's own options (-4) are not ssh's
        "ip",
        "-4",
        "addr",
    ]


def test_ssh_argv_for_a_shell_on_a_node() -> None:
    argv = ssh_argv("fd00::5", 2222, None, [])
    assert "-i" not in argv and argv[-3:] == ["-p", "2222", "root@fd00::5"]


def read_until(fd: int, wanted: bytes, deadline: float) -> bytes:
    seen = b""
    while wanted not in seen:
        assert time.monotonic() < deadline, f"never saw {wanted!r}, only {seen!r}"
        seen += os.read(fd, 1024)
    return seen


def test_console_relays_both_ways_in_raw_mode_and_ctrl_bracket_restores_the_terminal() -> None:
    qemu, ours = socket.socketpair()
    controller, terminal = pty.openpty()
    before = termios.tcgetattr(terminal)
    worker = threading.Thread(target=relay, args=(ours, terminal, terminal))
    worker.start()
    deadline = time.monotonic() + 10
    try:
        qemu.sendall(b"login: ")
        read_until(controller, b"login: ", deadline)
        while termios.tcgetattr(terminal)[3] & termios.ICANON:  # raw: no line editing
            assert time.monotonic() < deadline
            time.sleep(0.01)  # polling the terminal's mode until relay has set it
        os.write(controller, b"root\x03")  # Ctrl-C goes to the guest, raw
        got = b""
        while len(got) < 5:
            got += qemu.recv(64)
        assert got == b"root\x03"
        os.write(controller, b"ls\x1dtyped after quitting")
        worker.join(10)
        assert not worker.is_alive()
        qemu.settimeout(1)
        assert qemu.recv(64) == b"ls"
        assert termios.tcgetattr(terminal) == before
    finally:
        qemu.close()
        worker.join(10)
        ours.close()
        os.close(controller)
        os.close(terminal)


def test_console_ends_when_qemu_goes() -> None:
    qemu, ours = socket.socketpair()
    reading, writing = os.pipe()  # not a terminal: no raw mode to set
    try:
        qemu.close()
        relay(ours, reading, writing)  # returns: the console closed
    finally:
        ours.close()
        os.close(reading)
        os.close(writing)


def seed_copy(tmp_path: Path, guest: str) -> Path:
    """The seed lab under a name no lab on this machine has, never applied."""
    (tmp_path / "lab.yaml").write_text(
        seed_lab(guest).replace("LABNAME", f"ptssh{secrets.token_hex(3)}")
    )
    shutil.copy(SEED.parent / "passt-vm.yaml", tmp_path / "passt-vm.yaml")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "guest", "error"),
    [
        (("ssh", "nope", "--sandbox"), "qemu", "has no vm 'nope' (its vms: passt-macvlan)"),
        (("console", "nope"), "qemu", "has no vm 'nope'"),
        (("ssh", "passt-macvlan", "--sandbox"), "stand-in", "runs the sandbox's stand-in guest"),
        (("console", "passt-macvlan"), "stand-in", "runs the sandbox's stand-in guest"),
    ],
)
def test_ssh_and_console_refuse_what_they_cannot_enter(
    cli: CliRunner, tmp_path: Path, args: tuple[str, ...], guest: str, error: str
) -> None:
    lab = seed_copy(tmp_path, guest)
    result = cli.invoke(app, [args[0], str(lab), *args[1:]])
    assert result.exit_code == 1
    assert error in result.output and "Traceback" not in result.output


@pytest.mark.skipif(os.geteuid() != 0, reason="ssh and console need root")
@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("ssh", "passt-macvlan", "--sandbox"), "is not applied with --sandbox"),
        (("console", "passt-macvlan"), "is not running in the sandbox"),
    ],
)
def test_ssh_and_console_of_a_lab_not_applied(
    cli: CliRunner, tmp_path: Path, args: tuple[str, ...], error: str
) -> None:
    result = cli.invoke(app, [args[0], str(seed_copy(tmp_path, "qemu")), *args[1:]])
    assert result.exit_code == 1
    assert error in result.output and "Traceback" not in result.output
