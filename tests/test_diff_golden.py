"""Golden cases for the pure stages: tests/fixtures/diff/<case>/ holds lab.yaml (desired) and
observed.yaml (live state, as observe would return it), and what the pure stages make of them:
plan.txt (what `plan` prints), plan.json (`plan --json`), graph.txt (the action graph's edges,
u before v, and one topological order) and verify.txt (what verify would report if this were the
state after apply). Regenerate after a deliberate change with PASSTPLAN_REGEN=1."""

from __future__ import annotations

import os
from pathlib import Path

import networkx as nx
import pytest

from passtplan.changes import Plan, fingerprint
from passtplan.cycles import load_lab
from passtplan.desired import desired_state, destroy_target
from passtplan.diff import ConflictError, diff
from passtplan.graph import build_graph
from passtplan.render import plan_json, plan_text
from passtplan.verify import verify
from tests.conftest import FIXTURES
from tests.observed import observed_state

OPEN_FILES = 20000  # the hard limit passt would get: fixes the sandbox VMs' port ranges
CASES = sorted(p for p in (FIXTURES / "diff").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_plan_golden(case: Path) -> None:
    loaded = load_lab(case / "lab.yaml")
    sandbox = (case / "sandbox").exists()
    desired = desired_state(
        loaded.lab, sandbox=sandbox, manifests=loaded.manifests, open_files=OPEN_FILES
    )
    if (case / "destroy").exists():
        desired = destroy_target(desired)
    state = observed_state(case / "observed.yaml", desired.lab)
    try:
        changes = diff(desired, state)
    except ConflictError as exc:
        compare(case / "plan.txt", f"error: {exc}\n")
        return
    graph = build_graph(changes, desired)
    plan = Plan(loaded, desired, state, changes, fingerprint(state), graph)
    compare(case / "plan.txt", plan_text(plan))
    compare(case / "plan.json", plan_json(plan))
    compare(case / "graph.txt", graph_text(graph))
    compare(case / "verify.txt", "".join(f"{e}\n" for e in verify(desired, state)))


def graph_text(graph: nx.DiGraph) -> str:
    edges = [f"{u} -> {v}" for u, v in sorted(graph.edges)]
    order = list(nx.lexicographical_topological_sort(graph))
    return (
        "edges:\n"
        + "".join(f"  {e}\n" for e in edges)
        + "order:\n"
        + "".join(f"  {i}. {node}\n" for i, node in enumerate(order, start=1))
    )


def compare(want_file: Path, got: str) -> None:
    if os.environ.get("PASSTPLAN_REGEN"):
        want_file.write_text(got)
    want = want_file.read_text()
    assert got == want, f"{want_file.name}\nGOT:\n{got}\nWANT:\n{want}"
