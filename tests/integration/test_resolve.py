"""The resolver on real namespaces and processes: a "launcher" in a namespace the test made,
found each way KubeVirt's node would show it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from passtplan.providers import resolve
from passtplan.providers.resolve import NodePaths, Pod
from tests.integration.conftest import ip, unique_pod_ip

UID = "5f0e6b1c-9a2d-4e3f-8b7a-1c2d3e4f5a6b"
# Unique to the run: the pod-IP strategy finds whichever namespace holds it, and a sandbox lab left
# up holds the seed's 10.233.70.4.
POD_IP = unique_pod_ip()
LAUNCHER = """
import os, socket, sys
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
directory = os.open(os.path.dirname(sys.argv[1]), os.O_PATH)  # the path is too long to bind
server.bind(f"/proc/self/fd/{directory}/{os.path.basename(sys.argv[1])}")
server.listen(4)
print("ready", flush=True)
while True:
    client, _ = server.accept()
    client.close()
"""


@pytest.fixture
def pod_netns(foreign_netns: Callable[[str], str]) -> str:
    """A pod's namespace with a CNI-like eth0 holding the pod IP."""
    netns = foreign_netns("pod")
    node = foreign_netns("node")
    ip(
        "link",
        "add",
        "eth0",
        "netns",
        netns,
        "type",
        "veth",
        "peer",
        "name",
        "cali1",
        "netns",
        node,
    )
    ip("address", "add", f"{POD_IP}/32", "dev", "eth0", netns=netns)
    ip("link", "set", "eth0", "up", netns=netns)
    return netns


@pytest.fixture
def launcher(pod_netns: str, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """virt-launcher's stand-in: a process in the pod's namespace listening on launcher-sock."""
    sock = tmp_path / "kubelet/pods" / UID / resolve.LAUNCHER_SOCKET
    sock.parent.mkdir(parents=True)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", pod_netns, sys.executable, "-c", LAUNCHER, str(sock)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def same_namespace(path: Path, netns: str) -> bool:
    return os.stat(path).st_ino == os.stat(f"/run/netns/{netns}").st_ino


def paths(tmp_path: Path, **changes: object) -> NodePaths:
    base = {"kubelet": tmp_path / "kubelet", "netns_dirs": (Path("/run/netns"),), "crictl": None}
    base.update(changes)
    return NodePaths(**base)  # type: ignore[arg-type]


POD = Pod("default", "virt-launcher-vm1-abcde", UID, node="node1", ip=POD_IP)


def test_found_through_the_launcher_socket_first(
    launcher: subprocess.Popen[str], pod_netns: str, tmp_path: Path
) -> None:
    found = resolve.find_pod_netns(POD, paths(tmp_path))
    assert found.strategy == "launcher socket peer credentials"
    assert same_namespace(found.path, pod_netns)


@pytest.mark.parametrize(
    "line",
    [
        "0::/kubepods/besteffort/pod{uid}/0123abcd",
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{und}.slice/cri-0.scope",
        "12:memory:/kubepods/burstable/pod{uid}/0123\n1:name=systemd:/",
        "12:memory:/kubepods.slice/kubepods-pod{und}.slice/docker-0.scope\n1:name=systemd:/",
    ],
    ids=["v2-cgroupfs", "v2-systemd", "v1-cgroupfs", "v1-systemd"],
)
def test_found_through_a_cgroup_file(
    launcher: subprocess.Popen[str], pod_netns: str, tmp_path: Path, line: str
) -> None:
    proc = tmp_path / "proc"
    for pid, text in (
        (1, "0::/init.scope"),
        (launcher.pid, line.format(uid=UID, und=UID.replace("-", "_"))),
    ):
        (proc / str(pid) / "ns").mkdir(parents=True)
        (proc / str(pid) / "cgroup").write_text(text + "\n")
        (proc / str(pid) / "ns" / "net").symlink_to(f"/proc/{pid}/ns/net")
    node = paths(tmp_path, proc=proc, kubelet=tmp_path / "no-kubelet", netns_dirs=())
    found = resolve.find_pod_netns(POD, node)
    assert found.strategy == "cgroup of a pod process"
    assert same_namespace(found.path, pod_netns)


def test_found_through_crictl(
    launcher: subprocess.Popen[str], pod_netns: str, tmp_path: Path
) -> None:
    # crictl's stand-in answers as crictl does, from the pod sandbox the test made.
    crictl = tmp_path / "crictl"
    crictl.write_text(
        "#!/bin/sh\n"
        f'case "$1" in pods) echo \'{{"items": [{{"id": "sandbox1"}}]}}\' ;;\n'
        f'inspectp) echo \'{{"info": {{"pid": {launcher.pid}}}}}\' ;; esac\n'
    )
    crictl.chmod(0o755)
    node = paths(
        tmp_path, kubelet=tmp_path / "no-kubelet", proc=tmp_path / "no-proc", crictl=str(crictl)
    )
    node = NodePaths(proc=Path("/proc"), kubelet=node.kubelet, netns_dirs=(), crictl=node.crictl)
    found = resolve.by_crictl(POD, node)
    assert found is not None
    assert same_namespace(found, pod_netns)


def test_the_ip_strategy_fails_once_eth0_is_gone_and_the_others_still_succeed(
    launcher: subprocess.Popen[str], pod_netns: str, tmp_path: Path
) -> None:
    node = paths(tmp_path)
    by_ip = resolve.by_ip(POD, node)
    assert by_ip is not None
    assert same_namespace(by_ip, pod_netns)
    ip("link", "delete", "eth0", netns=pod_netns)  # what the lab does
    assert resolve.by_ip(POD, node) is None
    assert resolve.find_pod_netns(POD, node).strategy == "launcher socket peer credentials"
    found = resolve.by_cgroup(POD, paths(tmp_path, proc=_proc_of(launcher.pid, tmp_path)))
    assert found is not None
    assert same_namespace(found, pod_netns)


def _proc_of(pid: int, tmp_path: Path) -> Path:
    proc = tmp_path / "proc2"
    (proc / str(pid) / "ns").mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(f"0::/kubepods/besteffort/pod{UID}/abc\n")
    (proc / str(pid) / "ns" / "net").symlink_to(f"/proc/{pid}/ns/net")
    return proc


def test_found_by_pid_and_attached_under_a_stable_name(
    launcher: subprocess.Popen[str], pod_netns: str, prefix: str
) -> None:
    found = Path(f"/proc/{launcher.pid}/ns/net")
    name = f"{prefix}-attached"
    attached = resolve.attach(name, found)
    assert same_namespace(attached, pod_netns)
    assert resolve.attach(name, found) == attached  # again: the same name, nothing new
    assert name in ip("netns", "list")


def test_nothing_found_is_one_clear_error(tmp_path: Path) -> None:
    ghost = Pod(
        "default", "virt-launcher-ghost", "00000000-0000-0000-0000-000000000000", ip="192.0.2.99"
    )
    with pytest.raises(
        resolve.ResolveError,
        match="cannot find the network namespace of pod default/virt-launcher-ghost",
    ):
        resolve.find_pod_netns(ghost, paths(tmp_path))
