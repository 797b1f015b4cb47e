"""`passtplan check`: run the lab's checks alone."""

from __future__ import annotations

import sys
from pathlib import Path

from passtplan.commands.common import load
from passtplan.desired import desired_state
from passtplan.engine import open_files_limit, require_root
from passtplan.lang.loader import LoadedLab
from passtplan.providers.checks import run_checks
from passtplan.render import checks_text


def run(path: Path, *, sandbox: bool) -> int:
    loaded = load(path)
    require_root("check")
    return run_lab_checks(loaded, sandbox=sandbox)


def run_lab_checks(loaded: LoadedLab, *, sandbox: bool) -> int:
    """Print the checks' table; 1 if any failed (a skipped check fails nothing)."""
    if not loaded.lab.checks:
        return 0
    desired = desired_state(
        loaded.lab, sandbox=sandbox, manifests=loaded.manifests, open_files=open_files_limit()
    )
    results = run_checks(loaded.lab.checks, desired)
    sys.stdout.write("\n" + checks_text(results))
    return 1 if any(r.status == "fail" for r in results) else 0
