"""The sandbox's VM driver: it plays virt-launcher for each VM of a lab.

For a VM it makes the launcher pod's network namespace with a CNI-like eth0 (Calico style: the
pod address as /32, default route via 169.254.1.1 on the link, the host end with proxy ARP in the
node's namespace), starts the real passt inside it the way the lab's KubeVirt release does
(`passt_command`, `sandbox: {kubevirt: vX.Y}`), and attaches the VM's guest to passt's socket:
QEMU or the stand-in (guests.py, `sandbox: {guest: ...}`). Processes outlive the command that
starts them; what they are is recorded in /run/passtplan/LAB@sandbox/vm/NAME/ (state.json,
passt.log, the guest's logs and sockets).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import msgspec

from passtplan import resources as res
from passtplan.desired import lab_id
from passtplan.lang.manifest import VmManifest
from passtplan.providers import kernel, rtnl
from passtplan.providers.ownership import RUN_DIR, OwnershipStore
from passtplan.providers.sandbox.guests import Guest
from passtplan.providers.sandbox.process import (
    Process,
    VmError,
    in_netns,
    spawn,
    stop,
    stop_all_in,
    useful_lines,
)
from passtplan.providers.sandbox.qemu import QemuGuest
from passtplan.providers.sandbox.standin import StandInGuest

NOBODY = 65534  # passt drops to nobody when started as root; its socket directory must be its
QEMU_UID = 107  # virt-launcher v1.0 runs passt --runas 107, the qemu user of the launcher image
PASST = "passt"
START_DEADLINE = 30.0
CALICO_HOST_PREFIX = "cali"
DRIVER_MARK = res.DRIVER_PREFIX  # alias of the driver's own links: never the lab's to diff
PING_GROUP_RANGE = "0 2147483647"  # passt answers the guest's pings with ICMP echo sockets


def vm_dir(store: OwnershipStore, name: str) -> Path:
    return store.path.parent / "vm" / name


def lab_vm_dir(lab: str, name: str) -> Path:
    """A sandbox VM's directory, from the lab's name (as vm_dir finds it from the lab's record)."""
    return RUN_DIR / lab_id(lab, sandbox=True) / "vm" / name


def guest_for(vm: res.Vm) -> Guest:
    return StandInGuest() if vm.guest_kind == "stand-in" else QemuGuest()


def passt_socket(directory: Path) -> Path:
    return directory / "passt" / "passt.socket"


def observe(names: set[str], store: OwnershipStore) -> dict[str, res.Vm | None]:
    """What runs for each VM: None where its launcher namespace is gone (or never was)."""
    found: dict[str, res.Vm | None] = {}
    for name in sorted(names):
        directory = vm_dir(store, name)
        try:
            record = json.loads((directory / "state.json").read_text())
        except (OSError, ValueError):
            found[name] = None
            continue
        # A record from before the QEMU guest names no kind: the stand-in was the only one.
        vm = res.Vm(**{"guest_kind": "stand-in", **record["vm"]})
        if not kernel.exists(vm.launcher):
            found[name] = None
            continue
        passt = Process.load(record, "passt")
        running = passt is not None and passt.running()
        guest = guest_for(vm).observe(directory, Process.load(record, "guest"))
        found[name] = msgspec.structs.replace(
            vm, passt="running" if running else "not running", guest_state=guest
        )
    return found


class LocalVmDriver:
    def __init__(self, store: OwnershipStore, manifests: Mapping[str, VmManifest]) -> None:
        self.store = store
        self.manifests = manifests  # what a guest is made of (cloud-init user data)

    # --- create ---------------------------------------------------------------------------

    def create(self, vm: res.Vm, node_netns: str | None) -> str:
        directory = vm_dir(self.store, vm.name)
        directory.mkdir(parents=True, exist_ok=True)
        sockets = directory / "passt"
        sockets.mkdir(mode=0o700, exist_ok=True)
        os.chown(sockets, NOBODY, NOBODY)
        guest = guest_for(vm)
        namespaces = (vm.launcher, *guest.namespaces(vm))
        ours = vm.name in self.store.owned.vms
        for netns in namespaces:
            if kernel.exists(netns) and not ours:
                raise VmError(
                    f"netns {netns} already exists and this lab did not make it: remove it "
                    f"(ip netns delete {netns}) or rename the lab"
                )
        self.store.claim("vms", vm.name)  # before anything of it exists: a kill leaves it known
        if ours:
            self._clear(vm)  # what a start cut short left: processes, namespaces, empty files
            _remove_host_end(vm, node_netns)
        for netns in namespaces:
            kernel.create(netns)
        self._pod_network(vm, node_netns)
        record: dict[str, object] = {"vm": msgspec.structs.asdict(vm)}
        self._write(vm, record)
        record["passt"] = self._start_passt(vm)
        self._write(vm, record)
        started = guest.start(vm, self._manifest(vm), directory, passt_socket(directory))
        record["guest"] = list(msgspec.structs.astuple(started.process))
        record["lease"] = started.lease
        self._write(vm, record)
        return f"passt running, {started.note}"

    def _manifest(self, vm: res.Vm) -> VmManifest:
        manifest = self.manifests.get(vm.name)
        if manifest is None:
            raise VmError(
                f"vms.{vm.name}: its manifest is not loaded; plan and apply the lab again"
            )
        return manifest

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

    def _start_passt(self, vm: res.Vm, lease: str | None = None) -> list[int]:
        """As the lab's release starts it: in the pod's namespace, the VM's ports (see
        passt_command); with `lease`, pinned to the address the guest already holds (a guest
        that is restarted with passt asks for it again, and after the swap passt would offer
        the macvlan's). passt goes to the background, as in the pod, and writes its pid."""
        directory = vm_dir(self.store, vm.name)
        socket_path = passt_socket(directory)
        pid_file = directory / "passt" / "passt.pid"
        socket_path.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)
        os.chown(socket_path.parent, *(2 * (passt_user(vm.kubevirt),)))
        command = passt_command(vm, socket_path, pid_file, directory / "kubevirt-passt.log")
        if lease is not None:
            address, prefixlen = lease.split("/")
            command += ["-a", address, "-n", prefixlen, "-g", vm.gateway]
        log = directory / "passt.log"
        launcher = spawn(in_netns(vm.launcher, command, nofile=True), log)
        self._wait_daemon(launcher, socket_path, pid_file, log)
        return list(msgspec.structs.astuple(Process.of(int(pid_file.read_text().split()[0]))))

    @staticmethod
    def _wait_daemon(launcher: Process, socket_path: Path, pid_file: Path, log: Path) -> None:
        """Until passt has its socket and has written its pid; the process we started exits 0
        when passt goes to the background, anything else is a failure."""
        deadline = time.monotonic() + START_DEADLINE
        exited: int | None = None
        while time.monotonic() < deadline:
            if exited is None:
                try:
                    finished, code = os.waitpid(launcher.pid, os.WNOHANG)
                except ChildProcessError:
                    finished, code = launcher.pid, 0
                if finished:
                    exited = os.waitstatus_to_exitcode(code)
            if exited not in (None, 0):
                tail = " | ".join(useful_lines(log)[-3:])
                raise VmError(f"waiting for passt to bind {socket_path}: it exited ({tail})")
            if socket_path.exists() and pid_file.is_file() and pid_file.read_text().strip():
                return
            time.sleep(0.05)  # polling a process we started, bounded by the deadline
        raise VmError(
            f"waiting for passt to bind {socket_path}: nothing after {START_DEADLINE:.0f} s"
        )

    # --- repair ---------------------------------------------------------------------------

    def repair(self, vm: res.Vm, current: res.Vm) -> str:
        """Restart what died. A guest that survives passt reconnects to a new one, so only the
        dead part restarts (passt first); QEMU goes with passt, so both restart, passt pinned
        to the lease the guest holds."""
        directory = vm_dir(self.store, vm.name)
        record = json.loads((directory / "state.json").read_text())
        guest = guest_for(vm)
        guest_down = current.guest_state != "running"
        passt_down = current.passt != "running"
        if not guest.survives_passt and (guest_down or passt_down):
            guest_down = passt_down = True
        done = []
        # Whatever still runs there unrecorded (a start cut short) goes first; the guest before
        # passt, which exits when its one client leaves.
        if guest_down:
            guest.stop(directory, Process.load(record, "guest"))
            for netns in guest.namespaces(vm):
                stop_all_in(netns)
        if passt_down:
            stop(Process.load(record, "passt"))
            stop_all_in(vm.launcher)
            lease = None if guest.survives_passt else record.get("lease")
            record["passt"] = self._start_passt(vm, lease if isinstance(lease, str) else None)
            self._write(vm, record)
            done.append(f"restarted passt (pinned to {lease})" if lease else "restarted passt")
        if guest_down:
            started = guest.start(vm, self._manifest(vm), directory, passt_socket(directory))
            record["guest"] = list(msgspec.structs.astuple(started.process))
            record["lease"] = started.lease
            self._write(vm, record)
            done.append(f"restarted {guest.what} ({started.note})")
        return ", ".join(done) or "nothing to repair"

    # --- delete ---------------------------------------------------------------------------

    def delete(self, vm: res.Vm) -> str:
        self._clear(vm)
        shutil.rmtree(vm_dir(self.store, vm.name), ignore_errors=True)
        self.store.release("vms", vm.name)
        guest = guest_for(vm)
        if guest.namespaces(vm):
            return f"stopped passt and {guest.what}, removed the pod's and the guest's namespaces"
        return f"stopped passt and {guest.what}, removed the pod's namespace"

    def _clear(self, vm: res.Vm) -> None:
        """Stop the VM's processes and remove its namespaces, whatever state they are in."""
        directory = vm_dir(self.store, vm.name)
        try:
            record = json.loads((directory / "state.json").read_text())
        except (OSError, ValueError):
            record = {}
        guest = guest_for(vm)
        guest.stop(directory, Process.load(record, "guest"))
        stop(Process.load(record, "passt"))
        for netns in (*guest.namespaces(vm), vm.launcher):
            stop_all_in(netns)  # started, but not yet recorded
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


def _allow_ping_sockets() -> None:
    Path("/proc/sys/net/ipv4/ping_group_range").write_text(PING_GROUP_RANGE + "\n")


def _proxy_arp(link: str) -> None:
    Path(f"/proc/sys/net/ipv4/conf/{link}/proxy_arp").write_text("1\n")
