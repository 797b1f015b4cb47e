"""What runs behind passt's socket for a sandbox VM, through one protocol: QEMU with a Debian
kernel (the default, what KubeVirt runs) or the Python stand-in (`sandbox: {guest: stand-in}`,
for large labs and fast tests). The launcher (launcher.py) plays virt-launcher around either."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import msgspec

from passtplan import resources as res
from passtplan.lang.manifest import VmManifest
from passtplan.providers.sandbox.process import Process

if TYPE_CHECKING:
    from passtplan.providers.sandbox.exec import GuestShell


class Started(msgspec.Struct, frozen=True):
    process: Process
    lease: str  # the address the guest took from passt's DHCP, CIDR
    note: str  # what apply says of it


class Guest(Protocol):
    what: str  # what it is called in apply's notes
    survives_passt: bool  # reconnects to a restarted passt, or goes with it (QEMU 7.2 does)

    def namespaces(self, vm: res.Vm) -> tuple[str, ...]:
        """The network namespaces the guest needs besides the pod's, made before start."""
        ...

    def start(
        self, vm: res.Vm, manifest: VmManifest, directory: Path, socket_path: Path
    ) -> Started:
        """Start it on passt's socket and return once it has its lease."""
        ...

    def observe(self, directory: Path, process: Process | None) -> str:
        """ "running", or what it is instead."""
        ...

    def stop(self, directory: Path, process: Process | None) -> None:
        """Stop it and remove what its run left in `directory` (sockets, image copies)."""
        ...

    def checks_from(self, vm: res.Vm, directory: Path) -> Path | GuestShell | str:
        """Where a check `from: vm/NAME` runs: a namespace to enter, a shell in the guest, or
        why it cannot run now."""
        ...
