"""The star lab at scale (N spokes, ~44 resources each), against `ip -batch` in the same run.

Per N, in this order, on a machine that holds none of the lab:
- baseline: `ip -batch` building the same objects (one `ip` per namespace, process start-ups
  included) and deleting them (one `ip -batch` of `netns delete`);
- validate: `python -m passtplan validate FILE` (wall, a fresh interpreter) and load_lab in
  process (YAML, models, lab-wide rules);
- plan: make_plan on an empty machine (desired state, observe, diff, graph; a Session opened and
  closed); loading the file is excluded;
- apply: make_plan + apply_plan (execute the walk, then verify: read back and diff);
- no-op: make_plan right after the apply (nothing left to do);
- destroy: make_plan(destroy=True) + apply_plan (with its verify).

Each passtplan phase runs in its own process (`--child PHASE FILE`), timed inside it, load
excluded; that process reports its peak RSS (ru_maxrss). A phase that runs past --limit seconds
(its process's start-up and load get another --limit) is killed and reported as over the limit;
the phases that need it are skipped. Every namespace and record of the run is removed at the end
of each N, on failure too.

Targets (the issue states them at N=400): plan <= 1x the ip build; apply <= 2x the ip build;
no-op plan <= 1x the ip build; destroy <= 1 s; peak RSS of the apply <= 300 MB; plan time at the
largest N over the smallest <= 1.25 x their ratio of N (10 for 400 over 50). Missed targets are
reported, not asserted: the exit status is 0.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benches.common import cleaned, ip_batch, unique, write_lab
from benches.starlab import ip_batches, ip_delete_batch, resource_count, star_lab
from passtplan.apply import apply_plan
from passtplan.cycles import load_lab
from passtplan.engine import make_plan, store_for
from passtplan.providers.session import Session

PHASES = ("baseline", "validate", "plan", "apply", "noop", "destroy")
NEEDS_APPLY = ("noop", "destroy")
PLAN_TARGET, APPLY_TARGET, NOOP_TARGET = 1.0, 2.0, 1.0
DESTROY_TARGET = 1.0  # seconds
RSS_TARGET = 300.0  # MB
LINEARITY_SLACK = 1.25  # plan(N_max) / plan(N_min) <= 1.25 * N_max / N_min


# --- the child: one passtplan phase, timed in process ------------------------------------------


def child(phase: str, path: Path) -> dict[str, Any]:
    """Run one phase on the lab file at `path`; what it measured, as JSON-able data."""
    start = time.perf_counter()
    loaded = load_lab(path)
    out: dict[str, Any] = {"load": time.perf_counter() - start}
    print(LOADED, flush=True)
    if phase == "load":
        return {**out, "seconds": out["load"]}
    store = store_for(loaded, sandbox=False)
    start = time.perf_counter()
    with Session() as session:
        plan = make_plan(loaded, session, store, sandbox=False, destroy=phase == "destroy")
        planned = time.perf_counter()
        if phase in ("apply", "destroy"):
            report = apply_plan(plan, session, store)
            out.update(
                walk=report.walk_seconds,
                verify=report.seconds - report.walk_seconds,
                ok=report.ok,
                problems=[
                    *report.verify_errors[:3],
                    *(f"{c.address}: {o.detail}" for c, o in report.outcomes if o.status != "done"),
                ][:3],
            )
    out.update(
        seconds=time.perf_counter() - start,
        plan=planned - start,
        changes=len(plan.changes),
        pending=len(plan.pending),
        maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    return out


# --- the parent: phases in children, with a time limit -----------------------------------------


class OverLimitError(Exception):
    pass


class PhaseError(Exception):
    pass


LOADED = "loaded"  # the child's first line: start-up and load are over, the phase begins


def _pump(stream: IO[str], lines: queue.SimpleQueue[str]) -> None:
    """The child's output, line by line, then "" at its end."""
    for line in stream:
        lines.put(line)
    lines.put("")


def run_child(phase: str, path: Path, limit: float) -> dict[str, Any]:
    """Run a phase in a child; start-up + load, and then the phase, each get `limit` seconds."""
    argv = [sys.executable, "-m", "benches.bench_scale", "--child", phase, str(path)]
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True
        )
        assert proc.stdout is not None
        lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        try:
            first = lines.get(timeout=limit)
            result = lines.get(timeout=limit) if first.strip() == LOADED else first
        except BaseException as exc:  # the time limit, or an interrupt: the child goes first
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the child and nothing else
            proc.wait()
            if isinstance(exc, queue.Empty):
                raise OverLimitError(f"over the limit ({limit:g} s)") from None
            raise
        code = proc.wait()
        if code != 0 or not result.startswith("{"):
            errors.seek(0)
            last = (errors.read().strip().splitlines() or ["(no output)"])[-1]
            raise PhaseError(f"failed (exit {code}): {last[:160]}")
    found: dict[str, Any] = json.loads(result)
    return found


def cli_validate(path: Path, limit: float) -> float:
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "passtplan", "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OverLimitError(f"over the limit ({limit:g} s)") from None
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise PhaseError(f"failed: {proc.stderr.strip()[:160]}")
    return seconds


@dataclass
class Row:
    """One figure: a value (seconds, or MB), or a note when there is none."""

    name: str
    value: float | None = None
    unit: str = "s"
    note: str = ""
    ratio: float | None = None  # against the baseline (or the figure it is judged by)
    target: str = ""
    met: bool | None = None


@dataclass
class Run:
    n: int
    rows: list[Row] = field(default_factory=list)
    plan_seconds: float | None = None
    plan_over: float | None = None  # the limit the plan ran past


def judge(row: Row, ratio: float | None, limit: float, target: str) -> Row:
    row.ratio, row.target = ratio, target
    if ratio is not None:
        row.met = ratio <= limit
    return row


def baseline(prefix: str, n: int) -> tuple[float, float]:
    """(build, delete) seconds of `ip -batch`, start-ups included."""
    start = time.perf_counter()
    for netns, lines in ip_batches(prefix, n):
        ip_batch(netns, lines)
    build = time.perf_counter() - start
    return build, ip_batch(None, ip_delete_batch(prefix, n))


def phase_row(name: str, phase: str, path: Path, limit: float) -> tuple[Row, dict[str, Any]]:
    try:
        result = run_child(phase, path, limit)
    except (OverLimitError, PhaseError) as exc:
        return Row(name, note=str(exc)), {}
    return Row(name, result["seconds"]), result


def measure(n: int, phases: set[str], limit: float, prefix: str, directory: Path) -> Run:
    run = Run(n)
    rows = run.rows
    build: float | None = None
    if "baseline" in phases:
        build, delete = baseline(f"{prefix}-ip", n)
        rows += [Row("ip -batch: build (start-ups included)", build)]
        rows += [Row("ip -batch: netns delete", delete)]

    def ratio(seconds: float | None) -> float | None:
        return None if seconds is None or build is None else seconds / build

    path = write_lab(directory, star_lab(f"{prefix}-lab", n))
    if "validate" in phases:
        try:
            rows.append(Row("validate: CLI, fresh interpreter (wall)", cli_validate(path, limit)))
        except (OverLimitError, PhaseError) as exc:
            rows.append(Row("validate: CLI, fresh interpreter (wall)", note=str(exc)))
        rows.append(phase_row("validate: load_lab in process", "load", path, limit)[0])
    if "plan" in phases:
        row, result = phase_row("plan, empty machine (load excluded)", "plan", path, limit)
        run.plan_seconds = row.value
        if "over the limit" in row.note:
            run.plan_over = limit
        rows.append(judge(row, ratio(row.value), PLAN_TARGET, f"<= {PLAN_TARGET:g}x build"))
        if result:
            row.note = f"{result['pending']} changes"
    if not phases & {"apply", *NEEDS_APPLY}:
        return run
    row, result = phase_row("apply: plan + execute + verify", "apply", path, limit)
    rows.append(judge(row, ratio(row.value), APPLY_TARGET, f"<= {APPLY_TARGET:g}x build"))
    if result:
        rows += [
            Row("  of which plan", result["plan"], ratio=ratio(result["plan"])),
            Row("  of which execute (the walk)", result["walk"], ratio=ratio(result["walk"])),
            Row("  of which verify", result["verify"], ratio=ratio(result["verify"])),
        ]
        rss = result["maxrss_mb"]
        rows.append(
            judge(Row("apply: peak RSS", rss, "MB"), rss, RSS_TARGET, f"<= {RSS_TARGET:g} MB")
        )
        if not result["ok"]:
            row.note = "apply not ok: " + "; ".join(result["problems"])[:120]
            result = {}
    if not result:
        rows.append(Row("no-op plan, destroy", note="skipped: the apply did not finish"))
        return run
    if "noop" in phases:
        row, result = phase_row("no-op plan after apply", "noop", path, limit)
        rows.append(judge(row, ratio(row.value), NOOP_TARGET, f"<= {NOOP_TARGET:g}x build"))
        if result:
            row.note = f"{result['pending']} changes pending"
    if "destroy" in phases:
        row, result = phase_row("destroy: plan + execute + verify", "destroy", path, limit)
        seconds = row.value
        rows.append(judge(row, seconds, DESTROY_TARGET, f"<= {DESTROY_TARGET:g} s"))
        row.ratio = ratio(seconds)
        if result and not result["ok"]:
            row.note = "destroy not ok: " + "; ".join(result["problems"])[:120]
    return run


def verdict(row: Row) -> str:
    if row.met is None:
        return "-" if row.target else ""
    return "met" if row.met else "MISSED"


def print_run(run: Run) -> None:
    print(f"\nN={run.n} ({resource_count(run.n)} resources)")
    print(f"{'measurement':44} {'value':>10} {'x build':>8}  {'target':16} {'':7} note")
    for row in run.rows:
        value = "" if row.value is None else f"{row.value:9.3f}{row.unit[0]}"
        if row.unit == "MB" and row.value is not None:
            value = f"{row.value:8.1f}MB"
        shown = "" if row.ratio is None or row.unit == "MB" else f"{row.ratio:8.2f}"
        print(f"{row.name:44} {value:>10} {shown:>8}  {row.target:16} {verdict(row):7} {row.note}")


def linearity(runs: list[Run]) -> None:
    """Plan time at the largest N over the smallest; a lower bound when the largest ran over."""
    small = min((r for r in runs if r.plan_seconds is not None), key=lambda r: r.n, default=None)
    big = max(runs, key=lambda r: r.n)
    if small is None or small.plan_seconds is None or big.n == small.n:
        return
    limit = LINEARITY_SLACK * big.n / small.n
    head = f"\nplan N={big.n} / plan N={small.n}"
    tail = f"(target <= {limit:g}, {big.n / small.n:g}x the resources)"
    if big.plan_seconds is not None:
        growth = big.plan_seconds / small.plan_seconds
        print(f"{head}: {growth:.1f} {tail}: {'met' if growth <= limit else 'MISSED'}")
    elif big.plan_over is not None:
        growth = big.plan_over / small.plan_seconds
        print(f"{head}: > {growth:.1f}, N={big.n} ran over the limit {tail}: ", end="")
        print("MISSED" if growth > limit else "not known")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[50, 400], help="spokes (each N)")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated, of {', '.join(PHASES)} (noop and destroy imply apply)",
    )
    parser.add_argument(
        "--limit", type=float, default=120.0, help="seconds a passtplan phase may take"
    )
    parser.add_argument("--child", nargs=2, metavar=("PHASE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return 0
    phases = set(args.phases.split(","))
    if phases - set(PHASES):
        parser.error(f"unknown phases: {', '.join(sorted(phases - set(PHASES)))}")
    if os.geteuid() != 0:
        print("bench_scale needs root: it creates network namespaces", file=sys.stderr)
        return 2
    runs = []
    for n in args.n:
        prefix = unique(f"scale{n}")
        with cleaned(prefix), tempfile.TemporaryDirectory() as tmp:
            runs.append(measure(n, phases, args.limit, prefix, Path(tmp)))
        print_run(runs[-1])
    linearity(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
