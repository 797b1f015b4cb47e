"""The vocabulary of change, as Terraform's `plans/`: what an action is, a change to one resource,
a plan, the report of an apply, the plan's fingerprint and the saved-plan format.

Whoever consumes changes (providers, render, commands) imports this module, never the diff that
computes them or the engine that runs them.

What `before` and `after` mean, by action:
- CREATE: before is None, after is what will exist;
- DELETE: before is what exists, after is None;
- UPDATE: before is what exists, after is what it becomes (a sysctl given back its value from
  before the lab is an UPDATE whose after is that value);
- REPLACE: before is what exists, after what takes its place;
- READ: before is None, after is what is looked for at apply time;
- NOOP: before and after are both what exists.
`reason` is for people reading a plan; apply never decides anything by it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from passtplan import inputs
from passtplan import resources as res
from passtplan.errors import BugError
from passtplan.walk import Outcome, Status

if TYPE_CHECKING:
    from passtplan.desired import Desired
    from passtplan.lang.loader import LoadedLab
    from passtplan.verify import VerifyError

SAVED_PLAN_KIND = inputs.SAVED_PLAN_KIND
FORMAT_VERSION = "1.0"


class Action(StrEnum):
    NOOP = "no-op"
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    READ = "read"  # a namespace found only at apply time


class Change(msgspec.Struct, frozen=True):
    address: str
    action: Action
    before: res.Resource | None
    after: res.Resource | None
    reason: str = ""
    changed: tuple[str, ...] = ()  # attributes that differ, for update and replace
    deferred: bool = False  # its namespace is found at apply time: values known after apply
    covered_by: str | None = None  # removed by removing this (a netns, the other veth end)

    @property
    def resource(self) -> res.Resource:
        found = self.after or self.before
        if found is None:
            raise BugError(f"change {self.address} has neither before nor after")
        return found


class Plan(msgspec.Struct):
    loaded: LoadedLab
    desired: Desired
    state: res.State
    changes: list[Change]
    fingerprint: str
    graph: Any  # networkx.DiGraph: the changes in dependency order, coalesced for batching
    destroy: bool = False
    node: str | None = None  # this node's name, when the lab has VMs on a cluster
    targets: tuple[str, ...] = ()  # --target: the plan is of these and what they need only

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action is not Action.NOOP]


class ApplyReport(msgspec.Struct):
    plan: Plan
    outcomes: list[tuple[Change, Outcome]]
    verify_errors: list[VerifyError]
    seconds: float
    walk_seconds: float = 0.0  # executing the actions, without verification

    @property
    def ok(self) -> bool:
        return not self.verify_errors and all(o.status is Status.DONE for _, o in self.outcomes)


def show_value(value: object) -> str:
    """An attribute's value as plans, reasons and verify errors write it, spelled as in a lab
    file: a reference as NS/NAME, a flag as true or false, no value as `none`."""
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "/".join(str(v) for v in value)
    return str(value)


def fingerprint(state: res.State) -> str:
    """A hash of everything observed: a saved plan is only applied to the state it was made on.

    Resources are frozen Structs whose repr lists every field in order; sorted, their reprs
    are a canonical text of the state at a fraction of the cost of converting them to dicts.
    """
    digest = hashlib.sha256()
    for name, ns in sorted(state.namespaces.items()):
        digest.update(f"{name}={ns is not None}\n".encode())
        if ns is None:
            continue
        parts = [repr(ns.namespace), *sorted(map(repr, ns.links.values()))]
        parts += sorted(map(repr, ns.addresses)) + sorted(map(repr, ns.routes))
        parts += [f"{k}={v}" for k, v in sorted(ns.sysctls.items())]
        digest.update("\n".join(parts).encode())
    owned = state.owned
    for group in (owned.namespaces, owned.addresses, owned.routes):
        digest.update("\n".join(sorted(group)).encode() + b"\0")
    digest.update(json.dumps(owned.sysctls, sort_keys=True).encode())
    digest.update(json.dumps(owned.foreign, sort_keys=True).encode())
    return digest.hexdigest()


JSON_ACTIONS = {
    Action.CREATE: ["create"],
    Action.DELETE: ["delete"],
    Action.UPDATE: ["update"],
    Action.REPLACE: ["delete", "create"],
    Action.READ: ["read"],
    Action.NOOP: ["no-op"],
}


def change_json(change: Change) -> dict[str, object]:
    return {
        "address": change.address,
        "type": change.address.split(".", 1)[0],
        "actions": JSON_ACTIONS[change.action],
        "before": res.attributes(change.before),
        "after": res.attributes(change.after),
        "after_unknown": change.deferred,
        "reason": change.reason,
        "covered_by": change.covered_by,
    }


def counts(changes: Iterable[Change]) -> tuple[int, int, int]:
    """How many resources are added, changed and destroyed, counted as Terraform does (a
    replace is one of each of add and destroy); the plan and the apply's report both say it."""
    add = change = destroy = 0
    for c in changes:
        add += c.action in (Action.CREATE, Action.REPLACE)
        change += c.action is Action.UPDATE
        destroy += c.action in (Action.DELETE, Action.REPLACE)
    return add, change, destroy


def plan_summary(changes: Iterable[Change]) -> str:
    add, change, destroy = counts(changes)
    return f"Plan: {add} to add, {change} to change, {destroy} to destroy."


def plan_document(plan: Plan) -> dict[str, object]:
    """The plan as `plan --json` prints it."""
    return {
        "format_version": FORMAT_VERSION,
        "lab": plan.desired.lab,
        "sandbox": plan.desired.sandbox,
        "fingerprint": plan.fingerprint,
        "changes": [change_json(c) for c in plan.changes],
        "summary": plan_summary(plan.pending),
    }


def saved_plan(plan: Plan, text: str) -> str:
    """The file `plan --out` writes: the lab it was made from (by path and hash), the mode,
    and the fingerprint of the state it was made on; and, for `show SAVED`, the plan's text as
    it was printed and what `plan -o json` printed besides the changes."""
    data = {
        "format_version": FORMAT_VERSION,
        "kind": SAVED_PLAN_KIND,
        "lab": str(plan.loaded.path.resolve()),
        "lab_sha256": hashlib.sha256(plan.loaded.path.read_bytes()).hexdigest(),
        "sandbox": plan.desired.sandbox,
        "destroy": plan.destroy,
        "targets": list(plan.targets),
        "fingerprint": plan.fingerprint,
        "changes": [change_json(c) for c in plan.changes],
        "lab_name": plan.desired.lab,
        "summary": plan_summary(plan.pending),
        "text": text,
    }
    return json.dumps(data, indent=2) + "\n"


def saved_plan_document(path: Path, saved: dict[str, object]) -> tuple[dict[str, object], str]:
    """A saved plan as `plan -o json` printed it, and its text as `plan` printed it."""
    text, name, summary = saved.get("text"), saved.get("lab_name"), saved.get("summary")
    if not (isinstance(text, str) and isinstance(name, str) and isinstance(summary, str)):
        raise inputs.InputError(
            f"{path}: the saved plan has no text to show (an older passtplan made it); "
            f"make it again with passtplan plan LAB --out {path}"
        )
    document = {
        "format_version": saved["format_version"],
        "lab": name,
        "sandbox": saved["sandbox"],
        "fingerprint": saved["fingerprint"],
        "changes": saved["changes"],
        "summary": summary,
    }
    return document, text


def read_saved_plan(path: Path) -> dict[str, object] | None:
    """The saved plan in `path` (checked field by field), or None when the file is a lab rather
    than a saved plan; a folder means its lab.yaml."""
    path = inputs.lab_path(path, limit=inputs.MAX_SAVED_PLAN_BYTES)
    if not inputs.looks_like_saved_plan(inputs.head(path)):
        return None
    raw = inputs.read_file(path, what="saved plan", limit=inputs.MAX_SAVED_PLAN_BYTES)
    return inputs.saved_plan(path, raw)
