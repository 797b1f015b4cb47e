"""One error tree for the whole engine.

Every error a user can cause is a PasstplanError whose str() is the one line the CLI prints;
anything else reaching the CLI is a bug and is reported as such.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class PasstplanError(Exception):
    """An error the user can act on; str(error) is the whole message."""


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class SpecIssue(msgspec.Struct, frozen=True, order=True):
    """One finding about a lab file: where it is, which field, and what is wrong."""

    file: str
    line: int
    col: int
    path: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        field = f" {self.path}:" if self.path else ""
        label = " warning:" if self.severity is Severity.WARNING else ""
        return f"{where}:{field}{label} {self.message}"


class SpecError(PasstplanError):
    """A lab file (or a file it references) is not valid; carries every issue found."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = sorted(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class BugError(PasstplanError):
    """An internal invariant broke: a bug in passtplan, never the user's fault."""
