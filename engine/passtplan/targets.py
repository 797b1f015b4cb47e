"""Resource targeting, as Terraform's `-target`: a plan of some resources only, with whatever
must run before them.

What must run before a change is its ancestors in the action graph, so one rule serves both
directions, as in Terraform's TargetsTransformer: what a made resource depends on is made first,
and what depends on a removed resource is removed first (a destroy of a link takes the links
enslaved to it). A veth's two ends are one kernel object, made or removed by one action, so a
targeted end brings its peer. A removal that would go with its namespace goes by itself when the
namespace is not targeted.
"""

from __future__ import annotations

import difflib

import msgspec

from passtplan import resources as res
from passtplan.changes import Change
from passtplan.desired import Desired
from passtplan.errors import PasstplanError
from passtplan.graph import dependency_edges


def targeted(changes: list[Change], desired: Desired, targets: tuple[str, ...]) -> list[Change]:
    """The changes of the targets and of what must run before them, in the plan's order; an
    unknown address is an error naming the closest one the lab has."""
    by_address = {c.address: c for c in changes}
    for target in targets:
        if target not in by_address:
            raise PasstplanError(_unknown(target, list(by_address), desired.lab))
    edges = dependency_edges(changes, desired)
    before: dict[str, set[str]] = {address: set() for address in by_address}
    for u, after in edges.items():
        for v in after:
            before[v].add(u)
    chosen: set[str] = set()
    stack = list(targets)
    while stack:
        address = stack.pop()
        if address in chosen:
            continue
        chosen.add(address)
        stack += before[address]
        stack += _goes_with(by_address[address], by_address)
    return [_alone(c, chosen, targets) for c in changes if c.address in chosen]


def _goes_with(change: Change, by_address: dict[str, Change]) -> list[str]:
    """What one action does together with this change: the other end of a veth, and the
    other end's covering change when this one goes with it."""
    found = []
    link = change.resource
    if isinstance(link, res.Link) and link.peer is not None:
        found.append("link.{}/{}".format(*link.peer))
    if change.covered_by is not None and change.covered_by.startswith("link."):
        found.append(change.covered_by)
    return [address for address in found if address in by_address]


def _alone(change: Change, chosen: set[str], targets: tuple[str, ...]) -> Change:
    """A change covered by one left out of the plan (a link whose namespace is not removed)
    is done by itself."""
    if change.covered_by is None or change.covered_by in chosen:
        return change
    reason = "targeted" if change.address in targets else "goes with a target"
    return msgspec.structs.replace(change, covered_by=None, reason=reason)


def _unknown(target: str, known: list[str], lab: str) -> str:
    closest = difflib.get_close_matches(target, known, n=1, cutoff=0.0)
    hint = f"; did you mean {closest[0]}?" if closest else ""
    return f"--target {target}: lab {lab} has no resource at this address{hint}"
