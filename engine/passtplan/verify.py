"""After apply, the live state is read again and held against the lab, as nmstate verifies: a pure
function of the desired and the observed state, returning what still differs, field by field.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from passtplan import resources as res
from passtplan.changes import Action, Change, show_value
from passtplan.desired import Desired
from passtplan.diff import diff


class VerifyError(msgspec.Struct, frozen=True):
    """One thing the live state does not have as the lab wants it."""

    address: str
    field: str  # an attribute, or "" for the resource as a whole
    want: str
    have: str

    def __str__(self) -> str:
        if not self.field:
            return f"{self.address}: want {self.want}, have {self.have}"
        return f"{self.address}: {self.field}: want {self.want}, have {self.have}"


def verify(desired: Desired, state: res.State) -> list[VerifyError]:
    """Everything a plan made now would still do: empty when apply did all it should."""
    return [error for change in diff(desired, state) for error in _errors(change)]


def _errors(change: Change) -> Iterator[VerifyError]:
    match change.action:
        case Action.NOOP:
            return
        case Action.UPDATE if change.changed:
            for name in change.changed:
                want = show_value(getattr(change.after, name))
                yield VerifyError(
                    change.address, name, want, show_value(getattr(change.before, name))
                )
        case Action.CREATE | Action.READ:
            yield VerifyError(change.address, "", "present", "missing")
        case Action.DELETE:
            yield VerifyError(change.address, "", "absent", "present")
        case _:
            yield VerifyError(change.address, "", "as planned", f"{change.action} pending")
