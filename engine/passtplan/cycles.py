"""Dependency cycles in a lab, judged with the engine's own dependency rules (depends.py, each
family's depends_on) on the resources the lab asks for, and reported where the lab declares the
first resource of each cycle.

The sandbox view is judged: its resources include the node view's, each with the same
dependencies, so a cycle in the one is a cycle in the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from passtplan import inputs
from passtplan.depends import dependencies
from passtplan.desired import desired_state
from passtplan.errors import BugError, SpecError, SpecIssue
from passtplan.lang import loader
from passtplan.lang.loader import LoadedLab
from passtplan.lang.yamlsource import DataPath


def load_lab(path: Path) -> LoadedLab:
    """Read and judge a lab file as every command does: the language's rules, then dependency
    cycles. Raise SpecError carrying every error found, or InputError when `path` is no lab
    file (a folder means its lab.yaml)."""
    loaded = loader.load_lab(inputs.lab_path(path))
    issues = cycle_issues(loaded)
    if issues:
        raise SpecError([*issues, *loaded.warnings])
    return loaded


def cycle_issues(loaded: LoadedLab) -> list[SpecIssue]:
    desired = desired_state(loaded.lab, sandbox=True, manifests=loaded.manifests, links_only=True)
    resources = {**desired.namespaces, **desired.links, **desired.vms}
    graph = {
        address: [dep for dep in dependencies(resource, desired) if dep in resources]
        for address, resource in ((r.address, r) for r in resources.values())
    }
    return [
        loaded.document.issue(
            _declared_at(loaded, cycle[0]),
            "dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
            at_key=True,
        )
        for cycle in find_cycles(graph)
    ]


def _declared_at(loaded: LoadedLab, address: str) -> DataPath:
    """Where the lab declares the resource at `address` (a link, a namespace or a VM)."""
    kind, _, rest = address.partition(".")
    lab = loaded.lab
    if kind == "vm":
        return ("vms", rest)
    namespace, _, link = rest.partition("/")
    section: DataPath = ("namespaces",)
    if namespace not in lab.namespaces or (link and link not in lab.namespaces[namespace].links):
        section = ("sandbox", "namespaces")
    return (*section, namespace, "links", link) if link else (*section, namespace)


def find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Every elementary cycle's representative, one per strongly connected component.

    Deterministic: each cycle starts at its smallest node and follows the smallest successor
    that stays in the component, so the same lab always prints the same cycle.
    """
    cycles = []
    for component in _strongly_connected(graph):
        start = min(component)
        if len(component) == 1 and start not in graph.get(start, []):
            continue
        cycles.append(_shortest_cycle(graph, start, component))
    return sorted(cycles)


def _shortest_cycle(graph: dict[str, list[str]], start: str, component: set[str]) -> list[str]:
    """Breadth-first from `start` back to it, successors in sorted order: deterministic."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, [])):
                if nxt == start:
                    cycle = [node]
                    while cycle[-1] != start:
                        cycle.append(came_from[cycle[-1]])
                    return cycle[::-1]
                if nxt in component and nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    raise BugError(f"{start} is in a strongly connected component but on no cycle")


def _strongly_connected(graph: dict[str, list[str]]) -> Iterator[set[str]]:
    """Tarjan's algorithm, iterative so a long chain of links cannot exhaust the stack."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, []))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, [])))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                yield component
