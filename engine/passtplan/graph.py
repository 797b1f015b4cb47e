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
from passtplan.depends import dependencies
from passtplan.desired import Desired
from passtplan.errors import PasstplanError
from passtplan.subnets import SubnetIndex

MAKING = {Action.CREATE, Action.UPDATE, Action.REPLACE, Action.NOOP, Action.READ}
FINDING = {Action.CREATE, Action.READ, Action.REPLACE}


class CycleError(PasstplanError):
    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join([*cycle, cycle[0]]))


def build_graph(changes: list[Change], desired: Desired) -> nx.DiGraph:
    graph = nx.DiGraph()
    by_address = {c.address: c for c in changes}
    for change in changes:
        graph.add_node(change.address, change=change)
    for change in changes:
        for edge in _edges(change, by_address, desired):
            graph.add_edge(*edge)
    _absent_first(graph, changes)
    _vm_contents_first(graph, changes)
    _gateway_addresses_first(graph, changes)
    if not nx.is_directed_acyclic_graph(graph):
        raise CycleError(_cycle(graph))
    return graph


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
            if change.action is Action.DELETE and other.action is Action.DELETE:
                yield change.address, dep  # dependents go first
            elif change.action in MAKING and other.action in MAKING:
                yield dep, change.address
            elif change.action is Action.DELETE and other.action in FINDING:
                yield dep, change.address  # what is removed from a namespace waits for it


def _vm_contents_first(graph: nx.DiGraph, changes: list[Change]) -> None:
    """What the lab removes inside a VM's launcher namespace goes before the VM itself."""
    vm_of = {
        c.resource.name: c.resource.resolve[1]
        for c in changes
        if isinstance(c.resource, res.Namespace)
        and c.resource.resolve is not None
        and c.resource.resolve[0] == "vm"
    }
    deleted_vms = {
        c.address for c in changes if c.address.startswith("vm.") and c.action is Action.DELETE
    }
    for change in changes:
        resource = change.resource
        namespace = getattr(resource, "namespace", None)
        if change.action is Action.DELETE and namespace in vm_of:
            vm = f"vm.{vm_of[namespace]}"
            if vm in deleted_vms:
                graph.add_edge(change.address, vm)


def _absent_first(graph: nx.DiGraph, changes: list[Change]) -> None:
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
        after_creates = _reachable(graph, creates)
        for delete in going[namespace]:
            if delete in after_creates:
                continue
            for create in creates:
                graph.add_edge(delete, create)


def _reachable(graph: nx.DiGraph, sources: list[str]) -> set[str]:
    """Every node reachable from `sources` (sources included): one search for all of them."""
    found = set(sources)
    stack = list(sources)
    while stack:
        for successor in graph.successors(stack.pop()):
            if successor not in found:
                found.add(successor)
                stack.append(successor)
    return found


BATCHABLE = ("address.", "route.")


def coalesce(graph: nx.DiGraph) -> nx.DiGraph:
    """Merge address or route changes of one namespace that wait for exactly the same things
    and are waited for by exactly the same things: one node, applied in one batch.

    Every node of the result has `changes`, the list of changes it stands for.
    """
    groups: dict[tuple[str, str, frozenset[str], frozenset[str]], list[str]] = {}
    for node, data in graph.nodes(data=True):
        change: Change = data["change"]
        if node.startswith(BATCHABLE) and change.action is not Action.NOOP and not change.deferred:
            namespace = change.resource.namespace  # type: ignore[union-attr]
            key = (
                node.split(".", 1)[0],
                namespace,
                frozenset(graph.predecessors(node)),
                frozenset(graph.successors(node)),
            )
            groups.setdefault(key, []).append(node)
    member_of: dict[str, str] = {}
    for (kind, namespace, _, _), nodes in groups.items():
        if len(nodes) > 1:
            batch = f"{kind}.{namespace}[{len(nodes)} from {min(nodes)}]"
            member_of.update(dict.fromkeys(nodes, batch))
    merged = nx.DiGraph()
    for node, data in graph.nodes(data=True):
        target = member_of.get(node, node)
        merged.add_node(target)
        merged.nodes[target].setdefault("changes", []).append(data["change"])
    merged.add_edges_from((member_of.get(u, u), member_of.get(v, v)) for u, v in graph.edges)
    return merged


def _gateway_addresses_first(graph: nx.DiGraph, changes: list[Change]) -> None:
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
            graph.add_edge(made, change.address)


def _cycle(graph: nx.DiGraph) -> list[str]:
    """One cycle, always the same for the same graph: it starts at its smallest node."""
    cycles: list[list[str]] = list(nx.simple_cycles(graph))
    cycle = min(cycles, key=lambda c: (len(c), min(c)))
    start = cycle.index(min(cycle))
    return cycle[start:] + cycle[:start]


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
