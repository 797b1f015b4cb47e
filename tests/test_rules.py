"""The ordering and safety rules one at a time, on changes and states written here: each test
fails when its rule is removed (scripts/mutation.py checks that, mutant by mutant)."""

from __future__ import annotations

import msgspec
import networkx as nx
import pytest

from passtplan import resources as res
from passtplan.changes import Action, Change
from passtplan.desired import Desired, desired_state, destroy_target, netns_name
from passtplan.diff import ConflictError, diff, route_text
from passtplan.graph import (
    CycleError,
    batched_graph,
    build_graph,
    to_dot,
    to_mermaid,
    without_redundant_edges,
)
from passtplan.lang.loader import load_lab
from passtplan.subnets import SubnetIndex
from passtplan.verify import VerifyError, verify
from tests.conftest import FIXTURES
from tests.observed import observed_state

CASES = FIXTURES / "diff"
LAB = "g"
OWNER = f"{res.OWNER_PREFIX}{LAB}"


def _delete(resource: res.Resource, covered_by: str | None = None) -> Change:
    return Change(resource.address, Action.DELETE, resource, None, covered_by=covered_by)


def _create(resource: res.Resource) -> Change:
    return Change(resource.address, Action.CREATE, None, resource)


def _case(name: str, *, sandbox: bool = False) -> tuple[Desired, res.State]:
    loaded = load_lab(CASES / name / "lab.yaml")
    desired = desired_state(
        loaded.lab, sandbox=sandbox, manifests=loaded.manifests, open_files=20000
    )
    return desired, observed_state(CASES / name / "observed.yaml", desired.lab)


# -- graph: VM contents first --------------------------------------------------------------------


def _pod_changes(vm_action: Action) -> list[Change]:
    pod = res.Namespace("pod", None, res.NamespaceRole.RESOLVED, ("vm", "v1"))
    vm = res.ClusterVm("v1", "default", "binding")
    return [
        Change(pod.address, Action.NOOP, pod, pod),
        _delete(res.Link("pod", "m0", kind="macvlan")),
        _delete(res.Address("pod", "m0", "10.0.0.2/24")),
        _create(res.Link("pod", "n0", kind="bridge")),
        _delete(res.Link("other", "x0", kind="bridge")),
        Change(vm.address, vm_action, vm if vm_action is Action.DELETE else None, None),
    ]


def test_what_is_removed_in_a_vms_pod_goes_before_the_vm() -> None:
    graph = build_graph(_pod_changes(Action.DELETE), Desired(LAB, False))
    assert graph.has_edge("link.pod/m0", "vm.v1")
    assert graph.has_edge("address.pod/m0[10.0.0.2/24]", "vm.v1")
    assert not graph.has_edge("link.pod/n0", "vm.v1")  # only removals wait for nothing
    assert not graph.has_edge("link.other/x0", "vm.v1")  # another namespace


def test_a_vm_that_stays_orders_nothing() -> None:
    changes = [c for c in _pod_changes(Action.DELETE) if not c.address.startswith("vm.")]
    graph = build_graph(changes, Desired(LAB, False))
    assert "vm.v1" not in graph


def test_sandbox_destroy_removes_the_pods_contents_before_the_vm() -> None:
    desired, state = _case("vm-sandbox-destroyed", sandbox=True)
    desired = destroy_target(desired)
    graph = build_graph(diff(desired, state), desired)
    assert nx.has_path(graph, "link.pod/macvlan1", "vm.passt-macvlan")


# -- graph: covered deletes, absent first, cycles, coalescing ------------------------------------


def test_a_covered_delete_waits_for_what_covers_it_and_is_not_absent_first() -> None:
    ns = res.Namespace("a", "g-a", res.NamespaceRole.CREATED)
    changes = [
        _delete(ns),
        _delete(res.Link("a", "v0", kind="veth"), covered_by=ns.address),
        _delete(res.Link("a", "v1", kind="veth"), covered_by="netns.elsewhere"),
        _create(res.Link("a", "new", kind="bridge")),
    ]
    graph = build_graph(changes, Desired(LAB, False))
    assert graph.has_edge("link.a/v0", "netns.a")
    assert set(graph.nodes) == {c.address for c in changes}  # no node for what is not planned
    assert not graph.has_edge("link.a/v0", "link.a/new")
    assert not graph.has_edge("link.a/v1", "link.a/new")


def test_absent_first_skips_only_the_removals_that_must_wait_for_an_addition() -> None:
    changes = [
        _create(res.Link("a", "new", kind="bridge")),
        _delete(res.Link("a", "m0", kind="macvlan", parent=("a", "new"))),
        _delete(res.Link("a", "old", kind="bridge")),
    ]
    graph = build_graph(changes, Desired(LAB, False))  # no cycle
    assert graph.has_edge("link.a/new", "link.a/m0")
    assert not graph.has_edge("link.a/m0", "link.a/new")
    assert graph.has_edge("link.a/old", "link.a/new")


def _bridge(name: str, master: str) -> Change:
    return _create(res.Link("a", name, kind="bridge", master=master))


def test_the_shortest_cycle_is_named() -> None:
    changes = [
        _bridge("a0", "a1"),
        _bridge("a1", "a2"),
        _bridge("a2", "a0"),
        _bridge("b0", "b1"),
        _bridge("b1", "b0"),
    ]
    with pytest.raises(CycleError) as caught:
        build_graph(changes, Desired(LAB, False))
    assert caught.value.cycle == ["link.a/b0", "link.a/b1"]


def test_address_changes_that_wait_for_the_same_things_are_one_batch() -> None:
    ns = res.Namespace("a", "g-a", res.NamespaceRole.CREATED)
    link, other = res.Link("a", "v0", kind="bridge"), res.Link("a", "w0", kind="bridge")
    one, two = res.Address("a", "v0", "10.0.0.1/24"), res.Address("a", "v0", "10.0.0.2/24")
    alone = res.Address("a", "w0", "10.1.0.1/24")  # waits for another link: a batch of its own
    kept = res.Address("a", "v0", "10.0.0.3/24")
    later = res.Address("a", "v0", "10.0.0.4/24")
    route = res.Route("a", "10.8.0.0/16", 4, via="10.0.0.9")  # after both addresses (gateway)
    changes = [
        _create(ns),
        _create(link),
        _create(other),
        _create(one),
        _create(two),
        _create(alone),
        Change(kept.address, Action.NOOP, kept, kept),
        Change(later.address, Action.CREATE, None, later, deferred=True),
        _create(route),
    ]
    merged = batched_graph(changes, Desired(LAB, False))
    batch = f"address.a[2 from {one.address}]"
    assert set(merged.nodes) == {
        "netns.a",
        "link.a/v0",
        "link.a/w0",
        batch,
        alone.address,
        kept.address,
        later.address,
        route.address,
    }
    assert [c.address for c in merged.nodes[batch]["changes"]] == [one.address, two.address]
    assert merged.has_edge("link.a/v0", batch)
    assert merged.has_edge("netns.a", batch)
    assert merged.has_edge(batch, route.address)
    assert merged.nodes["link.a/v0"]["changes"] == [changes[1]]


# -- diff: conflicts, cascades, VMs ---------------------------------------------------------------


def test_a_conflict_names_each_link_on_its_own_line() -> None:
    desired, state = _case("conflict-unowned")
    with pytest.raises(ConflictError) as caught:
        diff(desired, state)
    assert [c.split(":")[0] for c in caught.value.conflicts] == [
        "link.a/v0",
        "link.a/x0",
        "link.node/d1",
    ]
    assert str(caught.value) == "\n".join(caught.value.conflicts)


def test_a_conflict_whose_veth_peer_is_created_is_still_a_conflict() -> None:
    desired, state = _case("conflict-unowned")
    namespace = state.namespaces["a"]
    assert namespace is not None
    del namespace.links["v1"]
    with pytest.raises(ConflictError):
        diff(desired, state)


def _pair_state(first: str, end: res.Link, other: res.Link) -> res.State:
    """Namespaces a and b, observed in the order given (observe follows the lab's order)."""
    namespaces = {n: res.Namespace(n, f"g-{n}", res.NamespaceRole.CREATED) for n in ("a", "b")}
    links = {end.namespace: end, other.namespace: other}
    return res.State(
        namespaces={
            n: res.NamespaceState(namespaces[n], links={links[n].name: links[n]})
            for n in (first, "b" if first == "a" else "a")
        },
        owned=res.Ownership(namespaces={"a", "b"}),
    )


def _pair_desired(absent: set[res.Ref] | None = None) -> Desired:
    namespaces = {n: res.Namespace(n, f"g-{n}", res.NamespaceRole.CREATED) for n in ("a", "b")}
    return Desired(LAB, False, namespaces=namespaces, absent_links=absent or set())


def test_a_veth_whose_peer_is_unknown_goes_alone() -> None:
    end = res.Link("a", "x0", "veth", owner=OWNER)  # peer None: the kernel did not say where
    other = res.Link("b", "x0", "veth", peer=("c", "x0"), owner="passtplan:another")
    changes = {c.address: c for c in diff(_pair_desired(), _pair_state("a", end, other))}
    assert changes["link.a/x0"].action is Action.DELETE
    assert "link.b/x0" not in changes


@pytest.mark.parametrize("first", ["a", "b"])
def test_removing_an_owned_veth_pair_is_ordered(first: str) -> None:
    """The end met first is deleted and covers the other; whichever it is, no cycle."""
    end = res.Link("a", "x0", "veth", peer=("b", "x0"), owner=OWNER)
    other = res.Link("b", "x0", "veth", peer=("a", "x0"), owner=OWNER)
    desired = _pair_desired()
    changes = {c.address: c for c in diff(desired, _pair_state(first, end, other))}
    graph = build_graph(list(changes.values()), desired)
    deleted, covered = ("link.a/x0", "link.b/x0") if first == "a" else ("link.b/x0", "link.a/x0")
    assert changes[covered].covered_by == deleted
    assert list(graph.edges) == [(covered, deleted)]  # the covering edge alone orders them


def test_the_higher_named_end_of_a_veth_declared_absent() -> None:
    end = res.Link("a", "y0", "veth", peer=("b", "y0"))
    other = res.Link("b", "y0", "veth", peer=("a", "y0"))
    desired = _pair_desired({("b", "y0")})
    changes = diff(desired, _pair_state("a", end, other))
    graph = build_graph(changes, desired)  # no cycle
    assert graph.has_edge("link.a/y0", "link.b/y0")


def test_recreating_a_vxlans_dev_recreates_the_vxlan() -> None:
    ns = res.Namespace("a", "g-a", res.NamespaceRole.CREATED)
    bridge = res.Link("a", "br", kind="bridge", owner=OWNER)
    vxlan = res.Link("a", "vx", kind="vxlan", vni=5, dev="br", owner=OWNER)
    desired = Desired(
        LAB,
        False,
        namespaces={"a": ns},
        links={bridge.address: bridge, vxlan.address: vxlan},
    )
    state = res.State(
        namespaces={"a": res.NamespaceState(ns, links={"vx": vxlan})},
        owned=res.Ownership(namespaces={"a"}),
    )
    changes = {c.address: c for c in diff(desired, state)}
    assert changes["link.a/br"].action is Action.CREATE
    assert changes["link.a/vx"].action is Action.REPLACE
    assert changes["link.a/vx"].reason == "its dev is recreated"


def _vm(name: str, **fields: str) -> res.Vm:
    base = {
        "launcher": f"g-{name}",
        "guest": f"g-vm-{name}",
        "pod_address": "10.233.70.4/32",
        "gateway": "169.254.1.1",
        "tcp_ports": "22",
        "udp_ports": "",
        "forwarding": "tcp 22",
    }
    return res.Vm(name, **{**base, **fields})


def _vm_changes(desired: dict[str, res.Vm], observed: dict[str, res.Vm]) -> dict[str, Change]:
    state = res.State(vms=dict(observed))
    state.owned.vms = set(observed)
    return {c.address: c for c in diff(Desired(LAB, True, vms=dict(desired)), state)}


def test_a_sandbox_vm_is_replaced_for_its_setup_and_repaired_for_what_runs() -> None:
    want = {n: _vm(n) for n in ("v0", "v1", "v2", "v3", "v4")}
    have = {
        "v1": _vm("v1", tcp_ports="80", udp_ports="53", passt="stopped"),
        "v2": _vm("v2", passt="stopped"),
        "v3": _vm("v3", passt="exited", guest_state="stopped"),
        "v4": _vm("v4"),
        "v9": _vm("v9"),
    }
    changes = _vm_changes(want, have)
    assert {a: (c.action, c.reason, c.changed) for a, c in changes.items()} == {
        "vm.v0": (Action.CREATE, "not running", ()),
        "vm.v1": (
            Action.REPLACE,
            "tcp_ports: 80 -> 22, udp_ports: 53 -> none",
            ("tcp_ports", "udp_ports"),
        ),
        "vm.v2": (Action.UPDATE, "repair: passt is stopped", ("passt",)),
        "vm.v3": (
            Action.UPDATE,
            "repair: passt is exited, guest is stopped",
            ("passt", "guest_state"),
        ),
        "vm.v4": (Action.NOOP, "", ()),
        "vm.v9": (Action.DELETE, "no longer in the plan", ()),
    }
    for name in ("v1", "v2", "v4"):
        assert changes[f"vm.{name}"].before == have[name]
        assert changes[f"vm.{name}"].after == want[name]


def test_a_cluster_vm_follows_its_drift_and_phase_and_only_this_labs_go() -> None:
    def cluster(name: str, **fields: object) -> res.ClusterVm:
        return res.ClusterVm(name, "default", "binding", **fields)  # type: ignore[arg-type]

    want = {n: cluster(n) for n in ("c1", "c2", "c3")}
    have = {
        "c1": cluster("c1", drift=("spec.a", "spec.b")),
        "c2": cluster("c2", phase="Scheduling", drift=()),
        "c3": cluster("c3"),
        "c8": cluster("c8", owner=LAB),
        "c9": cluster("c9", owner="another"),
    }
    state = res.State(vms=dict(have))
    desired = Desired(LAB, False, vms=dict(want))
    changes = {c.address: c for c in diff(desired, state)}
    assert {a: (c.action, c.reason, c.changed) for a, c in changes.items()} == {
        "vm.c1": (Action.UPDATE, "the live VM differs in spec.a, spec.b", ("drift",)),
        "vm.c2": (
            Action.UPDATE,
            "its VMI is Scheduling: wait until Running and Ready",
            ("phase",),
        ),
        "vm.c3": (Action.NOOP, "", ()),
        "vm.c8": (Action.DELETE, "made by this lab, no longer in the plan", ()),
    }
    assert changes["vm.c1"].before == have["c1"]
    assert changes["vm.c1"].after == want["c1"]
    assert changes["vm.c2"].before == have["c2"]
    assert changes["vm.c3"].before == have["c3"]
    assert changes["vm.c3"].after == want["c3"]
    errors = verify(desired, state)
    assert VerifyError("vm.c1", "drift", "", "spec.a/spec.b") in errors
    assert VerifyError("vm.c2", "phase", "Running", "Scheduling") in errors


# -- verify: each action's error ------------------------------------------------------------------


def test_verify_says_present_absent_or_pending_for_whole_resources() -> None:
    desired, state = _case("veth-peer-cascade")
    errors = {e.address: e for e in verify(desired, state)}
    assert errors["link.a/x0"] == VerifyError("link.a/x0", "", "absent", "present")
    assert errors["address.b/mv[10.1.0.2/24]"] == VerifyError(
        "address.b/mv[10.1.0.2/24]", "", "present", "missing"
    )
    assert errors["link.a/v0"] == VerifyError("link.a/v0", "", "as planned", "replace pending")
    assert str(errors["link.a/x0"]) == "link.a/x0: want absent, have present"


# -- the link field rules and subnets -------------------------------------------------------------


def _macvlan(mode: str) -> res.Link:
    return res.Link("a", "m", "macvlan", mode=mode)


@pytest.mark.parametrize(
    ("want", "have", "replace", "update"),
    [
        (res.Link("a", "d", mtu=9000), res.Link("a", "d", mtu=1500), (), ("mtu",)),
        (_macvlan("passthru"), _macvlan("vepa"), ("mode",), ("mode",)),
        (_macvlan("vepa"), _macvlan("passthru"), ("mode",), ("mode",)),
        (_macvlan("bridge"), _macvlan("vepa"), (), ("mode",)),
        (res.Link("a", "t", "tap", tap_owner=1), res.Link("a", "t", "bridge"), ("kind",), ()),
        (res.Link("a", "v", "veth", peer=("b", "v")), res.Link("a", "v", "veth"), ("peer",), ()),
    ],
)
def test_link_fields_replace_or_update(
    want: res.Link, have: res.Link, replace: tuple[str, ...], update: tuple[str, ...]
) -> None:
    assert res.replace_fields(want, have) == replace
    assert res.update_fields(want, have) == update


def test_subnets_hold_an_ip_longest_prefix_first() -> None:
    index: SubnetIndex[str] = SubnetIndex()
    index.add("a", "10.0.0.1/16", "wide")
    index.add("a", "10.0.0.1/24", "narrow")
    index.add("a", "10.0.0.1/8", "widest")
    index.add("b", "10.0.0.1/24", "elsewhere")
    assert list(index.holding("a", "10.0.0.9")) == ["narrow", "wide", "widest"]
    assert list(index.holding("a", "10.1.0.9")) == ["widest"]
    assert list(index.holding("a", "fd00::1")) == []


def test_the_graph_renders_as_dot_and_mermaid() -> None:
    ns = res.Namespace("a", "g-a", res.NamespaceRole.CREATED)
    link = res.Link("a", "v0", kind="bridge")
    graph = build_graph([_create(link), _create(ns)], Desired(LAB, False))
    assert to_dot(graph) == (
        "digraph passtplan {\n"
        "  rankdir=LR;\n"
        '  node [shape=box, fontname="monospace"];\n'
        '  "link.a/v0" [label="link.a/v0\\ncreate"];\n'
        '  "netns.a" [label="netns.a\\ncreate"];\n'
        '  "netns.a" -> "link.a/v0";\n'
        "}\n"
    )
    assert to_mermaid(graph) == (
        'flowchart LR\n  n0["link.a/v0<br/>create"]\n  n1["netns.a<br/>create"]\n  n1 --> n0\n'
    )


def test_the_drawn_graph_leaves_out_edges_another_path_implies() -> None:
    ns = res.Namespace("a", "g-a", res.NamespaceRole.CREATED)
    bridge = res.Link("a", "br0", kind="bridge")
    port = res.Link("a", "p0", kind="bridge", master="br0")
    graph = build_graph([_create(ns), _create(bridge), _create(port)], Desired(LAB, False))
    assert graph.has_edge("netns.a", "link.a/p0")  # the namespace first, and the bridge first
    reduced = without_redundant_edges(graph)
    assert sorted(reduced.edges) == [("link.a/br0", "link.a/p0"), ("netns.a", "link.a/br0")]
    assert reduced.nodes["link.a/p0"]["change"] == graph.nodes["link.a/p0"]["change"]


def test_no_two_labs_name_the_same_namespace() -> None:
    """A dash joined `rzq` + `a-b` and `rzq-a` + `b` into one name; a dot is in no DNS label."""
    assert netns_name("rzq", "a-b") != netns_name("rzq-a", "b")
    assert netns_name("rzq", "vm.a") != netns_name("rzq", "vm-a")  # a guest is no namespace


def test_a_qemu_guests_cloud_init_change_makes_a_new_guest() -> None:
    """The guest is written from the manifest's cloud-init and host name (its overlay): edited,
    they replace the VM, as a changed VMI would; the stand-in, which applies neither, stays."""
    desired, state = _case("vm-half-swapped", sandbox=True)
    assert desired.vms["passt-macvlan"] == msgspec.structs.replace(
        state.vms["passt-macvlan"], passt="running", guest_state="running"
    )
    state.vms["passt-macvlan"] = msgspec.structs.replace(
        state.vms["passt-macvlan"], guest_config="0123456789ab"
    )
    [change] = [c for c in diff(desired, state) if c.address == "vm.passt-macvlan"]
    assert change.action is Action.REPLACE
    assert (
        change.reason
        == f"guest_config: 0123456789ab -> {desired.vms['passt-macvlan'].guest_config}"
    )
    standin, _ = _case("vm-sandbox-standin", sandbox=True)
    assert standin.vms["passt-macvlan"].guest_config is None  # it applies no cloud-init


@pytest.mark.parametrize(
    ("route", "text"),
    [
        (res.Route("n", "10.8.0.0/16", 4, dev="d0"), "dev d0"),
        (res.Route("n", "10.8.0.0/16", 4, via="10.0.0.1"), "via 10.0.0.1"),
        (
            res.Route("n", "10.8.0.0/16", 4, via="10.0.0.1", dev="d0", onlink=True),
            "via 10.0.0.1 dev d0 onlink",
        ),
        (res.Route("n", "10.8.0.0/16", 4), "as it was"),
    ],
)
def test_a_route_given_back_reads_as_ip_route_writes_it(route: res.Route, text: str) -> None:
    """Only what the route has: no empty via or dev, onlink when set."""
    assert route_text(route) == text
