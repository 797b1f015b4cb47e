"""One writer per lab and mode, as Terraform's state lock: an exclusive flock on a file under
/run/passtplan, taken by apply and destroy (and the plan they make) and held until they end.

The kernel drops a flock when its holder dies, so a lock is never left behind by a kill and
never broken by guessing. The file names its holder (pid, command, since when) for the message
a second writer gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from passtplan.errors import PasstplanError
from passtplan.providers.ownership import RUN_DIR

POLL = 0.1  # seconds between attempts while waiting for the lock


class LockedError(PasstplanError):
    """Another passtplan holds the lab's lock."""


def lock_path(lab_key: str, run_dir: Path = RUN_DIR) -> Path:
    # Beside the lab's directory, not in it: a complete destroy removes the directory.
    return run_dir / "locks" / f"{lab_key}.lock"


@contextlib.contextmanager
def lab_lock(lab_key: str, command: str, timeout: float = 0.0) -> Iterator[None]:
    """Hold the lab's lock for the block; wait up to `timeout` seconds for another holder."""
    path = lock_path(lab_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            _acquire(fd, path, lab_key, max(0.0, deadline - time.monotonic()), timeout)
        except BaseException:
            os.close(fd)
            raise
        if _still_there(fd, path):
            break
        os.close(fd)  # the holder removed the file as it finished: lock the one now there
    try:
        holder = {"pid": os.getpid(), "command": command, "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        if not (path.parent.parent / lab_key).exists():
            path.unlink(missing_ok=True)  # nothing of the lab is left: neither is its lock
        os.close(fd)  # releases the lock


def _still_there(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _acquire(fd: int, path: Path, lab_key: str, timeout: float, asked: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockedError(_held_message(path, lab_key, asked)) from None
            time.sleep(POLL)  # polling the lock until the deadline


def _held_message(path: Path, lab_key: str, timeout: float) -> str:
    try:
        holder = json.loads(path.read_text())
        since = time.strftime("%H:%M:%S", time.localtime(float(holder["since"])))
        who = f"pid {holder['pid']} ({holder['command']}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        who = "another passtplan"
    waited = f" after waiting {timeout:g} s" if timeout else ""
    return (
        f"lab {lab_key} is locked by {who}{waited}: wait for it to finish, or pass "
        f"--lock-timeout SECONDS to wait (lock file {path})"
    )
