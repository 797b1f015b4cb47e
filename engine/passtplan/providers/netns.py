"""The namespace family: what a namespace waits for, and creating, deleting or finding one."""

from __future__ import annotations

from collections.abc import Iterator

from passtplan import resources as res
from passtplan.changes import Action, Change
from passtplan.providers import kernel
from passtplan.providers.context import ApplyContext, ApplyError
from passtplan.providers.session import namespace_file


def depends_on(ns: res.Namespace) -> Iterator[str]:
    if ns.resolve is not None and ns.resolve[0] == "vm":
        yield f"vm.{ns.resolve[1]}"  # the launcher pod's namespace is the VM's


def apply(ctx: ApplyContext, change: Change) -> str:
    ns = change.resource
    assert isinstance(ns, res.Namespace)
    if change.action is Action.CREATE:
        assert ns.netns is not None
        _make_way(ctx, ns.netns, ns.name, change.address)
        ctx.store.claim("namespaces", ns.name)  # before it exists: a kill leaves it known
        kernel.create(ns.netns)
        ctx.session.open(ns)
        return f"created netns {ns.netns}"
    if change.action is Action.DELETE:
        assert ns.netns is not None
        ctx.session.forget(ns.name)
        kernel.remove(ns.netns)
        ctx.store.release_namespace(ns.name)
        return f"deleted netns {ns.netns}"
    if change.action is Action.READ:
        note = "found"
        if namespace_file(ns) is None and ns.resolve and ns.resolve[0] in ("vm", "pod"):
            note = _find_on_node(ctx, ns)
        if namespace_file(ns) is None or ctx.session.open(ns) is None:
            how = ":".join(ns.resolve or ())
            raise ApplyError(change.address, f"cannot find the namespace ({how})")
        return note
    raise ApplyError(change.address, f"cannot {change.action} a namespace")


def _make_way(ctx: ApplyContext, netns: str, name: str, address: str) -> None:
    """The name must be free: a namespace there is never adopted, and the empty file a creation
    cut short leaves is removed only when the lab's record says it was making it."""
    path = kernel.netns_path(netns)
    if kernel.is_namespace(path):
        raise ApplyError(
            address,
            f"netns {netns} already exists and this lab did not make it: remove it "
            f"(ip netns delete {netns}) or rename the lab",
        )
    if path.exists():
        if name not in ctx.store.owned.namespaces:
            raise ApplyError(
                address, f"{path} exists and is not a namespace; remove it, then apply again"
            )
        path.unlink()  # left by this lab's creation of it, cut short


def _find_on_node(ctx: ApplyContext, ns: res.Namespace) -> str:
    """A namespace of a pod: ask the cluster for the pod, find it on this node, attach it."""
    assert ns.resolve is not None and ns.netns is not None
    if ctx.cluster is None:
        raise ApplyError(ns.address, f"resolve: {{{ns.resolve[0]}: ...}} needs a cluster")
    pod = ctx.cluster.pod_of(ns.resolve)
    if pod.node is not None and pod.node != ctx.cluster.node:
        raise ApplyError(
            ns.address,
            f"pod {pod.namespace}/{pod.name} runs on node {pod.node}, not on this node "
            f"({ctx.cluster.node}): run passtplan on {pod.node}",
        )
    from passtplan.providers.resolve import attach, find_pod_netns  # noqa: PLC0415 - node labs only

    found = find_pod_netns(pod, ctx.cluster.paths)
    attach(ns.netns, found.path)
    return f"found pod {pod.namespace}/{pod.name} by its {found.strategy}; attached as {ns.netns}"
