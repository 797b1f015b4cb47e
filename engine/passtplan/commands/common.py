"""What the engine commands share: loading a lab for them, and asking before changing anything."""

from __future__ import annotations

import sys
from pathlib import Path

from passtplan.cycles import load_lab
from passtplan.desired import lab_id
from passtplan.errors import PasstplanError, SpecError
from passtplan.lang.loader import LoadedLab
from passtplan.providers.ownership import RUN_DIR


class CommandExit(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Leave a command with this exit code, its messages already printed."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(code)


def load(path: Path, *, warn: bool = True) -> LoadedLab:
    """The lab, its warnings printed (once; `warn` False for commands that make nothing from the
    lab, such as destroy: a warning about a manifest is no news to them); every error printed
    and exit 1 if it is not valid."""
    try:
        loaded = load_lab(path)
    except SpecError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        raise CommandExit(1) from None
    for warning in loaded.warnings if warn else ():
        print(warning, file=sys.stderr)
    return loaded


def other_mode(loaded: LoadedLab, *, sandbox: bool, command: str) -> str | None:
    """When the lab is applied in the other mode only, a warning that says so and names the
    flag (the mode's record under /run/passtplan tells: LAB or LAB@sandbox)."""

    def applied(mode: bool) -> bool:
        return (RUN_DIR / lab_id(loaded.name, sandbox=mode) / "owned.json").exists()

    if applied(sandbox) or not applied(not sandbox):
        return None
    here, there = (
        ("with --sandbox", "on this node") if sandbox else ("on this node", "with --sandbox")
    )
    flag = "without --sandbox" if sandbox else "with --sandbox"
    return (
        f"Warning: lab {loaded.name} is not applied {here}, but it is {there}: "
        f"for that one, run passtplan {command} {flag}."
    )


def warn_other_mode(loaded: LoadedLab, *, sandbox: bool, command: str) -> None:
    warning = other_mode(loaded, sandbox=sandbox, command=command)
    if warning is not None:
        print(warning, file=sys.stderr)


def confirm(question: str, *, auto_approve: bool) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        raise PasstplanError(
            "no terminal to confirm on: review the plan, then run again with --auto-approve"
        )
    print(f"{question}\n  Only 'yes' will be accepted to approve.\n")
    answer = input("  Enter a value: ").strip()
    if answer != "yes":
        raise PasstplanError("cancelled: nothing was changed")
