"""The stand-in guest: a Python process (standin_guest.py) in a namespace of its own that does
for passt what a VM's virtio-net and DHCP client do, and greets on the VM's TCP ports. Starts
in a fraction of a second and some 20 MB: for large labs and fast tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from passtplan import resources as res
from passtplan.lang.manifest import VmManifest
from passtplan.providers import kernel
from passtplan.providers.sandbox.guests import Started
from passtplan.providers.sandbox.process import Process, VmError, spawn, stop, wait_for

if TYPE_CHECKING:
    from passtplan.providers.sandbox.exec import GuestShell

START_DEADLINE = 30.0


class StandInGuest:
    what = "the stand-in guest"
    survives_passt = True  # it reconnects to a restarted passt and keeps its lease

    def namespaces(self, vm: res.Vm) -> tuple[str, ...]:
        return (netns(vm),)

    def start(
        self, vm: res.Vm, manifest: VmManifest, directory: Path, socket_path: Path
    ) -> Started:
        lease = directory / "lease.json"
        lease.unlink(missing_ok=True)
        ports = [p for p in vm.tcp_ports.split(",") if p.isdigit()] or ["22"]
        command = [
            sys.executable,
            "-m",
            "passtplan.providers.sandbox.standin_guest",
            "--netns",
            str(kernel.netns_path(netns(vm))),
            "--socket",
            str(socket_path),
            "--lease",
            str(lease),
            "--name",
            vm.name,
            "--timeout",
            str(START_DEADLINE),
        ]
        for port in ports:
            command += ["--port", port]
        log = directory / "guest.log"
        process = spawn(command, log)
        wait_for(lease.exists, process, "the guest's DHCP lease", log, START_DEADLINE)
        taken = json.loads(lease.read_text())
        address = f"{taken['address']}/{taken['prefixlen']}"
        return Started(process, address, f"guest took {address} from its DHCP")

    def observe(self, directory: Path, process: Process | None) -> str:
        return "running" if process is not None and process.running() else "not running"

    def stop(self, directory: Path, process: Process | None) -> None:
        stop(process)

    def checks_from(self, vm: res.Vm, directory: Path) -> Path | GuestShell | str:
        path = kernel.netns_path(netns(vm))
        return path if path.exists() else f"the guest of {vm.name} is not running"


def netns(vm: res.Vm) -> str:
    """The stand-in's own namespace (desired names it for a stand-in guest only)."""
    if vm.guest is None:
        raise VmError(f"vms.{vm.name}: a stand-in guest without a namespace")
    return vm.guest
