"""`passtplan check`: run the lab's checks alone."""

from __future__ import annotations

import sys
from pathlib import Path

from passtplan.commands.common import load, other_mode
from passtplan.desired import desired_state
from passtplan.engine import open_files_limit, require_root
from passtplan.lang.loader import LoadedLab
from passtplan.providers.checks import run_checks
from passtplan.render import as_format, checks_document, checks_text, colored


def run(path: Path, *, sandbox: bool, output: str = "text") -> int:
    loaded = load(path, warn=False)
    require_root("check")
    return run_lab_checks(loaded, sandbox=sandbox, output=output)


def run_lab_checks(loaded: LoadedLab, *, sandbox: bool, output: str = "text") -> int:
    """Print the checks' table (or, for `-o json|yaml`, their document); 1 if any failed or
    could not run, or if none could run here: a check that did not run is not a pass (a check
    of the other mode is skipped, not failed)."""
    results = []
    if loaded.lab.checks:
        desired = desired_state(
            loaded.lab, sandbox=sandbox, manifests=loaded.manifests, open_files=open_files_limit()
        )
        results = run_checks(loaded.lab.checks, desired)
    if output != "text":
        sys.stdout.write(as_format(checks_document(results), output))
    elif results:
        sys.stdout.write("\n" + colored(checks_text(results)))
    if not results:
        return 0
    # With a document on stdout, what to do next goes to stderr.
    hints = sys.stdout if output == "text" else sys.stderr
    if all(r.status == "skipped" for r in results):
        flag = "without --sandbox" if sandbox else "with --sandbox"
        print(
            f"No check of lab {loaded.name} runs in this mode; run passtplan check {flag}.",
            file=hints,
        )
        return 1
    if any(r.status == "not run" for r in results):
        print(_not_applied_hint(loaded, sandbox=sandbox), file=hints)
        return 1
    return 1 if any(r.status == "fail" for r in results) else 0


def _not_applied_hint(loaded: LoadedLab, *, sandbox: bool) -> str:
    """Why checks found nothing to run in: the lab is applied in the other mode, or not at all."""
    warning = other_mode(loaded, sandbox=sandbox, command="check")
    if warning is not None:
        return warning
    here = "with --sandbox" if sandbox else "on this node"
    flag = " --sandbox" if sandbox else ""
    return f"Lab {loaded.name} is not applied {here}: run passtplan apply{flag} first."
