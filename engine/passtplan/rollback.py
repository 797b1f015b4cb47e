"""A way back, as nmstate's checkpoint: the last apply's journal line undone in dependency order,
then the live state held against the digest taken before that apply.

What each action's undo is: a create is deleted, a delete made again, an update or a replace
turned back to what was before. What went with a deleted namespace or link (its contents) is
not in the journal, and so not made again: the digest check says so when that matters. A veth
end deleted with its other end is: the pair made again, its own attributes are given back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from passtplan import inputs
from passtplan import resources as res
from passtplan.apply import UNDO, apply_plan, live_digest
from passtplan.changes import Action, ApplyReport, Change, Plan, fingerprint
from passtplan.desired import Desired, netns_name
from passtplan.engine import observe_state
from passtplan.errors import PasstplanError
from passtplan.lang.loader import LoadedLab
from passtplan.providers.ownership import JOURNAL, OwnershipStore
from passtplan.providers.session import Session
from passtplan.providers.vm_kubevirt import ClusterContext


class RollbackReport(msgspec.Struct):
    report: ApplyReport
    restored: bool  # the live state is as it was before the apply
    undone: int


def undo_changes(entries: list[dict[str, Any]], lab: str) -> list[Change]:
    """Pure: the journal's entries of one apply -> the changes that undo them. What the undo
    removes from a namespace it also removes goes with that namespace."""
    changes = []
    for entry in entries:
        address = entry["address"]
        was, became = entry["before"] or {}, entry["after"] or {}
        before = res.from_attributes(address, was) if was else None
        after = res.from_attributes(address, became) if became else None
        # the fields the apply set (an update sets what the lab declares, not None)
        changed = tuple(n for n, v in became.items() if v is not None and v != was.get(n))
        action = UNDO[Action(entry["action"])]
        changes.append(Change(address, action, after, before, "rollback", changed))
    dropped = {
        c.address for c in changes if c.action is Action.DELETE and c.address.startswith("netns.")
    }
    # A sandbox VM removed takes its pod's namespace (LAB.N) and all in it.
    pods = {
        c.resource.launcher: c.address
        for c in changes
        if c.action is Action.DELETE and isinstance(c.resource, res.Vm)
    }
    undone = []
    for change in changes:
        namespace = getattr(change.resource, "namespace", None)
        pod = pods.get(netns_name(lab, namespace)) if namespace else None
        if pod is not None and change.action is not Action.DELETE:
            continue  # nothing to make again in a pod that goes
        if pod is not None:
            undone.append(msgspec.structs.replace(change, covered_by=pod))
        elif change.action is Action.DELETE and f"netns.{namespace}" in dropped:
            undone.append(msgspec.structs.replace(change, covered_by=f"netns.{namespace}"))
        else:
            undone.append(change)
    return undone


def last_apply(store: OwnershipStore) -> dict[str, Any]:
    path = store.path.parent / JOURNAL
    lines = inputs.state_lines(path)
    if not lines:
        raise PasstplanError(
            f"nothing to roll back: {path} records no apply of this lab (run apply first)"
        )
    last = lines[-1]
    if not isinstance(last, dict) or not isinstance(last.get("entries"), list):
        raise inputs.state_error(path, f"line {len(lines)} is not a journal entry")
    return last


def rollback(
    loaded: LoadedLab,
    desired: Desired,
    session: Session,
    store: OwnershipStore,
    cluster: ClusterContext | None = None,
) -> RollbackReport:
    """Undo the last apply; its journal line goes once the state is as before it."""
    from passtplan.graph import batched_graph  # noqa: PLC0415 - networkx, only when rolling back

    last = last_apply(store)
    changes = undo_changes(last["entries"], desired.lab)
    state = observe_state(desired, session, store, cluster)
    graph = batched_graph(changes, desired)
    plan = Plan(loaded, desired, state, changes, fingerprint(state), graph)
    report = apply_plan(plan, session, store, cluster=cluster, verify=False, journal=False)
    restored = (
        report.ok and live_digest(observe_state(desired, session, store, cluster)) == last["before"]
    )
    if restored:
        _drop_last_line(store.path.parent / JOURNAL)
        if not store.path.exists() and not (store.path.parent / JOURNAL).read_bytes():
            store.forget_all()  # back to before the lab's first apply: nothing of it is left
    return RollbackReport(report, restored, len(changes))


def _drop_last_line(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(lines[:-1]))
    tmp.replace(path)
