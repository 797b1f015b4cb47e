"""The pipeline: load -> observe -> diff -> graph -> apply -> verify. Wires the stages together;
each stage's logic lives in its own module.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from passtplan import resources as res
from passtplan.changes import Action, ApplyReport, Change, Plan, fingerprint
from passtplan.desired import Desired, desired_state, destroy_target, lab_id
from passtplan.diff import diff
from passtplan.errors import PasstplanError
from passtplan.graph import build_graph, coalesce
from passtplan.kubevirt import Install, passt_form_error
from passtplan.lang.loader import LoadedLab
from passtplan.providers import kernel
from passtplan.providers.actions import Applier
from passtplan.providers.context import ApplyContext
from passtplan.providers.observe import observe
from passtplan.providers.ownership import OwnershipStore
from passtplan.providers.resolve import NodePaths
from passtplan.providers.session import Session
from passtplan.providers.vm_kubevirt import (
    Cluster,
    ClusterContext,
    ClusterOptions,
    observe_vms,
    this_node,
)
from passtplan.verify import VerifyError, verify
from passtplan.walk import Outcome, Status, walk


def require_root(command: str) -> None:
    if os.geteuid() != 0:
        raise PasstplanError(
            f"passtplan {command} needs root: it reads and changes network namespaces "
            "(run it with sudo)"
        )


def store_for(loaded: LoadedLab, *, sandbox: bool) -> OwnershipStore:
    return OwnershipStore(lab_id(loaded.name, sandbox=sandbox))


def open_files_limit() -> int:
    """The hard open-files limit, which passt is started with in the sandbox."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


@contextmanager
def long_lived_heap() -> Iterator[None]:
    """Freeze what exists now (the parsed lab, the observed state) out of the cyclic GC's sight.

    A full collection over a lab of thousands of resources costs tens of milliseconds and would
    run several times per stage; objects made inside the block are still collected as usual.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@dataclass(frozen=True)
class ClusterFlags:
    """How to reach the cluster and who this node is, for labs with VMs on a real node."""

    kubeconfig: str | None = None
    context: str | None = None
    node: str | None = None
    kubelet_root: str = "/var/lib/kubelet"
    wait: float = 300.0


def cluster_context(
    loaded: LoadedLab, *, sandbox: bool, flags: ClusterFlags | None
) -> ClusterContext | None:
    """A connection to the cluster, for labs with VMs outside the sandbox; None otherwise."""
    if sandbox or not loaded.lab.vms:
        return None
    flags = flags or ClusterFlags()
    options = ClusterOptions(flags.kubeconfig, flags.context, flags.wait)
    return ClusterContext(
        cluster=Cluster(options),
        manifests={name: m.body for name, m in loaded.manifests.items()},
        lab_vms={name: vm.namespace for name, vm in loaded.lab.vms.items()},
        node=flags.node or this_node(),
        paths=NodePaths(kubelet=Path(flags.kubelet_root)),
    )


def make_plan(
    loaded: LoadedLab,
    session: Session,
    store: OwnershipStore,
    *,
    sandbox: bool,
    destroy: bool,
    cluster: ClusterContext | None = None,
) -> Plan:
    with long_lived_heap():
        return _make_plan(loaded, session, store, sandbox=sandbox, destroy=destroy, cluster=cluster)


def check_passt_forms(loaded: LoadedLab, install: Install) -> None:
    """Version-aware validation: a manifest whose passt form the cluster rejects is an error."""
    errors = [
        f"{loaded.path}: vms.{name}: {error}"
        for name, manifest in sorted(loaded.manifests.items())
        if (error := passt_form_error(manifest.passt_form, install))
    ]
    if errors:
        raise PasstplanError("\n".join(errors))


def _observe(
    desired: Desired, session: Session, store: OwnershipStore, cluster: ClusterContext | None
) -> res.State:
    state = observe(desired, store.owned, session, store)
    if cluster is not None:
        wanted = {n: v for n, v in desired.vms.items() if isinstance(v, res.ClusterVm)}
        state.vms.update(observe_vms(cluster.cluster, wanted, cluster.manifests, desired.lab))
    return state


def _make_plan(
    loaded: LoadedLab,
    session: Session,
    store: OwnershipStore,
    *,
    sandbox: bool,
    destroy: bool,
    cluster: ClusterContext | None,
) -> Plan:
    desired = desired_state(
        loaded.lab, sandbox=sandbox, manifests=loaded.manifests, open_files=open_files_limit()
    )
    if destroy:
        desired = destroy_target(desired)
    elif cluster is not None:
        check_passt_forms(loaded, cluster.cluster.install())
    state = _observe(desired, session, store, cluster)
    changes = diff(desired, state)
    # Built now: a cycle is an error at plan time, not half-way through apply.
    graph = coalesce(build_graph(changes, desired))
    node = cluster.node if cluster is not None else None
    return Plan(loaded, desired, state, changes, fingerprint(state), graph, destroy, node)


def apply_plan(
    plan: Plan,
    session: Session,
    store: OwnershipStore,
    *,
    workers: int = 4,
    cluster: ClusterContext | None = None,
) -> ApplyReport:
    with long_lived_heap():
        return _apply_plan(plan, session, store, workers=workers, cluster=cluster)


def _apply_plan(
    plan: Plan,
    session: Session,
    store: OwnershipStore,
    *,
    workers: int,
    cluster: ClusterContext | None,
) -> ApplyReport:
    started = time.perf_counter()
    graph = plan.graph
    applier = Applier(ApplyContext(session, plan.desired, store, cluster))
    members: dict[str, Outcome] = {}

    def visit(node: str) -> str:
        changes: list[Change] = graph.nodes[node]["changes"]
        if len(changes) == 1:
            return applier(changes[0])
        begun = time.perf_counter()
        ordered = sorted(changes, key=lambda c: c.action is not Action.DELETE)  # deletes first
        failed = 0
        for change, note, error in applier.batch(ordered):
            seconds = (time.perf_counter() - begun) / len(changes)
            status = Status.DONE if error is None else Status.FAILED
            failed += error is not None
            members[change.address] = Outcome(change.address, status, error or note or "", seconds)
        if failed:
            raise PasstplanError(f"{failed} of {len(changes)} changes failed")
        return f"{len(changes)} changes in one batch"

    try:
        outcomes = walk(
            graph,
            visit,
            workers=workers,
            inline=lambda node: all(_nothing_to_do(c) for c in graph.nodes[node]["changes"]),
        )
    finally:
        store.flush()  # what was made is recorded even if the walk broke off
    walked = time.perf_counter() - started
    results = []
    for node, outcome in outcomes.items():
        for change in graph.nodes[node]["changes"]:
            member = members.get(change.address)
            if member is None:
                member = Outcome(change.address, outcome.status, outcome.detail, outcome.seconds)
            results.append((change, member))
    order = {c.address: i for i, c in enumerate(plan.changes)}
    results.sort(key=lambda pair: order[pair[0].address])
    write_journal(store, results)
    verify_errors: list[VerifyError] = []
    if all(o.status is Status.DONE for _, o in results):
        verify_errors = verify_live(plan, session, store, cluster)
        if plan.destroy and not verify_errors:
            detach_found_namespaces(plan.desired, session)
            store.forget_all()  # nothing of the lab is left: neither record nor journal
    return ApplyReport(plan, results, verify_errors, time.perf_counter() - started, walked)


def verify_live(
    plan: Plan, session: Session, store: OwnershipStore, cluster: ClusterContext | None = None
) -> list[VerifyError]:
    """Re-read the live state and hold it against the lab."""
    return verify(plan.desired, _observe(plan.desired, session, store, cluster))


def detach_found_namespaces(desired: Desired, session: Session) -> None:
    """The names apply gave pods' namespaces (LAB-N) are the lab's: they go with it. The pods'
    namespaces themselves are Kubernetes' and stay until their pods go."""
    for ns in desired.namespaces.values():
        if ns.resolve is not None and ns.resolve[0] in ("vm", "pod") and ns.netns:
            session.forget(ns.name)
            kernel.remove(ns.netns)


def _nothing_to_do(change: Change) -> bool:
    """No-ops, and what goes with its namespace or veth peer: done on the walker's own thread."""
    return change.action is Action.NOOP or change.covered_by is not None


UNDO = {
    Action.CREATE: Action.DELETE,
    Action.DELETE: Action.CREATE,
    Action.UPDATE: Action.UPDATE,
    Action.REPLACE: Action.REPLACE,
}


def write_journal(store: OwnershipStore, results: list[tuple[Change, Outcome]]) -> None:
    """Every completed action with what undoes it, for the rollback that builds on this.

    One line per apply, holding its entries: thousands of changes cost one encoder call.
    """
    entries = [
        {
            "address": change.address,
            "action": str(change.action),
            "undo": str(UNDO[change.action]),
            "before": res.attributes(change.before),
            "after": res.attributes(change.after),
        }
        for change, outcome in results
        if outcome.status is Status.DONE and change.action in UNDO and not change.covered_by
    ]
    if not entries:
        return
    path = store.path.parent / "journal.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as journal:
        journal.write(json.dumps({"time": time.time(), "entries": entries}) + "\n")
