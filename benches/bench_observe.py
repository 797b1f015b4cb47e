"""Observation against iproute2, in the same run.

- one namespace holding 1000 links, 1000 addresses and 1000 routes, vs `ip -j -batch` listing
  links, addresses and routes (target <= 2x);
- 100 namespaces of 10 links each, vs `ip -j -n NS link show` once per namespace (target <= 0.8x).

passtplan is timed for the whole observation: opening each namespace's socket, one dump per
object type, and translating the messages into resources.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from benches.common import cleaned, ip_batch, report, unique
from passtplan import resources as res
from passtplan.desired import Desired
from passtplan.providers.observe import observe
from passtplan.providers.session import Session

BIG_TARGET, MANY_TARGET = 2.0, 0.8


def resolved(netns: str) -> res.Namespace:
    return res.Namespace(netns, netns, res.NamespaceRole.RESOLVED, ("path", f"/run/netns/{netns}"))


def observe_namespaces(names: list[str]) -> float:
    desired = Desired("bench", False, namespaces={n: resolved(n) for n in names})
    start = time.perf_counter()
    with Session() as session:
        state = observe(desired, res.Ownership(), session)
    seconds = time.perf_counter() - start
    assert all(state.namespaces[n] is not None for n in names)
    return seconds


def best(runs: int, work: object) -> float:
    return statistics.median(work() for _ in range(runs))  # type: ignore[operator]


def big(prefix: str, links: int, runs: int) -> tuple[float, float]:
    netns = f"{prefix}-big"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    setup = ["link add br0 type bridge", "link set br0 up"]
    setup += [f"link add v{i} type veth peer name w{i}" for i in range(links // 2)]
    setup += [f"address add 10.{i // 250}.{i % 250 + 1}.1/32 dev br0" for i in range(links)]
    setup += [f"route add 172.{16 + i // 250}.{i % 250}.0/24 dev br0" for i in range(links)]
    ip_batch(netns, setup)
    queries = ["link show", "address show", "route show"]
    ip_seconds = best(runs, lambda: ip_batch(netns, queries, json_out=True))
    ours = best(runs, lambda: observe_namespaces([netns]))
    return ip_seconds, ours


def many(prefix: str, count: int, links: int, runs: int) -> tuple[float, float]:
    names = [f"{prefix}-m{i}" for i in range(count)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
        ip_batch(name, [f"link add v{i} type veth peer name w{i}" for i in range(links // 2)])

    def ip_each() -> float:
        start = time.perf_counter()
        for name in names:
            subprocess.run(
                ["ip", "-j", "-n", name, "link", "show"], capture_output=True, check=True
            )
        return time.perf_counter() - start

    return best(runs, ip_each), best(runs, lambda: observe_namespaces(names))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    prefix = unique("obs")
    with cleaned(prefix):
        ip_big, ours_big = big(prefix, 1000, args.runs)
        ip_many, ours_many = many(prefix, 100, 10, args.runs)
    big_ratio, many_ratio = ours_big / ip_big, ours_many / ip_many
    report(
        [
            ("ip -j -batch: 1000 links, addresses, routes", ip_big),
            ("passtplan observe: the same namespace", ours_big),
        ],
        "ip -j -batch: 1000 links, addresses, routes",
        f"<= {BIG_TARGET}x",
        big_ratio,
        big_ratio <= BIG_TARGET,
    )
    print()
    report(
        [
            ("ip -j -n NS link show: 100 namespaces x 10 links", ip_many),
            ("passtplan observe: the same 100 namespaces", ours_many),
        ],
        "ip -j -n NS link show: 100 namespaces x 10 links",
        f"<= {MANY_TARGET}x",
        many_ratio,
        many_ratio <= MANY_TARGET,
    )
    missed = big_ratio > BIG_TARGET or many_ratio > MANY_TARGET
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
