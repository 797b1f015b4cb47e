"""Mutation testing of the pure rules: diff, graph, verify, resources (the link field rules),
subnets and targets, against the pure tests (the golden cases, test_verify, test_walk_graph,
test_rules, test_targets).

    .venv/bin/python scripts/mutation.py              # a fresh run: about 10 minutes on 2 cores
    .venv/bin/python scripts/mutation.py --summary    # the last run's figures again

mutmut (3.x) names a mutant after its file's path with a leading `src/` stripped, and at run time
matches that name against the module the function lives in; with the package in engine/, every
mutant would be named `engine.passtplan...` and never switched on. So the package is staged as
build/mutation/src/passtplan, beside copies of tests/ and pyproject.toml (whose [tool.mutmut]
table says what is mutated and which tests run), and mutmut runs there. Prints, per module and per
function, killed / survived / no tests / timeouts, and the surviving mutants' names; see one with
`cd build/mutation && ../../.venv/bin/mutmut show NAME`. Exits 0 when mutmut ran, whatever the
score: the figures are for reading, not a gate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGE = REPO / "build" / "mutation"
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 36: "timeout"}
TIMEOUTS = {-24, 24, 152, 255}
COLUMNS = ("killed", "survived", "no tests", "timeout", "other")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", action="store_true", help="only print the last run's figures")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    if not args.summary:
        stage()
        code = run(args.max_children)
        if code != 0:
            print(f"mutmut failed (exit {code}); see {STAGE / 'mutmut.log'}", file=sys.stderr)
            return code
    return summarise()


def stage() -> None:
    shutil.rmtree(STAGE, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "engine" / "passtplan", STAGE / "src" / "passtplan", ignore=ignore)
    shutil.copytree(REPO / "tests", STAGE / "tests", ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", STAGE / "pyproject.toml")


def run(max_children: int) -> int:
    mutmut = Path(sys.executable).parent / "mutmut"
    # The staged copy, not engine/ (nor an editable install), is what the tests must import.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with (STAGE / "mutmut.log").open("w") as log:
        done = subprocess.run(
            [str(mutmut), "run", "--max-children", str(max_children)],
            cwd=STAGE,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return done.returncode


def status(exit_code: int | None) -> str:
    if exit_code in TIMEOUTS:
        return "timeout"
    return STATUS.get(exit_code, "other") if exit_code is not None else "other"


def summarise() -> int:
    metas = sorted((STAGE / "mutants" / "src").rglob("*.py.meta"))
    if not metas:
        print(f"no results under {STAGE / 'mutants'}: run without --summary first", file=sys.stderr)
        return 1
    total: Counter[str] = Counter()
    survivors: list[str] = []
    print(f"{'module / function':<44}" + "".join(f"{c:>10}" for c in COLUMNS))
    for meta in metas:
        by_function: dict[str, Counter[str]] = defaultdict(Counter)
        for name, exit_code in json.loads(meta.read_text())["exit_code_by_key"].items():
            module, _, mutant = name.partition(".x")
            function = mutant.split("__mutmut_")[0]
            function = function[1:].replace("ǁ", ".")  # _f -> f, ǁCǁm -> C.m
            verdict = status(exit_code)
            by_function[function][verdict] += 1
            if verdict != "killed":
                survivors.append(f"{verdict:<9} {name}")
        counts: Counter[str] = sum(by_function.values(), Counter())
        total += counts
        print(line(module, counts))
        for function, function_counts in sorted(by_function.items()):
            print(line(f"  {function}", function_counts))
    print(line("all", total))
    killed, mutants = total["killed"], total.total()
    print(f"killed {killed} of {mutants} ({100 * killed / mutants:.1f}%)")
    (STAGE / "survivors.txt").write_text("".join(f"{s}\n" for s in sorted(survivors)))
    print(f"not killed: {STAGE / 'survivors.txt'}")
    return 0


def line(label: str, counts: Counter[str]) -> str:
    return f"{label:<44}" + "".join(f"{counts[c]:>10}" for c in COLUMNS)


if __name__ == "__main__":
    sys.exit(main())
