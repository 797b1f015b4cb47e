"""The seed lab with its QEMU guest: `passtplan ssh` lands in the guest from the office, the
manifest's cloud-init password logs in, `passtplan console` reaches the serial console, and
destroy leaves nothing (the lab's key included).

One lab per module (a boot takes seconds under TCG); the tests read it in order.
"""

from __future__ import annotations

import os
import pty
import secrets
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from passtplan.providers import kernel
from passtplan.providers.ownership import RUN_DIR
from passtplan.providers.sandbox.image import cached_image
from tests.conftest import PLANS, REPO, seed_lab
from tests.integration.conftest import Lab, cleanup

SEED = PLANS / "passt-macvlan"
VM = "passt-macvlan"
ALICE_PASSWORD = "alices-password"
MISSING = [tool for tool in ("qemu-system-x86_64", "ssh") if shutil.which(tool) is None]
if MISSING:
    pytest.skip(f"{', '.join(MISSING)} not installed (bash scripts/setup)", allow_module_level=True)
if cached_image() is None:
    pytest.skip(
        "the QEMU guest's image is not built (bash scripts/setup builds it)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory = tmp_path_factory.mktemp("guest-access")
    name = f"pa{secrets.token_hex(3)}"
    key = directory / "alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    alice = (
        "            users:\n              - default\n"
        f"              - {{name: alice, plain_text_passwd: {ALICE_PASSWORD}, lock_passwd: false, "
        f"ssh_authorized_keys: ['{key.with_suffix('.pub').read_text().strip()}']}}\n"
    )
    manifest = (SEED / "passt-vm.yaml").read_text()
    manifest = manifest.replace(
        "            ssh_pwauth: true\n", f"            ssh_pwauth: true\n{alice}"
    )
    assert "name: alice" in manifest
    (directory / "passt-vm.yaml").write_text(manifest)
    lab = Lab(directory, name).write(seed_lab(guest="qemu"))
    try:
        yield lab
    finally:
        cleanup(name)


@pytest.fixture(scope="module")
def applied(seed: Lab) -> str:
    return seed.apply("--sandbox").stdout


def passtplan(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own: ssh replaces the process that runs it."""
    environment = {**os.environ, "PYTHONPATH": str(REPO / "engine")}
    return subprocess.run(
        [sys.executable, "-m", "passtplan", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_the_plan_names_what_the_guest_does_not_apply(applied: str) -> None:
    assert f"note: vm.{VM}: cloud-init runcmd not applied in the sandbox\n" in applied
    assert "Checks: 3 passed, 0 failed, 0 skipped." in applied


def test_ssh_from_the_office_lands_in_the_guest(seed: Lab, applied: str) -> None:
    shown = passtplan("ssh", str(seed.directory), VM, "--sandbox", "--", "ip", "-4", "addr")
    assert shown.returncode == 0, shown.stderr
    assert "inet 10.233.70.4/32" in shown.stdout  # the lease from before the swap
    assert "mtu 65520" in shown.stdout
    named = passtplan("ssh", str(seed.directory), VM, "--sandbox", "--", "hostname")
    assert named.stdout.strip() == VM
    failed = passtplan("ssh", str(seed.directory), VM, "--sandbox", "--", "exit", "3")
    assert failed.returncode == 3  # ssh's exit code is the command's


def office_ssh(
    seed: Lab, user: str, options: tuple[str, ...], environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The real ssh from the office, as a person would run it there (not `passtplan ssh`)."""
    return subprocess.run(
        [
            *("ip", "netns", "exec", seed.netns("office"), "ssh", *options),
            *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"),
            *("-o", "LogLevel=ERROR", f"{user}@10.7.120.202", "id -un"),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, **environment},
        timeout=60,
        check=False,
    )


@pytest.mark.usefixtures("applied")
def test_ssh_without_a_command_is_a_shell_on_the_users_terminal(seed: Lab) -> None:
    controller, terminal = pty.openpty()
    shell = subprocess.Popen(
        [sys.executable, "-m", "passtplan", "ssh", str(seed.directory), VM, "--sandbox"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "PYTHONPATH": str(REPO / "engine")},
        start_new_session=True,
    )
    os.close(terminal)
    try:
        os.write(controller, b"tty; echo $((6*7))-typed\r")
        seen = read_until(controller, b"42-typed")
        assert b"/dev/pts/" in seen  # the guest's shell has a terminal of its own
        os.write(controller, b"exit 4\r")
        assert shell.wait(timeout=30) == 4
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
        os.close(controller)


@pytest.mark.parametrize(
    ("user", "password", "code"),
    [("root", "dangerous", 0), ("root", "wrong", 255), ("alice", ALICE_PASSWORD, 0)],
)
@pytest.mark.usefixtures("applied")
def test_the_manifest_passwords_log_in(
    seed: Lab, tmp_path: Path, user: str, password: str, code: int
) -> None:
    """The seed's `chpasswd: {list: "root:dangerous"}`, and a user's plain_text_passwd."""
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho {password}\n")
    askpass.chmod(0o700)
    login = office_ssh(
        seed,
        user,
        ("-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"),
        {"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"},
    )
    assert login.returncode == code, login.stderr
    assert login.stdout == ("" if code else f"{user}\n")


@pytest.mark.usefixtures("applied")
def test_a_user_logs_in_with_the_key_the_manifest_gives_them(seed: Lab) -> None:
    key = str(seed.directory / "alice")
    login = office_ssh(seed, "alice", ("-i", key, "-o", "IdentitiesOnly=yes"), {})
    assert login.returncode == 0, login.stderr
    assert login.stdout == "alice\n"


def read_until(fd: int, wanted: bytes) -> bytes:
    seen, deadline = b"", time.monotonic() + 30
    while wanted not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"never saw {wanted!r} on the console, only {seen!r}"
        seen += os.read(fd, 4096)
    return seen


def test_console_reaches_the_guest_shell_and_ctrl_bracket_quits(seed: Lab, applied: str) -> None:
    controller, terminal = pty.openpty()
    console = subprocess.Popen(
        [sys.executable, "-m", "passtplan", "console", str(seed.directory), VM],
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO / "engine")},
    )
    os.close(terminal)
    try:
        read_until(controller, b"Ctrl-] quits")
        os.write(controller, b"\recho console-$((6*7))\r")
        read_until(controller, b"console-42")
        os.write(controller, b"\x1d")
        assert console.wait(timeout=10) == 0
        assert b"Disconnected" in read_until(controller, b"console.\r\n")
    finally:
        if console.poll() is None:
            console.kill()
            console.wait()
        os.close(controller)


def test_destroy_leaves_no_process_socket_or_key(seed: Lab, applied: str) -> None:
    key = RUN_DIR / f"{seed.name}@sandbox" / "ssh" / "id_ed25519"
    assert key.exists()
    seed.destroy("--sandbox")
    assert seed.leftovers() == []
    assert not key.parent.exists()
    assert not [n for n in kernel.list_netns() if n.startswith(seed.name)]
    running = subprocess.run(["pgrep", "-f", seed.name], capture_output=True, check=False)
    assert running.stdout == b""
