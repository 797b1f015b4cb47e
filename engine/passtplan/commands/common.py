"""What the engine commands share: loading a lab for them, and asking before changing anything."""

from __future__ import annotations

import sys
from pathlib import Path

from passtplan.cycles import load_lab
from passtplan.errors import PasstplanError, SpecError
from passtplan.lang.loader import LoadedLab


class CommandExit(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Leave a command with this exit code, its messages already printed."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(code)


def load(path: Path) -> LoadedLab:
    """The lab, its warnings printed; every error printed and exit 1 if it is not valid."""
    try:
        loaded = load_lab(path)
    except SpecError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        raise CommandExit(1) from None
    for warning in loaded.warnings:
        print(warning, file=sys.stderr)
    return loaded


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
