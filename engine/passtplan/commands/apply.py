"""`passtplan apply` and `passtplan destroy`: plan, confirm, execute the graph, verify."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from passtplan import inputs
from passtplan.apply import apply_plan, forget_destroyed
from passtplan.changes import Plan, read_saved_plan
from passtplan.commands.check import run_lab_checks
from passtplan.commands.common import confirm, load, warn_other_mode
from passtplan.commands.rollback import undo_last_apply
from passtplan.desired import lab_id
from passtplan.engine import (
    ClusterFlags,
    cluster_context,
    make_plan,
    require_root,
    store_for,
)
from passtplan.errors import PasstplanError
from passtplan.lang.loader import LoadedLab
from passtplan.providers.lock import lab_lock
from passtplan.providers.ownership import OwnershipStore
from passtplan.providers.session import Session
from passtplan.providers.vm_kubevirt import ClusterContext
from passtplan.render import colored, plan_text, report_text


def run(
    path: Path,
    *,
    sandbox: bool,
    auto_approve: bool,
    destroy: bool = False,
    flags: ClusterFlags | None = None,
    lock_timeout: float = 0.0,
    rollback_on_failure: bool = False,
    targets: tuple[str, ...] = (),
) -> int:
    saved = read_saved_plan(path)
    if saved is not None:
        if destroy and not saved["destroy"]:
            raise PasstplanError(
                f"{path}: is a saved plan to apply, not to destroy; give destroy the lab file, "
                "or run passtplan apply on this plan"
            )
        return _run_saved(path, saved, flags, lock_timeout)
    loaded = load(path, warn=not destroy)
    command = "destroy" if destroy else "apply"
    require_root(command)
    if destroy:
        warn_other_mode(loaded, sandbox=sandbox, command=command)
    cluster = cluster_context(loaded, sandbox=sandbox, flags=flags)
    with _locked_plan(
        loaded,
        sandbox=sandbox,
        destroy=destroy,
        cluster=cluster,
        targets=targets,
        lock_timeout=lock_timeout,
    ) as (plan, session, store):
        sys.stdout.write(colored(plan_text(plan)))
        failed = 0
        if plan.pending:
            verb = "destroy everything this lab made" if destroy else "perform these actions"
            confirm(f"\nDo you really want to {verb}?", auto_approve=auto_approve)
            failed = _execute(plan, session, store, cluster)
        elif destroy and not targets:
            forget_destroyed(plan, session, store)
        if destroy:
            return failed
        failed = failed or _checks(loaded, sandbox=sandbox, targets=targets)
        wanted = rollback_on_failure or loaded.lab.settings.rollback == "on-failure"
        if failed and wanted and plan.pending:
            print("\nThe apply failed: rolling it back (rollback on failure).")
            undo_last_apply(loaded, plan.desired, session, store, cluster)
        return failed


def _run_saved(
    path: Path, saved: dict[str, object], flags: ClusterFlags | None, lock_timeout: float
) -> int:
    lab_path = Path(str(saved["lab"]))
    try:
        raw = inputs.read_file(lab_path, what="lab file", limit=inputs.MAX_LAB_BYTES)
    except inputs.InputError as exc:
        raise PasstplanError(
            f"{path}: the lab it was made from cannot be read ({exc}); plan again"
        ) from None
    if hashlib.sha256(raw).hexdigest() != saved["lab_sha256"]:
        raise PasstplanError(f"{path}: {lab_path} changed since the plan was saved; plan again")
    loaded = load(lab_path)
    require_root("apply")
    sandbox, destroy = bool(saved["sandbox"]), bool(saved["destroy"])
    listed = saved["targets"]
    targets = tuple(map(str, listed)) if isinstance(listed, list) else ()
    cluster = cluster_context(loaded, sandbox=sandbox, flags=flags)
    with _locked_plan(
        loaded,
        sandbox=sandbox,
        destroy=destroy,
        cluster=cluster,
        targets=targets,
        lock_timeout=lock_timeout,
    ) as (plan, session, store):
        if plan.fingerprint != saved["fingerprint"]:
            raise PasstplanError(
                f"{path}: the live state changed since the plan was saved, so it may no longer "
                "do what it showed; run passtplan plan again"
            )
        sys.stdout.write(colored(plan_text(plan)))
        if plan.pending and _execute(plan, session, store, cluster):
            return 1
    return 0 if destroy else _checks(loaded, sandbox=sandbox, targets=targets)


@contextmanager
def _locked_plan(
    loaded: LoadedLab,
    *,
    sandbox: bool,
    destroy: bool,
    cluster: ClusterContext | None,
    targets: tuple[str, ...],
    lock_timeout: float,
) -> Iterator[tuple[Plan, Session, OwnershipStore]]:
    """The plan, under the lab's lock held until the block ends: the record is read, the plan
    made and carried out by the one writer."""
    command = "destroy" if destroy else "apply"
    key = lab_id(loaded.name, sandbox=sandbox)
    with lab_lock(key, f"passtplan {command}", lock_timeout), Session() as session:
        store = store_for(loaded, sandbox=sandbox)
        plan = make_plan(
            loaded,
            session,
            store,
            sandbox=sandbox,
            destroy=destroy,
            cluster=cluster,
            targets=targets,
        )
        yield plan, session, store


def _checks(loaded: LoadedLab, *, sandbox: bool, targets: tuple[str, ...]) -> int:
    """The lab's checks after an apply; not after a targeted one, which may have left out
    what they need (Terraform's "Applied changes may be incomplete")."""
    if not targets:
        return run_lab_checks(loaded, sandbox=sandbox)
    flag = " --sandbox" if sandbox else ""
    print(
        "\nWarning: applied changes may be incomplete: the plan was made with --target, so the "
        f"lab's checks were not run; run passtplan plan{flag} to see what else is pending, "
        f"and passtplan check{flag}."
    )
    return 0


def _execute(
    plan: Plan, session: Session, store: OwnershipStore, cluster: ClusterContext | None
) -> int:
    report = apply_plan(plan, session, store, cluster=cluster)
    sys.stdout.write("\n" + colored(report_text(report)))
    return 0 if report.ok else 1
