"""`passtplan validate`: judge lab files, print every problem as FILE:LINE:COL: field: message."""

from __future__ import annotations

import sys
from pathlib import Path

from passtplan.cycles import load_lab
from passtplan.errors import SpecError
from passtplan.inputs import InputError
from passtplan.lang.loader import LoadedLab


def run(paths: list[Path]) -> int:
    failed = False
    for path in paths:
        try:
            loaded = load_lab(path)
        except SpecError as exc:
            failed = True
            for issue in exc.issues:
                print(issue, file=sys.stderr)
            continue
        except InputError as exc:
            failed = True
            print(exc, file=sys.stderr)
            continue
        for warning in loaded.warnings:
            print(warning, file=sys.stderr)
        print(f"{path}: valid ({summary(loaded)})")
    return 1 if failed else 0


def summary(loaded: LoadedLab) -> str:
    lab = loaded.lab
    links = sum(len(ns.links) for ns in lab.namespaces.values())
    routes = sum(len(ns.routes) for ns in lab.namespaces.values())
    parts = [
        _count(len(lab.namespaces), "namespace"),
        _count(links, "link"),
        _count(routes, "route"),
        _count(len(lab.vms), "VM"),
        _count(len(lab.checks), "check"),
    ]
    text = f"lab {lab.metadata.name}: {', '.join(parts)}"
    if lab.sandbox.namespaces:
        text += f"; sandbox: {_count(len(lab.sandbox.namespaces), 'namespace')}"
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
