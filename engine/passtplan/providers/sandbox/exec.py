"""The exec channel: a root shell on the QEMU guest's second serial port (ttyS1), reached through
QEMU's socket for it, <vm dir>/exec.sock. The guest's /init runs a shell there without echo or
prompt; a command is sent as one line that prints a begin marker, runs it, and prints an end
marker with its exit code, so the answer is what lies between, whatever an earlier command cut
short by its timeout prints late. One command at a time per guest (a lock file beside the
socket): the checks may run in parallel.

GuestShell runs the lab's checks `from: vm/NAME` in the guest with busybox's ping and nc, as the
VM's own tools would, rather than in a host namespace that a real VM does not have.
"""

from __future__ import annotations

import fcntl
import re
import secrets
import shlex
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from passtplan.errors import PasstplanError
from passtplan.lang.models import Check

EXEC_SOCKET = "exec.sock"
EXEC_LOCK = "exec.lock"
PING_WAIT = 1  # seconds a ping waits for its reply, as the namespace probe does
TCP_WAIT = 2
CLIENT_GREETING = r"SSH-2.0-passtplan_check\r\n"


class GuestExecError(PasstplanError):
    pass


def guest_exec(vm_dir: Path, command: str, timeout: float) -> tuple[int, str]:
    """Run `command` in the guest's shell: its exit code and its output (stdout and stderr)."""
    nonce = secrets.token_hex(8)
    begin, end = f"__PASSTPLAN_BEGIN_{nonce}", f"__PASSTPLAN_END_{nonce}"
    line = f'echo {begin}; {command}; echo "{end} $?"\n'
    # The tty may echo the line: its markers are followed by ";" and "$?", never these.
    answer = re.compile(rf"{begin}\r?\n(.*?){end} (\d+)\r?\n", re.DOTALL)
    deadline = time.monotonic() + timeout
    with _one_at_a_time(vm_dir), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(vm_dir / EXEC_SOCKET))
            sock.sendall(line.encode())
            received = b""
            while (found := answer.search(received.decode(errors="replace"))) is None:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    raise GuestExecError(f"{vm_dir / EXEC_SOCKET}: the guest's channel closed")
                received += chunk
        except TimeoutError:
            raise GuestExecError(f"the guest did not answer {command!r} in {timeout:g} s") from None
        except OSError as exc:
            raise GuestExecError(f"{vm_dir / EXEC_SOCKET}: {exc.strerror or exc}") from None
    return int(found[2]), found[1].replace("\r\n", "\n")


@contextmanager
def _one_at_a_time(vm_dir: Path) -> Iterator[None]:
    with (vm_dir / EXEC_LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


class GuestShell(msgspec.Struct, frozen=True):
    """The guest of a QEMU VM, as the place a check runs from."""

    vm_dir: Path

    def available(self) -> bool:
        return (self.vm_dir / EXEC_SOCKET).exists()

    def probe(self, check: Check, deadline: float) -> tuple[bool, str]:
        """One attempt of the check from inside the guest: (it worked, what was seen)."""
        if check.ping:
            command = f"ping -c 1 -W {PING_WAIT} {shlex.quote(check.ping)}"
        else:
            host, _, port = check.target.rpartition(":")
            # A subshell: `exit` there ends it, not the channel's shell. The client speaks
            # first, as an ssh client does (see checks.py on passt and silent clients).
            command = (
                f"(printf '{CLIENT_GREETING}' | nc -w {TCP_WAIT} "
                f"{shlex.quote(host.strip('[]'))} {int(port)} | head -n 1)"
            )
        try:
            code, output = guest_exec(
                self.vm_dir, command, max(1.0, deadline - time.monotonic()) + 2
            )
        except GuestExecError as exc:
            return False, str(exc)
        lines = [line for line in output.splitlines() if line.strip()]
        if check.ping:
            ttl = re.search(r"ttl=(\d+)", output)
            if code == 0 and ttl:
                return True, f"ttl={ttl[1]}"
            return False, lines[-1] if lines else "no reply"
        if lines and not lines[0].startswith("nc:"):
            return True, f"connected; greeting: {lines[0]}"
        return False, lines[0].removeprefix("nc: ") if lines else "no greeting"
