"""The plan half of the pipeline: load -> observe -> diff -> graph. Wires the stages together;
each stage's logic lives in its own module (apply.py runs a plan).
"""

from __future__ import annotations

import gc
import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from passtplan import resources as res
from passtplan.changes import Action, Change, Plan, fingerprint
from passtplan.desired import Desired, desired_state, destroy_target, lab_id
from passtplan.diff import diff
from passtplan.errors import PasstplanError
from passtplan.lang import models
from passtplan.lang.loader import LoadedLab
from passtplan.preflight import check_names
from passtplan.providers.observe import observe
from passtplan.providers.ownership import OwnershipStore
from passtplan.providers.sandbox.qemu import require_image
from passtplan.providers.session import Session

if TYPE_CHECKING:  # the cluster's modules load only for labs that reach a cluster
    from passtplan.kubevirt import Install
    from passtplan.providers.vm_kubevirt import ClusterContext


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


class ClusterFlags(msgspec.Struct, frozen=True):
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
    from passtplan.providers.resolve import NodePaths
    from passtplan.providers.vm_kubevirt import Cluster, ClusterContext, ClusterOptions, this_node

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
    targets: tuple[str, ...] = (),
) -> Plan:
    """The plan; with `targets`, of those resources only and what must run before them."""
    with long_lived_heap():
        return _make_plan(
            loaded,
            session,
            store,
            sandbox=sandbox,
            destroy=destroy,
            cluster=cluster,
            targets=targets,
        )


def check_passt_forms(loaded: LoadedLab, install: Install) -> None:
    """Version-aware validation: a manifest whose passt form the cluster rejects is an error."""
    from passtplan.kubevirt import early_eth0_removal, passt_form_error

    errors = [
        f"{loaded.path}: vms.{name}: {error}"
        for name, manifest in sorted(loaded.manifests.items())
        if (error := passt_form_error(manifest.passt_form, install))
    ]
    namespaces = loaded.lab.namespaces
    swaps = {n for n, ns in namespaces.items() if _removes(ns.links.get("eth0"))}
    resolves = {
        name: _resolved_by(ns.resolve.model_dump(exclude_none=True)) if ns.resolve else None
        for name, ns in namespaces.items()
    }
    forms = {name: (m.passt_form, install) for name, m in loaded.manifests.items()}
    errors += [f"{loaded.path}: {e}" for e in early_eth0_removal(forms, resolves, swaps)]
    if errors:
        raise PasstplanError("\n".join(errors))


def _removes(link: models.Link | None) -> bool:
    return link is not None and link.state == "absent"


def _resolved_by(resolve: dict[str, object]) -> tuple[str, str]:
    way, value = next(iter(resolve.items()))
    return way, str(value)


def observe_state(
    desired: Desired, session: Session, store: OwnershipStore, cluster: ClusterContext | None
) -> res.State:
    state = observe(desired, store.owned, session, store)
    if cluster is not None:
        from passtplan.providers.vm_kubevirt import observe_vms

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
    targets: tuple[str, ...],
) -> Plan:
    desired = desired_state(
        loaded.lab,
        sandbox=sandbox,
        manifests=loaded.manifests,
        open_files=open_files_limit(),
        links_only=destroy,  # a destroy wants none of the lab's addresses, routes or sysctls
    )
    check_names(desired, store.path.parent.parent, loaded.path)  # before anything is read
    if destroy:
        desired = destroy_target(desired)
    elif cluster is not None:
        check_passt_forms(loaded, cluster.cluster.install())
    state = observe_state(desired, session, store, cluster)
    changes = diff(desired, state)
    if targets:
        from passtplan.targets import targeted  # networkx, as for the graph below

        changes = targeted(changes, desired, targets)
    if sandbox:
        require_image(changes, loaded.path)
    # Built now: a cycle is an error at plan time, not half-way through apply.
    graph = (
        _action_graph(changes, desired)
        if any(c.action is not Action.NOOP for c in changes)
        else None
    )
    node = cluster.node if cluster is not None else None
    return Plan(loaded, desired, state, changes, fingerprint(state), graph, destroy, node, targets)


def _action_graph(changes: list[Change], desired: Desired) -> object:
    """The changes in dependency order, batched. Imported here: networkx costs
    more to import than a no-op plan of the seed takes, and a plan with nothing to do needs no
    graph."""
    from passtplan.graph import batched_graph

    return batched_graph(changes, desired)
