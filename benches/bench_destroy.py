"""Destroy a lab of 1000 veth pairs, against deleting the same links one request per link.

Deleting a veth costs the kernel ~16 ms (it waits for RCU grace periods); passtplan deletes the
lab's namespaces instead, which takes every link in them at once. Both are timed from a live lab
to `ip netns` no longer listing it (passtplan: plan and apply of the destroy, observation
included). The kernel finishes releasing a deleted namespace's devices in the background.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from benches.common import apply_lab, cleaned, ip_batch, lab, report, timed, unique
from passtplan.apply import apply_plan
from passtplan.engine import make_plan
from passtplan.providers.session import Session

TARGET = 50.0


def baseline(prefix: str, pairs: int) -> float:
    left, right = f"{prefix}-ipa", f"{prefix}-ipb"
    for name in (left, right):
        subprocess.run(["ip", "netns", "add", name], check=True)
    ip_batch(
        left, [f"link add va{i} type veth peer name vb{i} netns {right}" for i in range(pairs)]
    )
    return ip_batch(left, [f"link del va{i}" for i in range(pairs)])


def ours(name: str, pairs: int, directory: Path) -> float:
    links = {f"va{i}": {"kind": "veth", "peer": f"b/vb{i}"} for i in range(pairs)}
    loaded, store = apply_lab(directory, lab(name, {"a": {"links": links}, "b": {}}))

    def destroy() -> None:
        with Session() as session:
            plan = make_plan(loaded, session, store, sandbox=False, destroy=True)
            assert apply_plan(plan, session, store).ok

    return timed(destroy)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    prefix = unique("destroy")
    with cleaned(prefix), tempfile.TemporaryDirectory() as tmp:
        per_link = baseline(prefix, args.pairs)
        destroy = ours(f"{prefix}-lab", args.pairs, Path(tmp))
    rows = [
        (f"ip -batch: link del, one request per veth ({args.pairs})", per_link),
        ("passtplan destroy (plan + apply, observation included)", destroy),
    ]
    speedup = per_link / destroy
    report(rows, rows[0][0], f">= {TARGET}x faster", destroy / per_link, speedup >= TARGET)
    print(f"speed-up: {speedup:.0f}x")
    return 1 if args.strict and speedup < TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
