"""The seed lab in the sandbox with each guest, in one run: QEMU (the default) against the
Python stand-in (`sandbox: {guest: stand-in}`), the baseline.

Per guest, a copy of the seed lab under a unique name is applied from nothing with the CLI
(`python -m passtplan apply --sandbox --auto-approve`, a fresh process: the VM's start, the swap
and the three checks), then its processes' peak memory is read (VmHWM of the guest process and of
passt, from /proc), then it is destroyed (untimed). --repeat runs each guest that many times and
takes the median time and the largest memory. Every namespace and record is removed at the end,
on failure too.

There is no target: the ratios are what the README's "which guest" advice stands on. Run as root
from the repository root: `sudo .venv/bin/python -m benches.bench_guest`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benches.common import cleaned, unique
from passtplan.providers.ownership import RUN_DIR

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "plans" / "passt-macvlan"
VM = "passt-macvlan"
GUESTS = ("stand-in", "qemu")  # the baseline first


@dataclass(frozen=True)
class Run:
    seconds: float
    guest_mb: float  # the guest process's peak RSS (QEMU, or the stand-in's Python)
    passt_mb: float


def seed_copy(directory: Path, name: str, guest: str) -> Path:
    (directory / "passt-vm.yaml").write_text((SEED / "passt-vm.yaml").read_text())
    text = (SEED / "lab.yaml").read_text().replace("name: passt-macvlan\n", f"name: {name}\n", 1)
    path = directory / "lab.yaml"
    path.write_text(text.replace("\nsandbox:", f"\nsandbox:\n  guest: {guest}", 1))
    return path


def passtplan(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "passtplan", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])}: exit {done.returncode}\n{done.stdout[-2000:]}")
    return done


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_once(guest: str) -> Run:
    name = unique(guest.replace("-", ""))
    with cleaned(name), tempfile.TemporaryDirectory() as scratch:
        lab = seed_copy(Path(scratch), name, guest)
        start = time.perf_counter()
        applied = passtplan("apply", str(lab), "--sandbox", "--auto-approve")
        seconds = time.perf_counter() - start
        if "Checks: 3 passed" not in applied.stdout:
            raise RuntimeError(f"{guest}: the seed's checks did not pass\n{applied.stdout[-2000:]}")
        record = json.loads((RUN_DIR / f"{name}@sandbox" / "vm" / VM / "state.json").read_text())
        run = Run(seconds, peak_mb(record["guest"][0]), peak_mb(record["passt"][0]))
        passtplan("destroy", str(lab), "--sandbox", "--auto-approve")
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per guest (median time)")
    args = parser.parse_args()
    results: dict[str, list[Run]] = {guest: [] for guest in GUESTS}
    for _ in range(args.repeat):
        for guest in GUESTS:
            results[guest].append(run_once(guest))
    print(f"{'guest':10} {'apply s':>9} {'guest MB':>9} {'passt MB':>9}")
    summary = {}
    for guest, runs in results.items():
        seconds = statistics.median(r.seconds for r in runs)
        guest_mb = max(r.guest_mb for r in runs)
        passt_mb = max(r.passt_mb for r in runs)
        summary[guest] = (seconds, guest_mb + passt_mb)
        print(f"{guest:10} {seconds:9.2f} {guest_mb:9.1f} {passt_mb:9.1f}")
    (base_s, base_mb), (qemu_s, qemu_mb) = summary["stand-in"], summary["qemu"]
    print(
        f"\nqemu / stand-in: apply wall time {qemu_s / base_s:.1f}x, "
        f"peak memory (guest + passt) {qemu_mb / base_mb:.1f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
