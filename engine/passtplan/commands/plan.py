"""`passtplan plan`: what apply would change, as text or JSON, optionally saved for apply."""

from __future__ import annotations

import sys
from pathlib import Path

from passtplan import inputs
from passtplan.changes import plan_document, saved_plan
from passtplan.commands.common import load, warn_other_mode
from passtplan.engine import ClusterFlags, cluster_context, make_plan, require_root, store_for
from passtplan.providers.session import Session
from passtplan.render import as_format, colored, plan_text

CHANGES_EXIT = 2


def run(
    path: Path,
    *,
    sandbox: bool,
    output: str,
    out: Path | None,
    detailed_exitcode: bool,
    destroy: bool = False,
    flags: ClusterFlags | None = None,
    targets: tuple[str, ...] = (),
) -> int:
    if out is not None:
        inputs.out_path(out)
    loaded = load(path)
    if out is not None:
        inputs.out_path(out, lab=loaded.path)
    require_root("plan")
    warn_other_mode(loaded, sandbox=sandbox, command="plan")
    cluster = cluster_context(loaded, sandbox=sandbox, flags=flags)
    store = store_for(loaded, sandbox=sandbox)
    with Session() as session:
        plan = make_plan(
            loaded,
            session,
            store,
            sandbox=sandbox,
            destroy=destroy,
            cluster=cluster,
            targets=targets,
        )
    text = plan_text(plan)
    sys.stdout.write(colored(text) if output == "text" else as_format(plan_document(plan), output))
    if out is not None:
        inputs.write_out(out, saved_plan(plan, text), what="the plan")
        if output == "text":
            print(f"\nSaved the plan to {out}; apply exactly it with: passtplan apply {out}")
    return CHANGES_EXIT if detailed_exitcode and plan.pending else 0
