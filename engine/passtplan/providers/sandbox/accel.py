"""Which accelerator QEMU boots the guest with here: KVM when a real boot under it works, else TCG.

/dev/kvm being there proves little: on a nested hypervisor (kvm_pvm) a stock Debian kernel
stops with "KVM internal error" (emulation failures), so the probe boots the guest's kernel
with a tiny initramfs that prints a line and powers off. The answer is kept in
IMAGE_ROOT/accel.json for this machine (host kernel, QEMU version, guest kernel) and probed
again when any of them changes.
"""

from __future__ import annotations

import gzip
import json
import os
import select
import subprocess
import tempfile
import time

from passtplan.providers.sandbox.cpio import CpioEntry, newc
from passtplan.providers.sandbox.image import BUSYBOX, IMAGE_ROOT, GuestImage, cached_image
from passtplan.providers.sandbox.qemu import KVM_FAILURE, QEMU

KVM = "kvm"
TCG = "tcg"
PROBE_MARK = "PASSTPLAN-ACCEL-PROBE-OK"
PROBE_DEADLINE = 10.0  # a working KVM boots this to init in a second or two
PROBE_INIT = f"#!/bin/busybox sh\n/bin/busybox echo {PROBE_MARK}\n/bin/busybox poweroff -f\n"
CHOICE = IMAGE_ROOT / "accel.json"


def pick_accelerator() -> str:
    """ "kvm" or "tcg", for QEMU's -accel. TCG without a probe when /dev/kvm cannot be opened or
    no guest image is built yet (then nothing is kept, so a later call probes)."""
    if not kvm_usable():
        return TCG
    image = cached_image()
    if image is None:
        return TCG
    machine = _machine(image)
    try:
        kept = json.loads(CHOICE.read_text())
        if kept.get("machine") == machine and kept.get("accel") in (KVM, TCG):
            return str(kept["accel"])
    except (OSError, ValueError):
        pass
    accel = KVM if boots(image, KVM) else TCG
    tmp = CHOICE.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"machine": machine, "accel": accel}, indent=1) + "\n")
    tmp.replace(CHOICE)
    return accel


def boots(image: GuestImage, accel: str, deadline: float = PROBE_DEADLINE) -> bool:
    """Whether the guest's kernel boots to an init under `accel` here within `deadline`."""
    probe = newc(
        [
            CpioEntry(str(BUSYBOX), 0o755, BUSYBOX.read_bytes()),
            CpioEntry("init", 0o755, PROBE_INIT.encode()),
        ]
    )
    with tempfile.NamedTemporaryFile(suffix=".cpio.gz") as initrd:
        initrd.write(gzip.compress(probe, 1))
        initrd.flush()
        command = [QEMU, "-accel", accel, "-m", "128", "-kernel", str(image.kernel)]
        command += ["-initrd", initrd.name, "-append", "console=ttyS0 quiet panic=-1"]
        command += ["-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio"]
        output = _output_until(command, (PROBE_MARK, KVM_FAILURE), deadline)
    return PROBE_MARK in output and KVM_FAILURE not in output


def _output_until(command: list[str], marks: tuple[str, ...], deadline: float) -> str:
    """What the command prints (stdout and stderr) until one of the marks or the deadline;
    then it is killed. A KVM that cannot run the guest often hangs silently instead of failing."""
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError:
        return ""
    assert process.stdout is not None
    output = b""
    end = time.monotonic() + deadline
    try:
        while (left := end - time.monotonic()) > 0:
            if not select.select([process.stdout], [], [], left)[0]:
                break
            chunk = os.read(process.stdout.fileno(), 65536)
            output += chunk
            if not chunk or any(mark.encode() in output for mark in marks):
                break
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    return output.decode(errors="replace")


def kvm_usable() -> bool:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return False
    return True


def _machine(image: GuestImage) -> dict[str, str]:
    try:
        qemu = subprocess.run([QEMU, "--version"], capture_output=True, text=True, check=False)
        version = qemu.stdout.split("\n", 1)[0]
    except OSError:
        version = "absent"
    host = os.uname()
    kernel = json.loads(image.manifest.read_text())["kernel"]
    return {
        "host": f"{host.release} {host.version}",
        "qemu": version,
        "guest_kernel": f"{kernel['name']} {kernel['version']}",
    }
