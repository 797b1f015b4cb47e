"""Golden cases for the pure stages: tests/fixtures/diff/<case>/ holds lab.yaml (desired),
observed.yaml (live state, as observe would return it) and plan.txt (what `plan` prints).
Regenerate a case's plan.txt after a deliberate change with PASSTPLAN_REGEN=1."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from passtplan import resources as res
from passtplan.changes import Plan, fingerprint
from passtplan.desired import desired_state
from passtplan.diff import ConflictError, diff
from passtplan.graph import build_graph
from passtplan.lang.loader import load_lab
from passtplan.lang.yamlsource import read_yaml
from passtplan.render import plan_text
from tests.conftest import FIXTURES

CASES = sorted(p for p in (FIXTURES / "diff").iterdir() if p.is_dir())


def observed_state(path: Path, lab: str) -> res.State:
    data: dict[str, Any] = read_yaml(path).data  # type: ignore[assignment]
    owned = data.get("owned", {})
    state = res.State(
        owned=res.Ownership(
            namespaces=set(owned.get("namespaces", [])),
            addresses=set(owned.get("addresses", [])),
            routes=set(owned.get("routes", [])),
            sysctls=dict(owned.get("sysctls", {})),
        )
    )
    for name, ns in (data.get("namespaces") or {}).items():
        if ns is None:
            state.namespaces[name] = None
            continue
        role = res.NamespaceRole(ns.get("role", "created"))
        namespace = res.Namespace(
            name, None if role is res.NamespaceRole.HOST else f"{lab}-{name}", role
        )
        links = {}
        for index, (link_name, link) in enumerate((ns.get("links") or {}).items(), start=1):
            fields = dict(link)
            for key in ("peer", "parent"):
                if key in fields:
                    fields[key] = tuple(fields[key].split("/"))
            fields.setdefault("up", True)
            fields.setdefault("mtu", 1500)
            fields.setdefault("master", "")
            links[link_name] = res.Link(name, link_name, ifindex=index, **fields)
        addresses = [res.Address(name, *entry.split()) for entry in ns.get("addresses", [])]
        routes = [res.Route(namespace=name, **route) for route in ns.get("routes", [])]
        state.namespaces[name] = res.NamespaceState(
            namespace, links, addresses, routes, dict(ns.get("sysctls", {}))
        )
    return state


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_plan_golden(case: Path) -> None:
    loaded = load_lab(case / "lab.yaml")
    sandbox = (case / "sandbox").exists()
    desired = desired_state(loaded.lab, sandbox=sandbox)
    state = observed_state(case / "observed.yaml", desired.lab)
    try:
        changes = diff(desired, state)
        graph = build_graph(changes, desired)
        got = plan_text(Plan(loaded, desired, state, changes, fingerprint(state), graph))
    except ConflictError as exc:
        got = f"error: {exc}\n"
    want_file = case / "plan.txt"
    if os.environ.get("PASSTPLAN_REGEN"):
        want_file.write_text(got)
    want = want_file.read_text()
    assert got == want, f"GOT:\n{got}\nWANT:\n{want}"
