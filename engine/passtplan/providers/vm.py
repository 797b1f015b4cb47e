"""The VM family: a sandbox VM run by the local driver, or a VirtualMachine on a cluster."""

from __future__ import annotations

from collections.abc import Iterator

from passtplan import resources as res
from passtplan.changes import Action, Change
from passtplan.providers.context import ApplyContext, ApplyError


def depends_on(vm: res.Vm | res.ClusterVm) -> Iterator[str]:
    if isinstance(vm, res.Vm) and vm.node is not None:
        yield f"netns.{vm.node}"  # the CNI's host end of the pod's eth0 lives there


def apply(ctx: ApplyContext, change: Change) -> str:
    if isinstance(change.resource, res.ClusterVm):
        return _cluster_vm(ctx, change)
    from passtplan.providers.sandbox.launcher import LocalVmDriver  # noqa: PLC0415 - not to plan

    driver = LocalVmDriver(ctx.store, ctx.manifests)
    resource = change.resource
    assert isinstance(resource, res.Vm)
    if change.action is not Action.UPDATE:  # a repair keeps the pod's namespace
        for handle in ctx.session.handles():
            if handle.namespace.netns == resource.launcher:
                # The pod's namespace is made anew (or goes): an open fd would keep the old one.
                ctx.session.forget(handle.namespace.name)
    if change.action in (Action.DELETE, Action.REPLACE):
        before = change.before
        assert isinstance(before, res.Vm)
        note = driver.delete(before)
        if change.action is Action.DELETE:
            return note
    vm = change.after
    assert isinstance(vm, res.Vm)
    if change.action is Action.UPDATE:
        assert isinstance(change.before, res.Vm)
        return driver.repair(vm, change.before)
    node = ctx.desired.namespaces.get(vm.node) if vm.node else None
    return driver.create(vm, node.netns if node else None)


def _cluster_vm(ctx: ApplyContext, change: Change) -> str:
    if ctx.cluster is None:
        raise ApplyError(change.address, "a VM on a cluster needs a connection to it")
    from passtplan.providers.vm_kubevirt import vmi_address  # noqa: PLC0415 - cluster labs only

    vm = change.resource
    assert isinstance(vm, res.ClusterVm)
    cluster = ctx.cluster.cluster
    if change.action is Action.DELETE:
        cluster.delete_vm(vm.kube_namespace, vm.name)
        return f"deleted VirtualMachine {vm.kube_namespace}/{vm.name}"
    cluster.apply_vm(vm.kube_namespace, ctx.cluster.manifests[vm.name], ctx.desired.lab)
    vmi = cluster.wait_ready(
        vm.kube_namespace,
        vm.name,
        lambda text: print(f"  {change.address}: {text}", flush=True),
    )
    node = vmi.get("status", {}).get("nodeName")
    return f"applied; Running and Ready on {node}, IP {vmi_address(vmi)}"
