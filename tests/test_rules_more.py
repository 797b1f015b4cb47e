"""More ordering rules one at a time, on changes written here: each test fails when the rule it
names is broken (scripts/mutation.py checks that, mutant by mutant)."""

from __future__ import annotations

import pytest

from passtplan import resources as res
from passtplan.changes import Action, Change
from passtplan.desired import Desired
from passtplan.graph import CycleError, batched_graph, build_graph

LAB = "g"


def _create(resource: res.Resource) -> Change:
    return Change(resource.address, Action.CREATE, None, resource)


def _same(resource: res.Resource, action: Action) -> Change:
    return Change(resource.address, action, resource, resource)


def test_a_cycle_entered_from_outside_is_still_a_cycle() -> None:
    """The bridge `a0` waits for two links, one of them in the cycle: counting only one of its
    waits would let it through and miss the cycle."""
    changes = [
        _create(res.Link("a", "x0", kind="bridge")),
        _create(res.Link("a", "a0", kind="bridge", master="a1", dev="x0")),
        _create(res.Link("a", "a1", kind="bridge", master="a0")),
    ]
    with pytest.raises(CycleError) as caught:
        build_graph(changes, Desired(LAB, False))
    assert caught.value.cycle == ["link.a/a0", "link.a/a1"]


def test_addresses_that_wait_for_different_links_are_not_one_batch() -> None:
    one, two = res.Address("a", "v0", "10.0.0.1/24"), res.Address("a", "w0", "10.1.0.1/24")
    changes = [
        _create(res.Link("a", "v0", kind="bridge")),
        _create(res.Link("a", "w0", kind="bridge")),
        _create(one),
        _create(two),
    ]
    merged = batched_graph(changes, Desired(LAB, False))
    assert set(merged.nodes) == {c.address for c in changes}
    assert merged.has_edge("link.a/v0", one.address)
    assert not merged.has_edge("link.a/v0", two.address)


def _repaired_vm_changes() -> list[Change]:
    pod = res.Namespace("pod", None, res.NamespaceRole.RESOLVED, ("vm", "v1"))
    vm = res.ClusterVm("v1", "default", "binding")
    return [
        _same(pod, Action.NOOP),
        _same(vm, Action.UPDATE),
        _same(res.Link("pod", "eth0", kind="veth"), Action.NOOP),
        _create(res.Link("pod", "m1", kind="macvlan")),
        _create(res.Address("pod", "m1", "10.0.0.2/24")),
    ]


def test_a_repaired_vm_waits_for_its_pods_network() -> None:
    graph = build_graph(_repaired_vm_changes(), Desired(LAB, False))
    assert graph.has_edge("link.pod/m1", "vm.v1")
    assert graph.has_edge("address.pod/m1[10.0.0.2/24]", "vm.v1")
    # what is already there orders nothing, and the pod's namespace is kept, not waited for
    assert not graph.has_edge("link.pod/eth0", "vm.v1")
    assert not graph.has_edge("netns.pod", "vm.v1")
    assert not graph.has_edge("vm.v1", "netns.pod")
