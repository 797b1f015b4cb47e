"""Find a pod's network namespace on this node without guesswork, most robust way first.

1. KubeVirt's own way: virt-launcher listens on
   /var/lib/kubelet/pods/<podUID>/volumes/kubernetes.io~empty-dir/sockets/launcher-sock
   (virt-handler connects there); the socket's peer credentials (SO_PEERCRED) name the launcher's
   pid, and /proc/<pid>/ns/net is the pod's namespace.
2. A process whose /proc/<pid>/cgroup names the pod: `pod<UID>` with the cgroupfs driver,
   `pod<UID with _ for ->` with the systemd driver, in cgroup v1 (one line per controller) or
   v2 (`0::/path`) form.
3. crictl, where installed: `crictl pods -o json -l io.kubernetes.pod.uid=<UID>`, then
   `crictl inspectp <id>` gives `info.pid`.
4. Last, the namespace holding the pod's IP: useless once the CNI's eth0 is gone, which is what a
   lab does, hence last.

What each assumes, checked before it is tried: the peer credentials name a pid in the reader's
PID namespace (the kernel reports 0 for a process it cannot see), and the cgroup walk reads the
node's processes in /proc; both hold only when passtplan shares the host's PID namespace (a pod
needs hostPID: true). Where it does not, they are skipped with a note that the result carries
into apply's output, and the next strategy is tried.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

from passtplan.errors import PasstplanError
from passtplan.providers import kernel, rtnl

LAUNCHER_SOCKET = "volumes/kubernetes.io~empty-dir/sockets/launcher-sock"
INIT_PID_NS_INODE = 0xEFFFFFFC  # PROC_PID_INIT_INO (include/linux/proc_ns.h): the host's
HOST_PID_ONLY = ("launcher socket peer credentials", "cgroup of a pod process")
CRICTL_TIMEOUT = 10


class ResolveError(PasstplanError):
    pass


class Pod(msgspec.Struct, frozen=True):
    """What the cluster says of a pod: enough to find it on the node."""

    namespace: str
    name: str
    uid: str
    node: str | None = None
    ip: str | None = None


class NodePaths(msgspec.Struct, frozen=True):
    """Where the node keeps things; tests point these at fixture trees."""

    proc: Path = Path("/proc")
    kubelet: Path = Path("/var/lib/kubelet")
    netns_dirs: tuple[Path, ...] = (Path("/var/run/netns"), Path("/var/run/docker/netns"))
    crictl: str | None = msgspec.field(default_factory=lambda: shutil.which("crictl"))
    host_pid: bool | None = None  # whether passtplan shares the host's PID namespace; None: look


def shares_host_pid_namespace() -> bool:
    """Whether this process is in the host's (the initial) PID namespace."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino == INIT_PID_NS_INODE
    except OSError:
        return False


class Found(msgspec.Struct, frozen=True):
    path: Path  # a file that opens the namespace
    strategy: str  # how it was found, for the plan and the logs


def by_launcher_socket(pod: Pod, paths: NodePaths) -> Path | None:
    sock_path = paths.kubelet / "pods" / pod.uid / LAUNCHER_SOCKET
    if not sock_path.exists():
        return None
    # The kubelet's path is longer than a UNIX socket address may be (108 bytes): connect through
    # the directory's file descriptor instead, a path of a few bytes.
    directory = os.open(sock_path.parent, os.O_PATH | os.O_CLOEXEC)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            try:
                sock.connect(f"/proc/self/fd/{directory}/{sock_path.name}")
            except OSError:
                return None
            credentials = sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
            )
    finally:
        os.close(directory)
    pid, _, _ = struct.unpack("3i", credentials)
    return _net_of(paths, pid) if pid > 0 else None  # 0: a process this namespace cannot see


def cgroup_names_pod(cgroup: str, uid: str) -> bool:
    """Whether a /proc/<pid>/cgroup text puts the process in the pod with this UID."""
    forms = {uid, uid.replace("-", "_")}
    pattern = re.compile(r"pod(" + "|".join(map(re.escape, forms)) + r")(?:[/.]|\.slice|$)")
    return any(pattern.search(line.split(":", 2)[-1]) for line in cgroup.splitlines())


def by_cgroup(pod: Pod, paths: NodePaths) -> Path | None:
    for pid in _pids(paths):
        try:
            cgroup = (paths.proc / str(pid) / "cgroup").read_text()
        except OSError:
            continue
        if cgroup_names_pod(cgroup, pod.uid):
            return _net_of(paths, pid)
    return None


def by_crictl(pod: Pod, paths: NodePaths) -> Path | None:
    if paths.crictl is None:
        return None
    listed = _crictl(paths.crictl, "pods", "-o", "json", "-l", f"io.kubernetes.pod.uid={pod.uid}")
    items = (listed or {}).get("items")
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        return None
    inspected = _crictl(paths.crictl, "inspectp", str(items[0].get("id")))
    info = (inspected or {}).get("info")
    pid = info.get("pid") if isinstance(info, dict) else None
    return _net_of(paths, pid) if isinstance(pid, int) else None


def _crictl(binary: str, *args: str) -> dict[str, object] | None:
    try:
        proc = subprocess.run(
            [binary, *args], capture_output=True, text=True, timeout=CRICTL_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def by_ip(pod: Pod, paths: NodePaths) -> Path | None:
    if not pod.ip:
        return None
    for path in _namespaces(paths):
        try:
            fd = kernel.open_netns(path)
        except OSError:
            continue
        try:
            sock = kernel.netlink_socket(fd)
        finally:
            os.close(fd)
        with sock:
            messages = rtnl.dump(sock, rtnl.RTM_GETADDR)
        for message in messages:
            address = rtnl.decode_address(message)
            if address is not None and address.cidr.split("/")[0] == pod.ip:
                return path
    return None


STRATEGIES: tuple[tuple[str, Callable[[Pod, NodePaths], Path | None]], ...] = (
    ("launcher socket peer credentials", by_launcher_socket),
    ("cgroup of a pod process", by_cgroup),
    ("crictl", by_crictl),
    ("pod IP", by_ip),
)


def find_pod_netns(pod: Pod, paths: NodePaths | None = None) -> Found:
    paths = paths or NodePaths()
    host_pid = paths.host_pid if paths.host_pid is not None else shares_host_pid_namespace()
    skipped = []
    for strategy, find in STRATEGIES:
        if strategy in HOST_PID_ONLY and not host_pid:
            skipped.append(strategy)
            continue
        path = find(pod, paths)
        if path is not None:
            note = (
                f" ({' and '.join(skipped)} skipped: passtplan does not share the host's PID "
                "namespace; run it with hostPID: true)"
                if skipped
                else ""
            )
            return Found(path, strategy + note)
    why = "no launcher socket, no process in its cgroup, no crictl answer, and its IP is on no "
    why += "namespace"
    if skipped:
        why = (
            f"passtplan does not share the host's PID namespace, so {' and '.join(skipped)} "
            "cannot work (run it with hostPID: true), no crictl answer, and its IP is on no "
            "namespace"
        )
    raise ResolveError(
        f"cannot find the network namespace of pod {pod.namespace}/{pod.name} (uid {pod.uid}) "
        f"on this node: {why}"
    )


def attach(name: str, found: Path) -> Path:
    """Give the namespace a stable name, as `ip netns attach` does: later plans, `show` and a
    person with `ip netns exec` find it by name, also after the CNI's eth0 is gone."""
    target = kernel.netns_path(name)
    if target.exists():
        if os.stat(target).st_ino == os.stat(found).st_ino:
            return target
        kernel.remove(name)  # a stale name from an earlier pod of the same VM
    kernel.attach(name, found)
    return target


def _net_of(paths: NodePaths, pid: int) -> Path | None:
    path = paths.proc / str(pid) / "ns" / "net"
    return path if path.exists() else None


def _pids(paths: NodePaths) -> Iterator[int]:
    try:
        entries = sorted(int(p.name) for p in paths.proc.iterdir() if p.name.isdigit())
    except OSError:
        return
    yield from entries


def _namespaces(paths: NodePaths) -> Iterator[Path]:
    """Every distinct network namespace of the node: named ones, then those of processes."""
    seen: set[tuple[int, int]] = set()
    candidates: list[Path] = []
    for directory in paths.netns_dirs:
        if directory.is_dir():
            candidates += sorted(directory.iterdir())
    candidates += [paths.proc / str(pid) / "ns" / "net" for pid in _pids(paths)]
    for path in candidates:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        key = (stat.st_dev, stat.st_ino)
        if key not in seen:
            seen.add(key)
            yield path
