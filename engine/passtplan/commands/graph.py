"""`passtplan graph`: the action graph of a plan, in DOT or Mermaid, without the edges another
path implies."""

from __future__ import annotations

import sys
from pathlib import Path

from passtplan.commands.common import load
from passtplan.engine import make_plan, require_root, store_for
from passtplan.graph import build_graph, to_dot, to_mermaid, without_redundant_edges
from passtplan.providers.session import Session


def run(path: Path, *, sandbox: bool, fmt: str) -> int:
    loaded = load(path)
    require_root("graph")
    with Session() as session:
        plan = make_plan(
            loaded, session, store_for(loaded, sandbox=sandbox), sandbox=sandbox, destroy=False
        )
    graph = without_redundant_edges(build_graph(plan.changes, plan.desired))
    sys.stdout.write(to_dot(graph) if fmt == "dot" else to_mermaid(graph))
    return 0
