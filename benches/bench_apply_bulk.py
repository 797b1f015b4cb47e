"""Apply 1000 addresses + 1000 routes to one link, against `ip -batch` doing the same.

Both start from the same state (a namespace holding an up bridge) and end in the same state.
passtplan is timed from a made plan to the end of the walk (executing the actions), and again
with its verification (reading everything back and diffing it), which ip does not do.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from benches.common import apply_lab, cleaned, ip_batch, lab, report, timed, unique, write_lab
from passtplan.apply import apply_plan
from passtplan.cycles import load_lab
from passtplan.engine import make_plan
from passtplan.providers.session import Session

TARGET = 2.0


def addresses(n: int) -> list[str]:
    return [f"10.{i // 250}.{i % 250 + 1}.1/32" for i in range(n)]


def routes(n: int) -> list[str]:
    return [f"172.{16 + i // 250}.{i % 250}.0/24" for i in range(n)]


def baseline(n: int, name: str) -> float:
    netns = f"{name}-ip"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    ip_batch(netns, ["link add br0 type bridge", "link set br0 up"])
    lines = [f"address add {a} dev br0" for a in addresses(n)]
    lines += [f"route add {r} dev br0" for r in routes(n)]
    return ip_batch(netns, lines)


def passtplan_run(n: int, name: str, directory: Path) -> tuple[float, float]:
    skeleton = lab(name, {"a": {"links": {"br0": {"kind": "bridge"}}}})
    _, store = apply_lab(directory, skeleton)
    skeleton["namespaces"]["a"]["links"]["br0"]["addresses"] = addresses(n)
    skeleton["namespaces"]["a"]["routes"] = [{"to": r, "dev": "br0"} for r in routes(n)]
    loaded = load_lab(write_lab(directory, skeleton))
    with Session() as session:
        plan = make_plan(loaded, session, store, sandbox=False, destroy=False)
        assert len(plan.pending) == 2 * n
        report_holder = []
        total = timed(lambda: report_holder.append(apply_plan(plan, session, store)))
    result = report_holder[0]
    assert result.ok, [o.detail for _, o in result.outcomes if o.detail][:3]
    return result.walk_seconds, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    name = unique("apply")
    with cleaned(name), tempfile.TemporaryDirectory() as tmp:
        ip_seconds = baseline(args.n, name)
        walk_seconds, total = passtplan_run(args.n, name, Path(tmp))
    rows = [
        (f"ip -batch: {args.n} addresses + {args.n} routes", ip_seconds),
        ("passtplan: execute the plan", walk_seconds),
        ("passtplan: execute + verify (read back, diff)", total),
    ]
    ratio = walk_seconds / ip_seconds
    report(rows, rows[0][0], f"<= {TARGET}x", ratio, ratio <= TARGET)
    return 1 if args.strict and ratio > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
