"""Start-up cost of the cheap commands against the imports they cannot avoid.

`passtplan --help` and `passtplan validate` must not pay for pyroute2, kubernetes or networkx; this
prints their wall time (median of N runs, each a fresh interpreter) beside baselines measured in
the same run, and the ratio of --help to a bare import of pydantic + typer + ruamel.yaml.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "plans/passt-macvlan/lab.yaml"
PY = sys.executable
CLI = [PY, "-c", "from passtplan.cli import main; main()"]
TARGET = 1.3


def wall(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--strict", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args()
    cases = {
        "python -c pass": [PY, "-c", "pass"],
        "import pydantic, typer, ruamel.yaml": [PY, "-c", "import pydantic, typer, ruamel.yaml"],
        "import networkx": [PY, "-c", "import networkx"],
        "import pyroute2": [PY, "-c", "import pyroute2"],
        "import kubernetes": [PY, "-c", "import kubernetes"],
        "passtplan --help": [*CLI, "--help"],
        "passtplan validate (seed lab)": [*CLI, "validate", str(SEED)],
    }
    wall(cases["python -c pass"], 3)  # warm the page cache before measuring anything
    results = {name: wall(argv, args.runs) for name, argv in cases.items()}
    base = results["import pydantic, typer, ruamel.yaml"]
    print(f"{'command':40} {'median ms':>10} {'x bare import':>14}")
    for name, seconds in results.items():
        print(f"{name:40} {seconds * 1000:10.1f} {seconds / base:14.2f}")
    ratio = results["passtplan --help"] / base
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"\n--help / bare import = {ratio:.2f} (target <= {TARGET}): {verdict}")
    return 1 if args.strict and ratio > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
