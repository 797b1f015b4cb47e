"""Colour on a terminal, with plain ANSI codes (rich would cost --help its start-up).

Colour is on when stdout is a terminal, unless `--no-color` was given or NO_COLOR is set
(https://no-color.org: any value but the empty string); TERM=dumb is no terminal either.
"""

from __future__ import annotations

import os
import sys

GREEN, YELLOW, RED, CYAN, BOLD = "32", "33", "31", "36", "1"
_RESET = "\033[0m"


class _Choice:
    """What the command line chose (`--no-color`), for the rest of the command."""

    disabled = False


def disable() -> None:
    _Choice.disabled = True


def enabled() -> bool:
    if _Choice.disabled or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return sys.stdout.isatty()


def paint(text: str, *codes: str) -> str:
    """`text` in the given SGR codes (e.g. BOLD, GREEN), reset after it."""
    return f"\033[{';'.join(codes)}m{text}{_RESET}"
