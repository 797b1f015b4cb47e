"""`passtplan console LAB VM`: the terminal on a sandbox VM's serial console.

QEMU serves the guest's first serial port on a socket in the VM's directory; this command
connects to it, puts the terminal in raw mode (so Ctrl-C and the arrows reach the guest's
shell) and relays both ways until Ctrl-] or until QEMU goes. The terminal is restored however
it ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import termios
import tty
from collections.abc import Iterator
from pathlib import Path

from passtplan.commands.common import load
from passtplan.commands.ssh import qemu_vm
from passtplan.engine import require_root, store_for
from passtplan.errors import PasstplanError
from passtplan.providers.sandbox.launcher import vm_dir
from passtplan.providers.sandbox.qemu import CONSOLE_SOCKET

ESCAPE = b"\x1d"  # Ctrl-], as telnet and virsh console
CHUNK = 4096


def run(path: Path, vm: str) -> int:
    loaded = load(path, warn=False)
    qemu_vm(loaded, vm)
    require_root("console")
    directory = vm_dir(store_for(loaded, sandbox=True), vm)
    if not directory.exists():
        raise PasstplanError(
            f"vm {vm} of lab {loaded.name} is not running in the sandbox ({directory} does not "
            "exist): run passtplan apply --sandbox first"
        )
    console = connect(directory / CONSOLE_SOCKET, vm)
    print(f"Connected to vm {vm}'s serial console; Ctrl-] quits, Enter shows a prompt.")
    with console:
        relay(console, sys.stdin.fileno(), sys.stdout.fileno())
    print(f"\nDisconnected from vm {vm}'s serial console.")
    return 0


def connect(path: Path, vm: str) -> socket.socket:
    if not path.exists():
        raise PasstplanError(
            f"vm {vm} has no serial console ({path} does not exist): its QEMU is not running; "
            "passtplan apply --sandbox starts it"
        )
    console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        console.connect(str(path))
    except OSError as exc:
        console.close()
        raise PasstplanError(
            f"vm {vm}'s serial console ({path}) does not answer ({exc.strerror}): QEMU is not "
            "running; passtplan apply --sandbox restarts it"
        ) from None
    return console


def relay(console: socket.socket, terminal_in: int, terminal_out: int) -> None:
    """Copy both ways until Ctrl-] is typed, the terminal closes, or the console does."""
    with raw_terminal(terminal_in):
        while True:
            ready, _, _ = select.select([console.fileno(), terminal_in], [], [])
            if console.fileno() in ready:
                output = console.recv(CHUNK)
                if not output:
                    return  # QEMU went away
                _write_all(terminal_out, output)
            if terminal_in in ready:
                typed = os.read(terminal_in, CHUNK)
                before, escape, _ = typed.partition(ESCAPE)
                if before:
                    console.sendall(before)
                if escape or not typed:
                    return


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal in raw mode for the block, and as it was after (nothing to do for a pipe)."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)  # not TCSAFLUSH: what was typed ahead goes to the guest
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
