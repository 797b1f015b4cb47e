"""The lab's checks: ping and TCP from a namespace or a VM's guest, with a deadline. A QEMU
guest runs them with its own tools over its exec channel (sandbox/exec.py); the rest here.

Each probe runs on a thread that has entered the source namespace, with sockets made there:
raw ICMP, so the reply's TTL is read back (passt answers a guest's ping itself, TTL 255), and
TCP, which reads the server's greeting. A client that waits for the server to speak first
would wait forever behind passt, which acknowledges a guest's SYN-ACK only with the client's
first data; as an ssh client does, the probe speaks if the server has not after a moment.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from passtplan import resources as res
from passtplan.desired import Desired
from passtplan.inet import checksum
from passtplan.lang.models import VM_PREFIX, Check
from passtplan.providers import kernel
from passtplan.providers.sandbox.exec import GuestShell
from passtplan.providers.sandbox.launcher import guest_for, lab_vm_dir
from passtplan.providers.session import namespace_file

RETRY_EVERY = 0.2  # seconds between attempts while a check has time left
GREETING_WAIT = 0.5  # how long a TCP probe lets the server speak first
CLIENT_GREETING = b"SSH-2.0-passtplan_check\r\n"


@dataclass(frozen=True)
class CheckResult:
    check: Check
    status: str  # "pass", "fail", "not run" (it should run here, and cannot) or "skipped"
    detail: str
    seconds: float

    @property
    def kind(self) -> str:
        return "ping" if self.check.ping else "tcp"


def run_checks(checks: tuple[Check, ...], desired: Desired) -> list[CheckResult]:
    return [run_check(check, desired) for check in checks]


def run_check(check: Check, desired: Desired) -> CheckResult:
    source = _source_file(check.source, desired)
    if isinstance(source, Elsewhere):
        return CheckResult(check, "skipped", source.why, 0.0)
    if isinstance(source, str):
        return CheckResult(check, "not run", source, 0.0)
    started = time.monotonic()
    deadline = started + check.timeout
    if isinstance(source, GuestShell):  # a QEMU guest: its own shell runs the probe
        ok, detail = _probe_until(check, deadline, source.probe)
    else:
        fd = kernel.open_netns(source)
        try:
            with kernel.inside(fd):
                ok, detail = _probe_until(check, deadline, _probe)
        finally:
            os.close(fd)
    passed = ok if check.expect == "success" else not ok
    if check.expect == "failure":
        detail = f"failed as expected: {detail}" if passed else f"expected to fail, but {detail}"
    return CheckResult(check, "pass" if passed else "fail", detail, time.monotonic() - started)


@dataclass(frozen=True)
class Elsewhere:
    """A check that runs only in the other mode (the sandbox): skipped here, not failed."""

    why: str


def _source_file(source: str, desired: Desired) -> Path | GuestShell | Elsewhere | str:
    """The namespace file a check runs in (or the guest's shell), or why it cannot run: in this
    mode (Elsewhere), or now (the lab is not applied: a str)."""
    if source.startswith(VM_PREFIX):
        vm = desired.vms.get(source.removeprefix(VM_PREFIX))
        if not isinstance(vm, res.Vm):
            return Elsewhere("runs inside the VM's guest: with --sandbox only")
        return guest_for(vm).checks_from(vm, lab_vm_dir(desired.lab, vm.name))
    namespace = desired.namespaces.get(source)
    if namespace is None:
        return Elsewhere("its namespace exists only in the sandbox")
    found = namespace_file(namespace)
    return found if found is not None else f"namespace {source} does not exist"


def _probe_until(
    check: Check, deadline: float, probe: Callable[[Check, float], tuple[bool, str]]
) -> tuple[bool, str]:
    """Probe until it succeeds or the deadline passes; a check expected to fail probes once,
    for its whole timeout."""
    while True:
        ok, detail = probe(check, deadline)
        if ok or check.expect == "failure" or time.monotonic() + RETRY_EVERY >= deadline:
            return ok, detail
        time.sleep(RETRY_EVERY)  # polling the network until the deadline


def _probe(check: Check, deadline: float) -> tuple[bool, str]:
    if check.ping:
        return ping(check.ping, deadline)
    host, _, port = check.target.rpartition(":")
    return tcp(host.strip("[]"), int(port), deadline)


# --- ping --------------------------------------------------------------------------------


def ping(target: str, deadline: float) -> tuple[bool, str]:
    """One ICMP echo; (answered, "ttl=N" or why not)."""
    v6 = ":" in target
    family = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    ident, seq = random.getrandbits(16), random.getrandbits(16)
    payload = b"passtplan-check".ljust(56, b".")
    kind = 128 if v6 else 8
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if not v6:  # the kernel fills in ICMPv6 checksums
        header = struct.pack("!BBHHH", kind, 0, checksum(header + payload), ident, seq)
    with socket.socket(family, socket.SOCK_RAW, proto) as sock:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        try:
            sock.sendto(header + payload, (target, 0))
        except OSError as exc:
            return False, exc.strerror or str(exc)
        wait_until = min(deadline, time.monotonic() + 1.0)
        for ttl in _echo_replies(sock, v6, ident, seq, wait_until):
            return True, f"ttl={ttl}"
    return False, "no reply"


def _echo_replies(
    sock: socket.socket, v6: bool, ident: int, seq: int, deadline: float
) -> Iterator[int]:
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            return
        data, ancillary, _, _ = sock.recvmsg(2048, socket.CMSG_SPACE(4))
        if v6:
            icmp, ttl = data, _hop_limit(ancillary)
        else:
            icmp, ttl = data[(data[0] & 0x0F) * 4 :], data[8]
        is_reply = len(icmp) >= 8 and icmp[0] == (129 if v6 else 0)
        if is_reply and struct.unpack("!HH", icmp[4:8]) == (ident, seq):
            yield ttl


def _hop_limit(ancillary: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT:
            return int(struct.unpack("i", data[:4])[0])
    return -1


# --- tcp ---------------------------------------------------------------------------------


def tcp(host: str, port: int, deadline: float) -> tuple[bool, str]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(max(0.1, min(2.0, deadline - time.monotonic())))
        try:
            sock.connect((host, port))
        except OSError as exc:
            return False, exc.strerror or str(exc) or type(exc).__name__
        greeting = _greeting(sock, deadline)
    return True, f"connected; {greeting}" if greeting else "connected"


def _greeting(sock: socket.socket, deadline: float) -> str:
    """The server's first line, speaking first if it stays silent (as an ssh client does)."""
    with contextlib.suppress(OSError):
        sock.settimeout(min(GREETING_WAIT, max(0.05, deadline - time.monotonic())))
        try:
            data = sock.recv(256)
        except TimeoutError:
            sock.sendall(CLIENT_GREETING)
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            data = sock.recv(256)
        line = data.decode(errors="replace").splitlines()[0] if data else ""
        return f"greeting: {line}" if line else ""
    return ""
