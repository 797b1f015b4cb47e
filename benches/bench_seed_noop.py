"""The seed lab's no-op plan in the sandbox: what a user waits for after every apply.

Run as root from the repository root: `sudo .venv/bin/python -m benches.bench_seed_noop`. It
copies the seed lab (plans/passt-macvlan) under a unique name, applies it in the sandbox
(untimed), then times `passtplan plan DIR --sandbox` (a fresh interpreter each run, as a user
runs it; the median of N) beside a bare import of pydantic + typer + PyYAML, run in turn with
it, and destroys the copy, even on error. Target: under 0.5 s wall.

pydantic's package import is lazy: its model machinery loads with the first model or validator,
which every command builds (typer 0.29 makes a pydantic validator per option). The floor line
imports it too (`from pydantic import BaseModel`): what passtplan itself adds is the rest.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benches.common import cleaned, unique

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "plans/passt-macvlan"
PY = sys.executable
CLI = [PY, "-m", "passtplan"]
TARGET = 0.5  # seconds of wall time
BARE = "import pydantic, typer, yaml"
FLOOR = "import typer, yaml; from pydantic import BaseModel"


def walls(commands: list[list[str]], runs: int) -> list[float]:
    """The median wall time of each command, run in turn (one of each, `runs` times over), so a
    machine that speeds up or slows down during the bench weighs on all of them alike."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for argv, taken in zip(commands, times, strict=True):
            start = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            taken.append(time.perf_counter() - start)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr[-300:]}"
                )
    return [statistics.median(taken) for taken in times]


def seed_copy(directory: Path, name: str) -> Path:
    """The seed lab under another name, so a seed lab a user has up is left alone."""
    for path in SEED.iterdir():
        shutil.copy(path, directory / path.name)
    lab = directory / "lab.yaml"
    text = lab.read_text()
    lab.write_text(text.replace("  name: passt-macvlan\n", f"  name: {name}\n", 1))
    return directory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--strict", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args()
    name = unique("seed")
    with tempfile.TemporaryDirectory() as tmp, cleaned(name):
        lab = seed_copy(Path(tmp), name)
        subprocess.run(
            [*CLI, "apply", str(lab), "--sandbox", "--auto-approve"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            plan = [*CLI, "plan", str(lab), "--sandbox", "--detailed-exitcode"]
            bare, floor, noop = walls([[PY, "-c", BARE], [PY, "-c", FLOOR], plan], args.runs)
        finally:
            subprocess.run(
                [*CLI, "destroy", str(lab), "--sandbox", "--auto-approve"],
                check=False,
                stdout=subprocess.DEVNULL,
            )
    print(f"{'measurement':46} {'median ms':>10} {'x bare import':>14}")
    rows = [
        (BARE, bare),
        ("the same, with from pydantic import BaseModel", floor),
        ("passtplan plan SEED --sandbox (no-op)", noop),
    ]
    for what, seconds in rows:
        print(f"{what:46} {seconds * 1000:10.1f} {seconds / bare:14.2f}")
    verdict = "met" if noop < TARGET else "MISSED"
    print(f"\nno-op plan {noop:.3f} s (target < {TARGET} s): {verdict}")
    return 1 if args.strict and noop >= TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
