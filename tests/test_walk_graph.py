from __future__ import annotations

import threading

import networkx as nx
import pytest

from passtplan import resources as res
from passtplan.changes import Action, Change
from passtplan.desired import Desired
from passtplan.graph import CycleError, build_graph
from passtplan.walk import Status, walk


def test_failed_vertex_skips_its_descendants_only() -> None:
    graph = nx.DiGraph([("a", "b"), ("b", "c"), ("a", "d"), ("x", "y")])
    seen: list[str] = []

    def visit(node: str) -> str:
        seen.append(node)
        if node == "b":
            raise RuntimeError("boom")
        return "ok"

    outcomes = walk(graph, visit, workers=2)
    assert {n: o.status for n, o in outcomes.items()} == {
        "a": Status.DONE,
        "b": Status.FAILED,
        "c": Status.SKIPPED,
        "d": Status.DONE,
        "x": Status.DONE,
        "y": Status.DONE,
    }
    assert outcomes["b"].detail == "boom"
    assert outcomes["c"].detail == "upstream dependency b failed"
    assert "c" not in seen
    assert seen.index("a") < seen.index("b")


def test_independent_vertices_run_concurrently_within_the_bound() -> None:
    graph = nx.DiGraph()
    graph.add_nodes_from(f"n{i}" for i in range(8))
    lock, running, peak = threading.Lock(), [0], [0]
    gate = threading.Barrier(3, timeout=30)

    def visit(node: str) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        if node in ("n0", "n1", "n2"):
            gate.wait()  # proves three ran at the same time: this waits for all three
        with lock:
            running[0] -= 1
        return "ok"

    outcomes = walk(graph, visit, workers=3)
    assert all(o.status is Status.DONE for o in outcomes.values())
    assert peak[0] == 3


def _link_change(name: str, action: Action, **fields: object) -> Change:
    link = res.Link("a", name, **fields)  # type: ignore[arg-type]
    before = link if action in (Action.DELETE, Action.UPDATE, Action.REPLACE) else None
    after = None if action is Action.DELETE else link
    return Change(link.address, action, before, after)


def test_deletions_run_in_reverse_and_absent_links_go_first() -> None:
    desired = Desired("t", False)
    changes = [
        _link_change("br0", Action.DELETE, kind="bridge"),
        _link_change("p0", Action.DELETE, kind="veth", master="br0"),
        _link_change("old", Action.DELETE, kind="veth"),
        _link_change("new", Action.CREATE, kind="bridge"),
    ]
    graph = build_graph(changes, desired)
    assert graph.has_edge("link.a/p0", "link.a/br0")  # the port goes before its bridge
    assert graph.has_edge("link.a/old", "link.a/new")  # absent first, as nmstate does


def test_a_cycle_is_named_whole_and_the_same_every_time() -> None:
    desired = Desired("t", False)
    changes = [
        _link_change("b2", Action.CREATE, kind="bridge", master="b0"),
        _link_change("b0", Action.CREATE, kind="bridge", master="b1"),
        _link_change("b1", Action.CREATE, kind="bridge", master="b2"),
    ]
    with pytest.raises(CycleError) as first:
        build_graph(changes, desired)
    with pytest.raises(CycleError) as second:
        build_graph(list(reversed(changes)), desired)
    assert (
        str(first.value)
        == str(second.value)
        == ("dependency cycle: link.a/b0 -> link.a/b2 -> link.a/b1 -> link.a/b0")
    )
