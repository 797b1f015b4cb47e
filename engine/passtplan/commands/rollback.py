"""`passtplan rollback`: undo the last apply of a lab, from its journal."""

from __future__ import annotations

import sys
from pathlib import Path

from passtplan.commands.common import confirm, load
from passtplan.desired import Desired, desired_state, lab_id
from passtplan.engine import (
    ClusterFlags,
    cluster_context,
    open_files_limit,
    require_root,
    store_for,
)
from passtplan.lang.loader import LoadedLab
from passtplan.providers.lock import lab_lock
from passtplan.providers.ownership import OwnershipStore
from passtplan.providers.session import Session
from passtplan.providers.vm_kubevirt import ClusterContext
from passtplan.render import colored, plan_text, report_text
from passtplan.rollback import rollback


def run(
    path: Path,
    *,
    sandbox: bool,
    auto_approve: bool,
    flags: ClusterFlags | None = None,
    lock_timeout: float = 0.0,
) -> int:
    loaded = load(path, warn=False)
    require_root("rollback")
    cluster = cluster_context(loaded, sandbox=sandbox, flags=flags)
    desired = desired_state(
        loaded.lab, sandbox=sandbox, manifests=loaded.manifests, open_files=open_files_limit()
    )
    key = lab_id(loaded.name, sandbox=sandbox)
    with lab_lock(key, "passtplan rollback", lock_timeout), Session() as session:
        store = store_for(loaded, sandbox=sandbox)
        confirm("Do you really want to undo the last apply?", auto_approve=auto_approve)
        return undo_last_apply(loaded, desired, session, store, cluster)


def undo_last_apply(
    loaded: LoadedLab,
    desired: Desired,
    session: Session,
    store: OwnershipStore,
    cluster: ClusterContext | None,
) -> int:
    """Undo the journal's last apply, print what was done: 0 when the state is as before it."""
    result = rollback(loaded, desired, session, store, cluster)
    sys.stdout.write(colored(plan_text(result.report.plan) + "\n" + report_text(result.report)))
    if result.restored:
        print(f"Rolled back {result.undone} actions: the live state is as before that apply.")
        return 0
    print(
        f"Rolled back {result.undone} actions, but the live state differs from before that "
        "apply (what went with a deleted namespace is not made again): run passtplan plan "
        "to see what remains."
    )
    return 1
