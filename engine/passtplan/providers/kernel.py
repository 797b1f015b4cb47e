"""Network namespaces by their kernel interfaces: unshare, mount, setns; and tap devices, which
the kernel makes only through /dev/net/tun.

pyroute2's own helpers fork a child for every namespace socket and every new namespace (~15 ms
each); a thread can instead switch its own network namespace with setns(2), do the work, and
switch back, which costs microseconds. setns and unshare of CLONE_NEWNET act on the calling
thread only, so this is safe beside other threads.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_BIND = 0x1000
MS_SHARED = 1 << 20
MNT_DETACH = 2
NETLINK_ROUTE = 0
TUN_DEVICE = "/dev/net/tun"
# _IOW('T', 202..204, int) on the architectures with the common ioctl layout (x86, arm, s390x)
TUNSETIFF, TUNSETPERSIST, TUNSETOWNER = 0x400454CA, 0x400454CB, 0x400454CC
IFF_TAP, IFF_NO_PI, IFF_TUN_EXCL = 0x2, 0x1000, 0x8000
IFREQ = struct.Struct("16sH")  # ifr_name, ifr_flags

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str, target: str = "") -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}", target)


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def exists(name: str) -> bool:
    return netns_path(name).exists()


def is_namespace(path: Path) -> bool:
    """Whether `path` holds a namespace (a bind mount of nsfs), not the empty file a creation
    cut short leaves behind: a mount point's device differs from its directory's."""
    try:
        return path.stat().st_dev != path.parent.stat().st_dev
    except FileNotFoundError:
        return False


def list_netns() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def _share_rundir() -> None:
    """Make /run/netns a shared mount, as `ip netns add` does, so later mounts propagate."""
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    target = bytes(NETNS_DIR)
    if _libc.mount(b"", target, b"none", MS_SHARED | MS_REC, None) == 0:
        return
    _check(_libc.mount(target, target, b"none", MS_BIND | MS_REC, None), "bind /run/netns")
    _check(_libc.mount(b"", target, b"none", MS_SHARED | MS_REC, None), "share /run/netns")


def create(name: str) -> None:
    """`ip netns add NAME`: a new namespace, kept alive by a bind mount at /run/netns/NAME."""
    _share_rundir()
    path = netns_path(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    try:
        with _home_kept():
            _check(_libc.unshare(CLONE_NEWNET), "unshare", name)
            source = b"/proc/thread-self/ns/net"
            _check(_libc.mount(source, bytes(path), b"none", MS_BIND, None), "mount", name)
    except OSError:
        path.unlink(missing_ok=True)
        raise


def attach(name: str, source: Path) -> None:
    """`ip netns attach NAME PID`: give an existing namespace (a file in /proc) a name."""
    _share_rundir()
    path = netns_path(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    try:
        _check(_libc.mount(bytes(source), bytes(path), b"none", MS_BIND, None), "mount", name)
    except OSError:
        path.unlink(missing_ok=True)
        raise


def remove(name: str) -> None:
    """`ip netns delete NAME`: the namespace dies once nothing else holds it."""
    path = netns_path(name)
    if _libc.umount2(bytes(path), MNT_DETACH) != 0 and ctypes.get_errno() not in (
        errno.EINVAL,
        errno.ENOENT,
    ):
        _check(-1, "umount", name)
    path.unlink(missing_ok=True)


def open_netns(path: Path) -> int:
    """A file descriptor for a namespace file; O_RDONLY only, so a mistyped name never creates."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def enter(path: Path) -> None:
    """Move the calling thread into the namespace at `path` for good: a process about to exec
    (sandbox.enter), or the stand-in guest before it starts any other thread."""
    fd = open_netns(path)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), "setns", str(path))
    finally:
        os.close(fd)


@contextmanager
def _home_kept() -> Iterator[None]:
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield
    finally:
        try:
            _check(_libc.setns(home, CLONE_NEWNET), "setns back")
        finally:
            os.close(home)


@contextmanager
def inside(fd: int | None) -> Iterator[None]:
    """Run the body with this thread in the namespace `fd` (None: stay where it is)."""
    if fd is None:
        yield
        return
    with _home_kept():
        _check(_libc.setns(fd, CLONE_NEWNET), "setns")
        yield


def run_inside(fd: int | None, work: Callable[[], T]) -> T:
    with inside(fd):
        return work()


def netlink_socket(fd: int | None) -> socket.socket:
    """An rtnetlink socket that lives in namespace `fd` for the rest of its life."""
    with inside(fd):
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)


def attach_tun(netns: int | None, name: str, flags: int) -> int:
    """An fd attached to tun/tap NAME in namespace `netns`, made if it does not exist: the device
    belongs to the namespace of the task that opened /dev/net/tun, so the open is made there."""
    fd = run_inside(netns, lambda: os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC))
    try:
        fcntl.ioctl(fd, TUNSETIFF, IFREQ.pack(name.encode(), flags))
    except OSError:
        os.close(fd)
        raise
    return fd


def make_tap(netns: int | None, name: str, owner: int | None) -> None:
    """`ip tuntap add NAME mode tap [user OWNER]`: a persistent tap without packet information,
    that lives on when the fd that made it is closed. Like `ip link add`, refuses a name taken
    (without IFF_TUN_EXCL the kernel would attach to a tap of that name)."""
    try:
        fd = attach_tun(netns, name, IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise FileExistsError(errno.EEXIST, f"{name}: a link by this name exists") from None
        raise
    try:
        if owner is not None:
            fcntl.ioctl(fd, TUNSETOWNER, owner)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)


def set_tun_owner(netns: int | None, name: str, flags: int, owner: int) -> None:
    """Give a persistent tun or tap another owner. Attaching sets the device's flags again:
    `flags` must be those it has (rtnl.tun_flags). The kernel refuses (EBUSY) while a process
    holds the device open, unless it is multi-queue."""
    fd = attach_tun(netns, name, flags)
    try:
        fcntl.ioctl(fd, TUNSETOWNER, owner)
    finally:
        os.close(fd)
