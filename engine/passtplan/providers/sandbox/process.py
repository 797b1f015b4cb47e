"""The sandbox's processes (passt, QEMU, the stand-in guest): started to outlive the command that
starts them, known again by pid and start time, waited for with a deadline, stopped for good."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from passtplan.errors import PasstplanError
from passtplan.providers import kernel

STOP_DEADLINE = 10.0


class VmError(PasstplanError):
    pass


class Process(msgspec.Struct, frozen=True):
    """A process we started, known by its pid and its start time: a recycled pid is not it."""

    pid: int
    started: int  # clock ticks after boot, /proc/PID/stat field 22

    @classmethod
    def of(cls, pid: int) -> Process:
        found = _stat(pid)
        return cls(pid, found[1] if found else 0)

    @classmethod
    def load(cls, record: dict[str, object], key: str) -> Process | None:
        value = record.get(key)
        return cls(*value) if isinstance(value, list) and len(value) == 2 else None

    def state(self) -> str | None:
        """The kernel's state letter (R, S, Z...), or None when the process is gone."""
        found = _stat(self.pid)
        return found[0] if found and found[1] == self.started else None

    def running(self) -> bool:
        """Alive and not on its way out: an exiting process has released its memory, and with
        it its command line (passt takes a moment to close thousands of port sockets)."""
        if self.state() in (None, "Z", "X"):
            return False
        try:
            return bool(Path(f"/proc/{self.pid}/cmdline").read_bytes())
        except OSError:
            return False

    def exited(self) -> bool:
        """Gone or a zombie; our own child is reaped on the way. (Not `not running()`: a
        process in the middle of an exec has no command line for a moment either.)"""
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, os.WNOHANG)
        return self.state() in (None, "Z", "X")


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1].split()
    except OSError:
        return None
    return fields[0], int(fields[19])


def spawn(command: list[str], log: Path) -> Process:
    """Start `command` in a session of its own, its output appended to `log`: it outlives this
    command, as a VM outlives kubectl."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return Process.of(process.pid)


ENTER = "passtplan.providers.sandbox.enter"


def in_netns(netns: str, command: list[str], *, nofile: bool = False) -> list[str]:
    """`command` run in a named network namespace (sandbox.enter: the one way in)."""
    options = ["--nofile"] if nofile else []
    return [sys.executable, "-m", ENTER, str(kernel.netns_path(netns)), *options, "--", *command]


def wait_for(
    ready: Callable[[], bool], process: Process, what: str, log: Path, limit: float
) -> None:
    """Poll `ready` until it holds; fail as soon as `process` exits, or after `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if ready():
            return
        if process.exited():
            tail = " | ".join(useful_lines(log)[-3:])
            raise VmError(f"waiting for {what}: the process exited ({tail})")
        time.sleep(0.05)  # polling a process we started, bounded by the deadline
    raise VmError(f"waiting for {what}: nothing after {limit:.0f} s")


def living_in(path: Path, *, entering: bool = False) -> list[int]:
    """The processes whose network namespace is the one at `path`; with `entering`, also those
    on their way into it: sandbox.enter started (in_netns), not yet in it, which a start cut
    short by a kill leaves to finish on their own."""
    inode = path.stat().st_ino if kernel.is_namespace(path) else None
    way_in = [b"-m", ENTER.encode(), os.fsencode(path)] if entering else None
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                inside = inode is not None and (entry / "ns" / "net").stat().st_ino == inode
                if inside or (
                    way_in and (entry / "cmdline").read_bytes().split(b"\0")[1:4] == way_in
                ):
                    found.append(int(entry.name))
    return found


def stop_all_in(netns: str) -> None:
    """Stop every process in the namespace and every one on its way in, until none is left: a
    process being stopped may have just forked one (passt going to the background)."""
    path = kernel.netns_path(netns)
    deadline = time.monotonic() + STOP_DEADLINE
    while (found := living_in(path, entering=True)) and time.monotonic() < deadline:
        for pid in found:
            with contextlib.suppress(OSError):
                stop(Process.of(pid))


def stop(process: Process | None) -> None:
    """End a process we started, in this run or an earlier one, and return once it is gone for
    good: passt takes a moment to close its thousands of port sockets, our own child we reap,
    an orphan init reaps."""
    if process is None or process.state() is None:
        return
    if process.running():
        os.kill(process.pid, signal.SIGTERM)
        os.kill(process.pid, signal.SIGCONT)  # a stopped process acts on nothing but SIGKILL
    deadline = time.monotonic() + STOP_DEADLINE
    killed = False
    while process.state() is not None and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(process.pid, os.WNOHANG)
        if not killed and time.monotonic() > deadline - STOP_DEADLINE / 2 and process.running():
            os.kill(process.pid, signal.SIGKILL)
            killed = True
        time.sleep(0.02)  # polling for the process to end, bounded by the deadline


def useful_lines(log: Path) -> list[str]:
    """A log's lines without passt's complaints that there is no syslog in a namespace."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip() and "to syslog" not in line]
