"""Walk a DAG in topological order with bounded workers; knows vertices and a callback, nothing
more. A failed vertex's descendants are skipped ("upstream dependencies failed"); independent
branches run to the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum

import networkx as nx


class Status(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Outcome:
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
) -> dict[str, Outcome]:
    """Run `visit` on every node after all its predecessors are done.

    `visit` returns a note or raises; nodes for which `inline` is true (no-ops) run on the
    calling thread, the rest on up to `workers` threads.
    """
    waiting = {node: graph.in_degree(node) for node in graph.nodes}
    ready = sorted(node for node, count in waiting.items() if count == 0)
    outcomes: dict[str, Outcome] = {}
    running: dict[Future[str], tuple[str, float]] = {}

    def finish(node: str, outcome: Outcome) -> None:
        outcomes[node] = outcome
        if outcome.status is Status.DONE:
            for successor in sorted(graph.successors(node)):
                waiting[successor] -= 1
                if waiting[successor] == 0 and successor not in outcomes:
                    ready.append(successor)
            return
        for below in sorted(nx.descendants(graph, node)):
            if below not in outcomes:
                outcomes[below] = Outcome(
                    below, Status.SKIPPED, f"upstream dependency {node} failed"
                )

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="passtplan") as pool:
        while ready or running:
            while ready:
                node = ready.pop(0)
                if node in outcomes:
                    continue
                if inline(node):
                    finish(node, _run(visit, node, time.perf_counter()))
                else:
                    running[pool.submit(visit, node)] = (node, time.perf_counter())
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: running[f][0]):
                node, started = running.pop(future)
                finish(node, _result(future, node, started))
    return outcomes


def _run(visit: Callable[[str], str], node: str, started: float) -> Outcome:
    try:
        note = visit(node)
    except Exception as exc:
        return Outcome(node, Status.FAILED, str(exc), time.perf_counter() - started)
    return Outcome(node, Status.DONE, note, time.perf_counter() - started)


def _result(future: Future[str], node: str, started: float) -> Outcome:
    error = future.exception()
    if error is not None:
        return Outcome(node, Status.FAILED, str(error), time.perf_counter() - started)
    return Outcome(node, Status.DONE, future.result(), time.perf_counter() - started)
