"""The dependency rules, in one place, and the action graph built from them.

An edge u -> v means u runs before v. Things are made in dependency order (a namespace before its
links, a macvlan's parent before it, a bridge before its ports, a link before its addresses,
addresses before the routes that leave through them) and destroyed in the reverse order. Within a
namespace, links go before links come, as nmstate removes absent interfaces first.
"""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx

from passtplan import resources as res
from passtplan.changes import Action, Change
from passtplan.cycles import find_cycles
from passtplan.depends import dependencies
from passtplan.desired import Desired, netns_name
from passtplan.errors import PasstplanError
from passtplan.subnets import SubnetIndex

MAKING = {Action.CREATE, Action.UPDATE, Action.REPLACE, Action.NOOP, Action.READ}
FINDING = {Action.CREATE, Action.READ, Action.REPLACE}


class CycleError(PasstplanError):
    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join([*cycle, cycle[0]]))


Edges = dict[str, set[str]]  # node -> the nodes that run after it
BATCHABLE = ("address.", "route.")  # changes the rtnl codec applies many per write


def build_graph(changes: list[Change], desired: Desired) -> nx.DiGraph:
    """The action graph: a node per change (its `change`), an edge per ordering rule."""
    edges = dependency_edges(changes, desired)
    graph = nx.DiGraph()
    graph.add_nodes_from((c.address, {"change": c}) for c in changes)
    graph.add_edges_from((u, v) for u, after in edges.items() for v in after)
    return graph


def batched_graph(changes: list[Change], desired: Desired) -> nx.DiGraph:
    """The action graph as apply walks it: address or route changes of one namespace that wait
    for exactly the same things, and are waited for by exactly the same things, are one node,
    applied in one batch. Every node has `changes`, the list of changes it stands for."""
    edges = dependency_edges(changes, desired)
    before: Edges = {c.address: set() for c in changes}
    for u, after in edges.items():
        for v in after:
            before[v].add(u)
    groups: dict[tuple[str, str, frozenset[str], frozenset[str]], list[str]] = {}
    for change in changes:
        node = change.address
        if node.startswith(BATCHABLE) and change.action is not Action.NOOP and not change.deferred:
            namespace = change.resource.namespace  # type: ignore[union-attr]
            key = (
                node.split(".", 1)[0],
                namespace,
                frozenset(before[node]),
                frozenset(edges[node]),
            )
            groups.setdefault(key, []).append(node)
    member_of: dict[str, str] = {}
    for (kind, namespace, _, _), nodes in groups.items():
        if len(nodes) > 1:
            member_of.update(
                dict.fromkeys(nodes, f"{kind}.{namespace}[{len(nodes)} from {min(nodes)}]")
            )
    members: dict[str, list[Change]] = {}
    for change in changes:
        members.setdefault(member_of.get(change.address, change.address), []).append(change)
    graph = nx.DiGraph()
    graph.add_nodes_from((node, {"changes": group}) for node, group in members.items())
    graph.add_edges_from(
        {(member_of.get(u, u), member_of.get(v, v)) for u, after in edges.items() for v in after}
    )
    return graph


def dependency_edges(changes: list[Change], desired: Desired) -> Edges:
    """Every ordering rule applied to the changes; raises CycleError naming a whole cycle."""
    by_address = {c.address: c for c in changes}
    edges: Edges = {c.address: set() for c in changes}
    for change in changes:
        for u, v in _edges(change, by_address, desired):
            edges[u].add(v)
    _absent_first(edges, changes)
    _vm_contents_first(edges, changes, desired.lab)
    _gateway_addresses_first(edges, changes)
    if not _acyclic(edges):
        cycles = find_cycles({u: list(after) for u, after in edges.items() if after})
        raise CycleError(min(cycles, key=lambda cycle: (len(cycle), cycle)))  # the shortest
    return edges


def _acyclic(edges: Edges) -> bool:
    """Kahn's algorithm: every node can be ordered when nothing waits in a cycle. Cheaper than
    finding the cycle, which is done only when there is one."""
    waiting = dict.fromkeys(edges, 0)
    for after in edges.values():
        for v in after:
            waiting[v] += 1
    ready = [node for node, count in waiting.items() if count == 0]
    ordered = 0
    while ready:
        ordered += 1
        for v in edges[ready.pop()]:
            waiting[v] -= 1
            if waiting[v] == 0:
                ready.append(v)
    return ordered == len(edges)


def _edges(
    change: Change, by_address: dict[str, Change], desired: Desired
) -> Iterator[tuple[str, str]]:
    if change.covered_by is not None and change.covered_by in by_address:
        yield change.address, change.covered_by
    resources = [r for r in (change.before, change.after) if r is not None]
    for resource in resources:
        for dep in dependencies(resource, desired):
            other = by_address.get(dep)
            if other is None or dep == change.address:
                continue
            if dep == change.covered_by or other.covered_by == change.address:
                continue  # one goes with the other: the covering edge alone orders them
            if isinstance(resource, res.Namespace) and other.action is Action.UPDATE:
                continue  # a repaired VM keeps its pod's namespace, and waits for its network
            if change.action is Action.DELETE and other.action is Action.DELETE:
                yield change.address, dep  # dependents go first
            elif change.action in MAKING and other.action in MAKING:
                yield dep, change.address
            elif change.action is Action.DELETE and other.action in FINDING:
                yield dep, change.address  # what is removed from a namespace waits for it


def _vm_contents_first(edges: Edges, changes: list[Change], lab: str) -> None:
    """What the lab removes inside a VM's launcher namespace goes before the VM itself; and a VM
    repaired (passt or its guest restarted) waits for its pod's network to be complete, since
    passt will not start in a pod without a routable interface (after a kill mid-swap, the
    pod may have neither eth0 nor a routed macvlan1)."""
    vm_of = {
        c.resource.name: f"vm.{c.resource.resolve[1]}"
        for c in changes
        if isinstance(c.resource, res.Namespace)
        and c.resource.resolve is not None
        and c.resource.resolve[0] == "vm"
    }
    # A destroy no longer names the pod's namespace; the sandbox's VM still says where it is.
    launchers = {c.resource.launcher: c.address for c in changes if isinstance(c.resource, res.Vm)}
    for change in changes:
        namespace = getattr(change.resource, "namespace", None)
        if namespace is not None and netns_name(lab, namespace) in launchers:
            vm_of.setdefault(namespace, launchers[netns_name(lab, namespace)])
    actions = {c.address: c.action for c in changes if c.address.startswith("vm.")}
    if not any(a in (Action.DELETE, Action.UPDATE) for a in actions.values()):
        return
    for change in changes:
        vm = vm_of.get(getattr(change.resource, "namespace", None) or "")
        if vm is None or change.action is Action.NOOP:
            continue
        if actions.get(vm) is Action.UPDATE or (
            actions.get(vm) is Action.DELETE and change.action is Action.DELETE
        ):
            edges[change.address].add(vm)


def _absent_first(edges: Edges, changes: list[Change]) -> None:
    """Within a namespace, links go before links come (nmstate's order): each removal of a
    namespace that also gains links runs before those additions, unless one of the additions
    must come first (it is an ancestor of the removal), which would make a cycle."""
    going: dict[str, list[str]] = {}
    coming: dict[str, list[str]] = {}
    for change in changes:
        if not change.address.startswith("link."):
            continue
        namespace = getattr(change.resource, "namespace", "")
        if change.action is Action.DELETE and change.covered_by is None:
            going.setdefault(namespace, []).append(change.address)
        elif change.action in (Action.CREATE, Action.REPLACE):
            coming.setdefault(namespace, []).append(change.address)
    for namespace in sorted(going.keys() & coming.keys()):
        creates = coming[namespace]
        after_creates = _reachable(edges, creates)
        for delete in going[namespace]:
            if delete in after_creates:
                continue
            edges[delete].update(creates)


def _reachable(edges: Edges, sources: list[str]) -> set[str]:
    """Every node reachable from `sources` (sources included): one search for all of them."""
    found = set(sources)
    stack = list(sources)
    while stack:
        for successor in edges[stack.pop()]:
            if successor not in found:
                found.add(successor)
                stack.append(successor)
    return found


def _gateway_addresses_first(edges: Edges, changes: list[Change]) -> None:
    """A route is (re)made after any address change in the subnet of its gateway."""
    subnets: SubnetIndex[str] = SubnetIndex()
    for change in changes:
        address = change.resource
        if isinstance(address, res.Address) and change.action is not Action.NOOP:
            subnets.add(address.namespace, address.cidr, change.address)
    for change in changes:
        route = change.after
        if not isinstance(route, res.Route) or route.via is None or change.action not in MAKING:
            continue
        for made in subnets.holding(route.namespace, route.via):
            edges[made].add(change.address)


def without_redundant_edges(graph: nx.DiGraph) -> nx.DiGraph:
    """The same order with only the edges that decide it: u -> v goes when another path leads
    from u to v (a transitive reduction), as a person reading the drawing wants it."""
    reduced = nx.transitive_reduction(graph)
    reduced.add_nodes_from(graph.nodes(data=True))
    return reduced


def to_dot(graph: nx.DiGraph) -> str:
    lines = ["digraph passtplan {", "  rankdir=LR;", '  node [shape=box, fontname="monospace"];']
    for node in sorted(graph.nodes):
        change: Change = graph.nodes[node]["change"]
        lines.append(f'  "{node}" [label="{node}\\n{change.action}"];')
    for u, v in sorted(graph.edges):
        lines.append(f'  "{u}" -> "{v}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(graph: nx.DiGraph) -> str:
    ids = {node: f"n{i}" for i, node in enumerate(sorted(graph.nodes))}
    lines = ["flowchart LR"]
    for node, ident in ids.items():
        change: Change = graph.nodes[node]["change"]
        lines.append(f'  {ident}["{node}<br/>{change.action}"]')
    for u, v in sorted(graph.edges):
        lines.append(f"  {ids[u]} --> {ids[v]}")
    return "\n".join(lines) + "\n"
