"""Walk a DAG in topological order with bounded workers; knows vertices and a callback, nothing
more. A failed vertex's descendants are skipped ("upstream dependencies failed"); independent
branches run to the end.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    import networkx as nx


INTERRUPTED = "interrupted before it started"


class Status(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class Outcome(msgspec.Struct, frozen=True):
    node: str
    status: Status
    detail: str
    seconds: float = 0.0


def walk(
    graph: nx.DiGraph,
    visit: Callable[[str], str],
    *,
    workers: int = 4,
    inline: Callable[[str], bool] = lambda node: False,
    stop: threading.Event | None = None,
) -> dict[str, Outcome]:
    """Run `visit` on every node after all its predecessors are done.

    `visit` returns a note or raises; nodes for which `inline` is true (no-ops) run on the
    calling thread, the rest on up to `workers` threads. Once `stop` is set, nothing more
    starts: what is in flight finishes, and every node not run is skipped as interrupted.
    """
    stop = stop or threading.Event()
    waiting = {node: graph.in_degree(node) for node in graph.nodes}
    ready = deque(sorted(node for node, count in waiting.items() if count == 0))
    outcomes: dict[str, Outcome] = {}
    finished: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    in_flight = 0

    def finish(outcome: Outcome) -> None:
        node = outcome.node
        outcomes[node] = outcome
        if outcome.status is Status.DONE:
            for successor in sorted(graph.successors(node)):
                waiting[successor] -= 1
                if waiting[successor] == 0 and successor not in outcomes:
                    ready.append(successor)
            return
        for below in sorted(_descendants(graph, node)):
            if below not in outcomes:
                outcomes[below] = Outcome(
                    below, Status.SKIPPED, f"upstream dependency {node} failed"
                )

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="passtplan") as pool:
        while (ready and not stop.is_set()) or in_flight:
            # Keep at most `workers` actions in flight: results come back through one queue,
            # so each completion costs the same however large the graph is.
            while ready and in_flight < workers and not stop.is_set():
                node = ready.popleft()
                if node in outcomes:
                    continue
                if inline(node):
                    finish(_run(visit, node))
                    continue
                pool.submit(_report, finished, visit, node)
                in_flight += 1
            if in_flight:
                finish(finished.get())
                in_flight -= 1
    for node in graph.nodes:
        outcomes.setdefault(node, Outcome(node, Status.SKIPPED, INTERRUPTED))
    return outcomes


def _report(finished: queue.SimpleQueue[Outcome], visit: Callable[[str], str], node: str) -> None:
    finished.put(_run(visit, node))


def _run(visit: Callable[[str], str], node: str) -> Outcome:
    started = time.perf_counter()
    try:
        note = visit(node)
    except Exception as exc:
        return Outcome(node, Status.FAILED, str(exc), time.perf_counter() - started)
    return Outcome(node, Status.DONE, note, time.perf_counter() - started)


def _descendants(graph: nx.DiGraph, node: str) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        for successor in graph.successors(stack.pop()):
            if successor not in found:
                found.add(successor)
                stack.append(successor)
    return found
