"""The QEMU guest: a Debian kernel with a busybox userland on passt's socket, as KubeVirt runs a
VM (`-netdev stream` to passt's UNIX socket, a virtio-net device with the guest's MAC).

The initramfs is the cached base image (image.py, built by scripts/setup) with the VM's own files
appended as a second archive (the overlay: guest.env, keys, users), a copy per VM in its
directory. QEMU runs in the pod's namespace, as in virt-launcher; its serial console is a socket
(`passtplan console`) logged to console.log, and a second serial port carries the exec channel
(exec.py). The guest's /init prints PASSTPLAN-GUEST-READY once it has its lease and sshd runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from passtplan import resources as res
from passtplan.changes import Action, Change
from passtplan.errors import PasstplanError
from passtplan.lang.manifest import VmManifest
from passtplan.providers.sandbox.exec import EXEC_LOCK, EXEC_SOCKET, GuestShell
from passtplan.providers.sandbox.guests import Started
from passtplan.providers.sandbox.process import Process, VmError, in_netns, spawn, stop, wait_for

if TYPE_CHECKING:
    from passtplan.providers.sandbox.cpio import CpioEntry

# Every plan of a sandbox lab asks its guests how they are (observe); only starting a guest
# needs the image, the overlay's cloud-init and crypt(3) and the accelerator probe (~30 ms of
# imports), so those are imported where a guest starts.

QEMU = "qemu-system-x86_64"
GUEST_MAC = "52:54:00:12:34:56"  # QEMU's default, the guest MAC in the seed lab
BOOT_DEADLINE = 120.0  # TCG on a busy 2-CPU machine; a boot to the lease takes 7-8 s when idle
NO_IMAGE = (
    "its guest image is not built: run bash scripts/setup (or set sandbox: {guest: stand-in} "
    "in the lab)"
)
READY = re.compile(r"PASSTPLAN-GUEST-READY (\S+) mtu (\d+)")
MIN_MEMORY_MIB = 128  # a busybox guest does not boot in 64 MiB
MEMORY_SHARE = 4  # at most a quarter of the machine's memory per VM
CONSOLE_SOCKET, CONSOLE_LOG, QEMU_LOG, INITRAMFS = (
    "console.sock",
    "console.log",
    "qemu.log",
    "initramfs.img",
)
KVM_FAILURE = "KVM internal error"  # what QEMU logs when a nested hypervisor cannot run a guest


class QemuGuest:
    what = "QEMU"
    survives_passt = False  # QEMU 7.2 neither notices nor retries a stream passt closed

    def namespaces(self, vm: res.Vm) -> tuple[str, ...]:
        return ()  # the guest's network is inside QEMU

    def start(
        self, vm: res.Vm, manifest: VmManifest, directory: Path, socket_path: Path
    ) -> Started:
        from passtplan.providers.sandbox.accel import pick_accelerator
        from passtplan.providers.sandbox.cpio import newc
        from passtplan.providers.sandbox.image import cached_image

        image = cached_image()
        if image is None:
            raise VmError(f"vms.{vm.name} runs QEMU and {NO_IMAGE}")
        self._remove_run_files(directory)
        initramfs = directory / INITRAMFS
        overlay = newc(guest_files(manifest, lab_state=directory.parents[1]))  # LAB@sandbox/vm/NAME
        initramfs.write_bytes(aligned(image.initramfs.read_bytes()) + overlay)
        accel = pick_accelerator()
        memory, cpus = machine_share(vm.memory_mib), min(vm.cpus, os.cpu_count() or 1)
        command = [
            *(QEMU, "-name", vm.name, "-nodefaults", "-nographic", "-no-reboot"),
            *("-accel", accel, "-m", str(memory), "-smp", str(cpus)),
            *("-kernel", str(image.kernel), "-initrd", str(initramfs)),
            *("-append", "console=ttyS0 panic=-1"),
            "-chardev",
            f"socket,id=console,path={directory / CONSOLE_SOCKET},server=on,wait=off,"
            f"logfile={directory / CONSOLE_LOG}",
            *("-serial", "chardev:console"),
            *("-chardev", f"socket,id=exec,path={directory / EXEC_SOCKET},server=on,wait=off"),
            *("-serial", "chardev:exec"),
            "-netdev",
            f"stream,id=n0,server=off,addr.type=unix,addr.path={socket_path}",
            *("-device", f"virtio-net-pci,netdev=n0,mac={GUEST_MAC}"),
        ]
        log = directory / QEMU_LOG
        qemu = spawn(in_netns(vm.launcher, command), log)
        console = directory / CONSOLE_LOG

        def ready() -> bool:
            if KVM_FAILURE in _text(log):
                raise VmError(f"QEMU under {accel}: {KVM_FAILURE} (see {log})")
            return READY.search(_text(console)) is not None

        try:
            wait_for(ready, qemu, f"the guest to take its lease ({console})", log, BOOT_DEADLINE)
        except VmError:
            stop(qemu)  # a guest without its lease holds passt's one connection
            raise
        found = READY.search(_text(console))
        assert found is not None
        capped = " capped for this machine" if (memory, cpus) != (vm.memory_mib, vm.cpus) else ""
        note = (
            f"QEMU ({accel}, {memory} MiB, {cpus} CPU{'s' if cpus > 1 else ''}{capped}): the "
            f"guest took {found[1]} mtu {found[2]} from its DHCP"
        )
        return Started(qemu, found[1], note)

    def observe(self, directory: Path, process: Process | None) -> str:
        if process is None or not process.running():
            return "not running"
        if KVM_FAILURE in _text(directory / QEMU_LOG):
            return "stopped by a KVM internal error"
        return "running"

    def stop(self, directory: Path, process: Process | None) -> None:
        stop(process)
        self._remove_run_files(directory)

    @staticmethod
    def _remove_run_files(directory: Path) -> None:
        for name in (CONSOLE_SOCKET, CONSOLE_LOG, EXEC_SOCKET, EXEC_LOCK, INITRAMFS):
            (directory / name).unlink(missing_ok=True)

    def checks_from(self, vm: res.Vm, directory: Path) -> Path | GuestShell | str:
        shell = GuestShell(directory)
        return shell if shell.available() else f"the guest of {vm.name} is not running"


def require_image(changes: list[Change], lab_file: Path) -> None:
    """A QEMU guest to start needs the image scripts/setup builds: said when the plan is made,
    before any change, rather than when the VM's turn comes."""
    starting = [
        change.address
        for change in changes
        if isinstance(change.after, res.Vm)
        and change.after.guest_kind == "qemu"
        and change.action in (Action.CREATE, Action.REPLACE, Action.UPDATE)
    ]
    if not starting:
        return
    from passtplan.providers.sandbox.image import cached_image

    if cached_image() is None:
        raise PasstplanError(f"{lab_file}: {starting[0]} runs QEMU and {NO_IMAGE}")


def aligned(archive: bytes) -> bytes:
    """`archive` padded with zeros to a multiple of 4 bytes: the kernel reads a newc archive that
    follows another only at a 4-byte boundary (and skips the zeros); a gzip'd base image ends
    anywhere, and the overlay after it would be taken for a compressed archive of unknown kind
    and ignored (init/initramfs.c, unpack_to_rootfs)."""
    return archive + b"\0" * (-len(archive) % 4)


def machine_share(memory_mib: int) -> int:
    """The manifest's memory, capped to a share of this machine's, never below a bootable floor."""
    total_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return max(MIN_MEMORY_MIB, min(memory_mib, total_mib // MEMORY_SHARE))


def guest_files(manifest: VmManifest, lab_state: Path) -> list[CpioEntry]:
    """The VM's own files over the base image (guest_config.py): guest.env for the image's /init,
    the lab's key and the user data's among root's authorized keys, users, written files."""
    from passtplan.providers.sandbox.guest_config import guest_config, public_key

    return guest_config(manifest, public_key(lab_state)).entries()


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
