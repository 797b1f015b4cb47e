"""Which accelerator QEMU gets: KVM only where a real boot shows that it works, else TCG.

/dev/kvm being there proves nothing: on the development machines it is a nested hypervisor
(kvm_pvm) that cannot run a stock Debian kernel (QEMU reports "KVM internal error" on emulation
failures; `-cpu host` aborts). So the guest image is booted once under KVM, without a network,
until its kernel hands over to /init and runs a moment more; an exit, a KVM internal error or no
progress in time means TCG. The answer is kept for the machine's boot and the image's digest in
/run/passtplan/accel.json.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from passtplan.providers.ownership import RUN_DIR
from passtplan.providers.sandbox.image import GuestImage
from passtplan.providers.sandbox.process import Process, spawn, stop

QEMU = "qemu-system-x86_64"
KVM_FAILURE = "KVM internal error"
REACHED_INIT = "Run /init as init process"
PROBE_DEADLINE = 30.0
PROBE_GRACE = 2.0  # seconds the probe runs on after /init: the failures come in user space too
KNOWN = RUN_DIR / "accel.json"


def pick_accelerator(image: GuestImage) -> str:
    """ "kvm" or "tcg", for QEMU's -accel."""
    try:
        known = json.loads(KNOWN.read_text())
        if known.get("image") == image.digest and known.get("accel") in ("kvm", "tcg"):
            return str(known["accel"])
    except (OSError, ValueError, AttributeError):
        pass
    accel = "kvm" if kvm_boots(image) else "tcg"
    KNOWN.parent.mkdir(parents=True, exist_ok=True)
    KNOWN.write_text(json.dumps({"image": image.digest, "accel": accel}) + "\n")
    return accel


def kvm_boots(image: GuestImage) -> bool:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory(prefix="passtplan-accel-") as scratch:
        console, log = Path(scratch) / "console.log", Path(scratch) / "qemu.log"
        command = [
            *(QEMU, "-accel", "kvm", "-nodefaults", "-display", "none", "-no-reboot"),
            *("-m", "128", "-kernel", str(image.kernel), "-initrd", str(image.initramfs)),
            *("-append", "console=ttyS0 panic=-1", "-serial", f"file:{console}"),
        ]
        qemu = spawn(command, log)
        try:
            return _boots(console, log, qemu)
        finally:
            stop(qemu)


def _boots(console: Path, log: Path, qemu: Process) -> bool:
    deadline = time.monotonic() + PROBE_DEADLINE
    reached: float | None = None
    while time.monotonic() < deadline:
        if KVM_FAILURE in _text(log) + _text(console) or qemu.exited():
            return False
        if reached is None and REACHED_INIT in _text(console):
            reached = time.monotonic()
        if reached is not None and time.monotonic() - reached > PROBE_GRACE:
            return True
        time.sleep(0.1)  # polling the probe's console, bounded by the deadline
    return False


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
