"""The sandbox's VM driver: it plays virt-launcher for each VM of a lab.

For a VM it makes the launcher pod's network namespace with a CNI-like eth0 (Calico style: the
pod address as /32, default route via 169.254.1.1 on the link, the host end with proxy ARP in the
node's namespace), starts the real passt inside it the way the lab's KubeVirt release does
(`passt_command`, `sandbox: {kubevirt: vX.Y}`), and attaches a guest (`passtplan.guest`) to
passt's socket in a namespace of its own. Processes outlive the command that starts them; what
they are is recorded in /run/passtplan/LAB@sandbox/vm/NAME/ (state.json, passt.log, guest.log,
lease.json).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from passtplan import resources as res
from passtplan.errors import PasstplanError
from passtplan.providers import kernel, rtnl
from passtplan.providers.ownership import OwnershipStore

NOBODY = 65534  # passt drops to nobody when started as root; its socket directory must be its
QEMU_UID = 107  # virt-launcher v1.0 runs passt --runas 107, the qemu user of the launcher image
PASST = "passt"
START_DEADLINE = 30.0
STOP_DEADLINE = 10.0
CALICO_HOST_PREFIX = "cali"
DRIVER_MARK = res.DRIVER_PREFIX  # alias of the driver's own links: never the lab's to diff
PING_GROUP_RANGE = "0 2147483647"  # passt answers the guest's pings with ICMP echo sockets


class VmError(PasstplanError):
    pass


def vm_dir(store: OwnershipStore, name: str) -> Path:
    return store.path.parent / "vm" / name


@dataclass(frozen=True)
class Process:
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


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1].split()
    except OSError:
        return None
    return fields[0], int(fields[19])


def observe(names: set[str], store: OwnershipStore) -> dict[str, res.Vm | None]:
    """What runs for each VM: None where its launcher namespace is gone (or never was)."""
    found: dict[str, res.Vm | None] = {}
    for name in sorted(names):
        state = vm_dir(store, name) / "state.json"
        try:
            record = json.loads(state.read_text())
        except (OSError, ValueError):
            found[name] = None
            continue
        vm = res.Vm(**record["vm"])
        if not kernel.exists(vm.launcher):
            found[name] = None
            continue
        passt = "running" if _running(record, "passt") else "not running"
        guest = "running" if _running(record, "guest") else "not running"
        found[name] = dataclasses.replace(vm, passt=passt, guest_state=guest)
    return found


class LocalVmDriver:
    def __init__(self, store: OwnershipStore) -> None:
        self.store = store

    # --- create ---------------------------------------------------------------------------

    def create(self, vm: res.Vm, node_netns: str | None) -> str:
        directory = vm_dir(self.store, vm.name)
        directory.mkdir(parents=True, exist_ok=True)
        sockets = directory / "passt"
        sockets.mkdir(mode=0o700, exist_ok=True)
        os.chown(sockets, NOBODY, NOBODY)
        ours = vm.name in self.store.owned.vms
        for netns in (vm.launcher, vm.guest):
            if kernel.exists(netns) and not ours:
                raise VmError(
                    f"netns {netns} already exists and this lab did not make it: remove it "
                    f"(ip netns delete {netns}) or rename the lab"
                )
        self.store.claim("vms", vm.name)  # before anything of it exists: a kill leaves it known
        if ours:
            self._clear(vm)  # what a start cut short left: processes, namespaces, empty files
            _remove_host_end(vm, node_netns)
        for netns in (vm.launcher, vm.guest):
            kernel.create(netns)
        self._pod_network(vm, node_netns)
        record: dict[str, object] = {"vm": dataclasses.asdict(vm)}
        self._write(vm, record)
        record["passt"] = self._start_passt(vm)
        self._write(vm, record)
        record["guest"] = self._start_guest(vm)
        self._write(vm, record)
        lease = json.loads((directory / "lease.json").read_text())
        return f"passt running, guest took {lease['address']}/{lease['prefixlen']} from its DHCP"

    def _write(self, vm: res.Vm, record: dict[str, object]) -> None:
        path = vm_dir(self.store, vm.name) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(path)

    def _pod_network(self, vm: res.Vm, node_netns: str | None) -> None:
        """The CNI's part: eth0 in the pod, Calico style, its host end in the node if any."""
        launcher_fd = kernel.open_netns(kernel.netns_path(vm.launcher))
        node_fd = kernel.open_netns(kernel.netns_path(node_netns)) if node_netns else None
        host_end = f"{CALICO_HOST_PREFIX}{vm.name}"[:15]
        address, prefixlen = vm.pod_address.split("/")
        from pyroute2 import IPRoute

        try:
            sock = kernel.netlink_socket(launcher_fd)
            with IPRoute(use_socket=sock, groups=0) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                peer: dict[str, object] = {"ifname": host_end}
                if node_fd is not None:
                    peer["net_ns_fd"] = node_fd
                ipr.link("add", ifname="eth0", kind="veth", peer=peer)
                (eth0,) = ipr.link_lookup(ifname="eth0")
                ipr.link("set", index=eth0, state="up", ifalias=f"{DRIVER_MARK}{vm.name}")
                ipr.addr("add", index=eth0, address=address, prefixlen=int(prefixlen))
                ipr.route("add", dst=f"{vm.gateway}/32", oif=eth0, scope=253)
                ipr.route("add", dst="0.0.0.0/0", gateway=vm.gateway, oif=eth0)
            kernel.run_inside(launcher_fd, _allow_ping_sockets)
            if node_fd is not None:
                node_sock = kernel.netlink_socket(node_fd)
                with IPRoute(use_socket=node_sock, groups=0) as ipr:
                    (end,) = ipr.link_lookup(ifname=host_end)
                    ipr.link("set", index=end, state="up", ifalias=f"{DRIVER_MARK}{vm.name}")
                    ipr.route("add", dst=f"{address}/32", oif=end, scope=253)
                kernel.run_inside(node_fd, lambda: _proxy_arp(host_end))
        finally:
            os.close(launcher_fd)
            if node_fd is not None:
                os.close(node_fd)

    def _start_passt(self, vm: res.Vm) -> list[int]:
        """As the lab's release starts it: in the pod's namespace, the VM's ports (see
        passt_command). passt goes to the background, as in the pod, and writes its pid."""
        directory = vm_dir(self.store, vm.name)
        socket_path = directory / "passt" / "passt.socket"
        pid_file = directory / "passt" / "passt.pid"
        socket_path.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)
        os.chown(socket_path.parent, *(2 * (passt_user(vm.kubevirt),)))
        command = passt_command(vm, socket_path, pid_file, directory / "kubevirt-passt.log")
        launcher = self._spawn(
            [
                sys.executable,
                "-m",
                "passtplan.providers.enter",
                str(kernel.netns_path(vm.launcher)),
                "--nofile",
                "--",
                *command,
            ],
            directory / "passt.log",
        )
        self._wait_daemon(launcher, socket_path, pid_file, directory / "passt.log")
        return list(dataclasses.astuple(Process.of(int(pid_file.read_text().split()[0]))))

    @staticmethod
    def _wait_daemon(launcher: int, socket_path: Path, pid_file: Path, log: Path) -> None:
        """Until passt has its socket and has written its pid; the process we started exits 0
        when passt goes to the background, anything else is a failure."""
        deadline = time.monotonic() + START_DEADLINE
        exited: int | None = None
        while time.monotonic() < deadline:
            if exited is None:
                try:
                    finished, code = os.waitpid(launcher, os.WNOHANG)
                except ChildProcessError:
                    finished, code = launcher, 0
                if finished:
                    exited = os.waitstatus_to_exitcode(code)
            if exited not in (None, 0):
                tail = " | ".join(_useful_lines(log)[-3:])
                raise VmError(f"waiting for passt to bind {socket_path}: it exited ({tail})")
            if socket_path.exists() and pid_file.is_file() and pid_file.read_text().strip():
                return
            time.sleep(0.05)  # polling a process we started, bounded by the deadline
        raise VmError(
            f"waiting for passt to bind {socket_path}: nothing after {START_DEADLINE:.0f} s"
        )

    def _start_guest(self, vm: res.Vm) -> list[int]:
        directory = vm_dir(self.store, vm.name)
        lease = directory / "lease.json"
        lease.unlink(missing_ok=True)
        ports = [p for p in vm.tcp_ports.split(",") if p.isdigit()] or ["22"]
        command = [
            sys.executable,
            "-m",
            "passtplan.guest",
            "--netns",
            str(kernel.netns_path(vm.guest)),
            "--socket",
            str(directory / "passt" / "passt.socket"),
            "--lease",
            str(lease),
            "--name",
            vm.name,
            "--timeout",
            str(START_DEADLINE),
        ]
        for port in ports:
            command += ["--port", port]
        pid = self._spawn(command, directory / "guest.log")
        self._wait(lease.exists, pid, "the guest's DHCP lease", directory / "guest.log")
        return list(dataclasses.astuple(Process.of(pid)))

    @staticmethod
    def _spawn(command: list[str], log: Path) -> int:
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this command, as a VM outlives kubectl
                close_fds=True,
            )
        return process.pid

    @staticmethod
    def _wait(ready: Callable[[], bool], pid: int, what: str, log: Path) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if ready():
                return
            try:
                finished, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                finished = pid
            if finished:
                tail = " | ".join(_useful_lines(log)[-3:])
                raise VmError(f"waiting for {what}: the process exited ({tail})")
            time.sleep(0.05)  # polling a process we started, bounded by the deadline
        raise VmError(f"waiting for {what}: nothing after {START_DEADLINE:.0f} s")

    # --- repair ---------------------------------------------------------------------------

    def repair(self, vm: res.Vm, current: res.Vm) -> str:
        """Restart what died; passt first, so a surviving guest reconnects to it."""
        record = json.loads((vm_dir(self.store, vm.name) / "state.json").read_text())
        done = []
        # Whatever still runs there unrecorded (a start cut short) goes first; the guest before
        # passt, which exits when its one client leaves.
        if current.guest_state != "running":
            _stop(Process.load(record, "guest"))
            _stop_all_in(kernel.netns_path(vm.guest))
        if current.passt != "running":
            _stop_all_in(kernel.netns_path(vm.launcher))
            record["passt"] = self._start_passt(vm)
            self._write(vm, record)
            done.append("restarted passt")
        if current.guest_state != "running":
            record["guest"] = self._start_guest(vm)
            self._write(vm, record)
            done.append("restarted the guest")
        return ", ".join(done) or "nothing to repair"

    # --- delete ---------------------------------------------------------------------------

    def delete(self, vm: res.Vm) -> str:
        self._clear(vm)
        shutil.rmtree(vm_dir(self.store, vm.name), ignore_errors=True)
        self.store.release("vms", vm.name)
        return "stopped passt and the guest, removed the pod's and the guest's namespaces"

    def _clear(self, vm: res.Vm) -> None:
        """Stop the VM's processes and remove its namespaces, whatever state they are in."""
        try:
            record = json.loads((vm_dir(self.store, vm.name) / "state.json").read_text())
        except (OSError, ValueError):
            record = {}
        _stop(Process.load(record, "guest"))
        _stop(Process.load(record, "passt"))
        for netns in (vm.guest, vm.launcher):
            _stop_all_in(kernel.netns_path(netns))  # started, but not yet recorded
            kernel.remove(netns)


def release(kubevirt: str) -> tuple[int, int]:
    major, minor = kubevirt.lstrip("v").split(".")[:2]
    return int(major), int(minor)


def passt_user(kubevirt: str) -> int:
    """Who passt runs as once it has dropped root: 107 by --runas in v1.0, else nobody."""
    return QEMU_UID if release(kubevirt) < (1, 1) else NOBODY


def passt_command(vm: res.Vm, socket_path: Path, pid_file: Path, log_file: Path) -> list[str]:
    """passt's command line as the lab's KubeVirt release has it.

    v1.0: virt-launcher runs `passt --runas 107 -e` then `-t PORTS` and `-u PORTS` only for the
    protocols the interface names, all ports when it names none (PasstLibvirtSpecGenerator,
    pkg/network/domainspec/generators.go @v1.0.0); QEMU reaches it through qrap, which connects
    to passt's default socket in the pod's own /tmp (converter/network.go @v1.0.0). The sandbox's
    /tmp is shared, so it names the socket (-s), and asks for the pid (-P) to know the daemon.

    From v1.1: libvirt starts it (qemuPasstStart, libvirt src/qemu/qemu_passt.c) with
    `--one-off --socket --pid`, `--interface eth0` (the domain interface's source device) and
    `--log-file /var/run/kubevirt/passt.log` (cmd/sidecars/network-passt-binding/domain/
    configurator.go @v1.1.1, converter/network/configurator.go @v1.8.0), then one
    `--tcp-ports`/`--udp-ports` per portForward KubeVirt writes: both protocols for all ports when
    the interface names none, else only the protocols it names. From v1.8 libvirt runs passt in
    vhost-user mode (interface type vhostuser, @v1.8.0); the sandbox's guest speaks QEMU's stream
    framing, so there the command stays v1.1's.
    """
    tcp = None if vm.tcp_ports == "none" else vm.tcp_ports
    udp = None if vm.udp_ports == "none" else vm.udp_ports
    if release(vm.kubevirt) < (1, 1):
        command = [PASST, "--runas", str(QEMU_UID), "-e"]
        command += ["-t", tcp] if tcp else []
        command += ["-u", udp] if udp else []
        return [*command, "-s", str(socket_path), "-P", str(pid_file)]
    command = [PASST, "--one-off", "--socket", str(socket_path), "--pid", str(pid_file)]
    command += ["--interface", "eth0", "--log-file", str(log_file)]
    command += ["--tcp-ports", tcp] if tcp else []
    command += ["--udp-ports", udp] if udp else []
    return command


def _running(record: dict[str, object], key: str) -> bool:
    process = Process.load(record, key)
    return process is not None and process.running()


def _living_in(path: Path) -> list[int]:
    """The processes whose network namespace is the one at `path`."""
    if not kernel.is_namespace(path):
        return []
    inode = path.stat().st_ino
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if (entry / "ns" / "net").stat().st_ino == inode:
                    found.append(int(entry.name))
    return found


def _stop_all_in(path: Path) -> None:
    for pid in _living_in(path):
        with contextlib.suppress(OSError):
            _stop(Process.of(pid))


def _remove_host_end(vm: res.Vm, node_netns: str | None) -> None:
    """The CNI's host end left in the node by a start cut short (it outlives the pod's
    namespace while anything still holds that)."""
    if node_netns is None:
        return
    fd = kernel.open_netns(kernel.netns_path(node_netns))
    try:
        with kernel.netlink_socket(fd) as sock:
            index = rtnl.link_index(sock, f"{CALICO_HOST_PREFIX}{vm.name}"[:15])
            if index is not None:
                rtnl.transact(sock, [rtnl.link_delete_request(index)])
    finally:
        os.close(fd)


def _stop(process: Process | None) -> None:
    """End a process we started, in this run or an earlier one, and return once it is gone for
    good: passt takes a moment to close its thousands of port sockets, our own child we reap,
    an orphan init reaps."""
    if process is None or process.state() is None:
        return
    if process.running():
        os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_DEADLINE
    killed = False
    while process.state() is not None and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(process.pid, os.WNOHANG)
        if not killed and time.monotonic() > deadline - STOP_DEADLINE / 2 and process.running():
            os.kill(process.pid, signal.SIGKILL)
            killed = True
        time.sleep(0.02)  # polling for the process to end, bounded by the deadline


def _allow_ping_sockets() -> None:
    Path("/proc/sys/net/ipv4/ping_group_range").write_text(PING_GROUP_RANGE + "\n")


def _proxy_arp(link: str) -> None:
    Path(f"/proc/sys/net/ipv4/conf/{link}/proxy_arp").write_text("1\n")


def _useful_lines(log: Path) -> list[str]:
    """A log's lines without passt's complaints that there is no syslog in a namespace."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip() and "to syslog" not in line]
