"""The lab's checks: ping and TCP from a namespace or a VM's guest, with a deadline. A QEMU
guest runs them with its own tools over its exec channel (sandbox/exec.py); the rest here.

Each probe runs on a thread that has entered the source namespace, with sockets made there:
raw ICMP, so the reply's TTL is read back (passt answers a guest's ping itself, TTL 255), and
TCP, which reads the server's greeting. A client that waits for the server to speak first
would wait forever behind passt, which acknowledges a guest's SYN-ACK only with the client's
first data; as an ssh client does, the probe speaks if the server has not after a moment.

Checks run side by side (a bounded pool), so a lab whose target is down fails in about one
check's timeout rather than the sum of them; results keep the lab's order. A probe never
outlives its check's deadline, and an answer that will not change by waiting (connection
refused, no route, an ICMP destination unreachable) fails the check at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

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
MAX_PARALLEL = 8  # checks probing at once
CONNECT_ATTEMPT = 2.0  # a TCP connect is tried again after this (a SYN lost before a route is up)
# Errors that say the target cannot be reached now and will not be by retrying within a check.
FINAL_ERRORS = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH}


class CheckResult(msgspec.Struct, frozen=True):
    check: Check
    status: str  # "pass", "fail", "not run" (it should run here, and cannot) or "skipped"
    detail: str
    seconds: float

    @property
    def kind(self) -> str:
        return "ping" if self.check.ping else "tcp"


def run_checks(checks: tuple[Check, ...], desired: Desired) -> list[CheckResult]:
    """Every check, side by side; the results in the lab's order."""
    if not checks:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(checks))) as pool:
        return list(pool.map(lambda check: run_check(check, desired), checks))


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


class Elsewhere(msgspec.Struct, frozen=True):
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


class Unreachable(Exception):  # noqa: N818 - an answer, not an error of passtplan
    """The network answered that the target cannot be reached: no use trying again."""


def _probe_until(
    check: Check, deadline: float, probe: Callable[[Check, float], tuple[bool, str]]
) -> tuple[bool, str]:
    """Probe until it succeeds, the network says the target is unreachable, or the deadline
    passes; a check expected to fail probes once, for its whole timeout."""
    while True:
        try:
            ok, detail = probe(check, deadline)
        except Unreachable as exc:
            return False, str(exc)
        if ok or check.expect == "failure" or time.monotonic() + RETRY_EVERY >= deadline:
            return ok, detail
        time.sleep(RETRY_EVERY)  # polling the network until the deadline


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _failed(exc: OSError) -> str:
    """Why a socket call failed; raises Unreachable when retrying cannot help."""
    why = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in FINAL_ERRORS:
        raise Unreachable(why)
    return why


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
            return False, _failed(exc)
        wait_until = min(deadline, time.monotonic() + 1.0)
        for ttl in _echo_replies(sock, v6, ident, seq, wait_until):
            return True, f"ttl={ttl}"
    return False, "no reply"


UNREACHABLE_TYPE = {False: 3, True: 1}  # ICMP and ICMPv6 destination unreachable
INNER_ECHO = {False: 8, True: 128}  # the echo request quoted in it
UNREACHABLE_CODES = {  # RFC 792 and RFC 4443, the codes a check meets
    False: {0: "network unreachable", 1: "host unreachable", 13: "administratively prohibited"},
    True: {
        0: "no route to destination",
        1: "administratively prohibited",
        3: "address unreachable",
    },
}


def _echo_replies(
    sock: socket.socket, v6: bool, ident: int, seq: int, deadline: float
) -> Iterator[int]:
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            return
        data, ancillary, _, sender = sock.recvmsg(2048, socket.CMSG_SPACE(4))
        if v6:
            icmp, ttl = data, _hop_limit(ancillary)
        else:
            icmp, ttl = data[(data[0] & 0x0F) * 4 :], data[8]
        is_reply = len(icmp) >= 8 and icmp[0] == (129 if v6 else 0)
        if is_reply and struct.unpack("!HH", icmp[4:8]) == (ident, seq):
            yield ttl
        if _unreachable_for(icmp, v6, ident, seq):
            why = UNREACHABLE_CODES[v6].get(icmp[1], f"destination unreachable, code {icmp[1]}")
            raise Unreachable(f"{why} (from {sender[0]})")


def _unreachable_for(icmp: bytes, v6: bool, ident: int, seq: int) -> bool:
    """Whether `icmp` is a destination unreachable quoting our echo request: its payload holds
    the request's IP header and at least its first 8 bytes (RFC 792, RFC 4443)."""
    if len(icmp) < 8 or icmp[0] != UNREACHABLE_TYPE[v6]:
        return False
    quoted = icmp[8:]
    start = 40 if v6 else (quoted[0] & 0x0F) * 4 if quoted else 0
    echo = quoted[start : start + 8]
    return (
        len(echo) == 8 and echo[0] == INNER_ECHO[v6] and echo[4:8] == struct.pack("!HH", ident, seq)
    )


def _hop_limit(ancillary: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT:
            return int(struct.unpack("i", data[:4])[0])
    return -1


# --- tcp ---------------------------------------------------------------------------------


def tcp(host: str, port: int, deadline: float) -> tuple[bool, str]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        left = _left(deadline)
        if not left:
            return False, "timed out"
        sock.settimeout(min(CONNECT_ATTEMPT, left))
        try:
            sock.connect((host, port))
        except OSError as exc:
            return False, _failed(exc)
        greeting = _greeting(sock, deadline)
    return True, f"connected; {greeting}" if greeting else "connected"


def _greeting(sock: socket.socket, deadline: float) -> str:
    """The server's first line, speaking first if it stays silent (as an ssh client does); ""
    when none comes before the deadline."""
    # A timeout of 0 makes the socket non-blocking: past the deadline, recv fails at once.
    with contextlib.suppress(OSError):
        sock.settimeout(min(GREETING_WAIT, _left(deadline)))
        try:
            data = sock.recv(256)
        except TimeoutError:
            sock.sendall(CLIENT_GREETING)
            sock.settimeout(_left(deadline))
            data = sock.recv(256)
        line = data.decode(errors="replace").splitlines()[0] if data else ""
        return f"greeting: {line}" if line else ""
    return ""
