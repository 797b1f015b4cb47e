"""Plans and reports as text (the way Terraform users read them) and as JSON. Pure: data in,
strings out; computing a diff and showing it stay apart.
"""

from __future__ import annotations

import json
from collections import Counter

from passtplan import resources as res
from passtplan.changes import Action, ApplyReport, Change, Plan, plan_document, plan_summary
from passtplan.lang.cloudinit import cloud_config, cloud_init_volume
from passtplan.providers.checks import CheckResult
from passtplan.walk import INTERRUPTED, Status

SYMBOL = {
    Action.CREATE: "+",
    Action.DELETE: "-",
    Action.UPDATE: "~",
    Action.REPLACE: "-/+",
    Action.READ: "<=",
    Action.NOOP: " ",
}
VERB = {
    Action.CREATE: "will be created",
    Action.DELETE: "will be destroyed",
    Action.UPDATE: "will be updated in place",
    Action.REPLACE: "must be replaced",
    Action.READ: "will be read during apply",
    Action.NOOP: "is unchanged",
}
KNOWN_AFTER_APPLY = "(known after apply)"
HIDDEN = {"namespace", "name", "link", "owner"}


def cluster_vms_text(plan: Plan) -> str:
    """The cluster's VMs as they are now: their VMI's phase, node and IP."""
    lines = []
    for change in plan.changes:
        vm = change.before
        if isinstance(vm, res.ClusterVm):
            where = f" on {vm.node}" if vm.node else ""
            address = f", IP {vm.ip}" if vm.ip else ""
            elsewhere = ""
            if vm.node and plan.node and vm.node != plan.node:
                elsewhere = f" (not this node, {plan.node}: run passtplan on {vm.node})"
            lines.append(
                f"  {vm.address}: {vm.kube_namespace}/{vm.name} {vm.phase}{where}{address}"
                f"{elsewhere}"
            )
    return "VMs on the cluster:\n" + "\n".join(lines) + "\n\n" if lines else ""


def plan_text(plan: Plan) -> str:
    pending = plan.pending
    if not pending:
        return cluster_vms_text(plan) + "No changes. The live state matches the plan.\n"
    mode = " (sandbox)" if plan.desired.sandbox else ""
    lines = [
        cluster_vms_text(plan)
        + f"passtplan will perform the following actions on lab {plan.desired.lab}{mode}:",
        "",
    ]
    for change in pending:
        lines += change_text(change)
        lines.append("")
    notes = guest_notes(plan)
    lines += [*notes, ""] if notes else []
    lines.append(plan_summary(pending))
    return "\n".join(lines) + "\n"


def guest_notes(plan: Plan) -> list[str]:
    """A line per VM the sandbox starts whose cloud-init user data its guest does not all do."""
    lines = []
    for change in plan.pending:
        vm = change.after
        if not isinstance(vm, res.Vm) or change.action not in (Action.CREATE, Action.REPLACE):
            continue
        manifest = plan.loaded.manifests.get(vm.name)
        if manifest is None or cloud_init_volume(manifest) is None:
            continue
        if vm.guest_kind == "stand-in":
            lines.append(
                f"note: {vm.address}: cloud-init not applied by the sandbox's stand-in guest "
                "(sandbox: {guest: qemu} applies it)"
            )
        elif skipped := cloud_config(manifest).not_applied:
            what = ", ".join(skipped)
            lines.append(f"note: {vm.address}: cloud-init {what} not applied in the sandbox")
    return lines


def change_text(change: Change) -> list[str]:
    symbol = SYMBOL[change.action]
    why = f" ({change.reason})" if change.reason else ""
    lines = [f"  # {change.address} {VERB[change.action]}{why}", f"  {symbol} {change.address}"]
    if change.covered_by is not None:
        return lines
    before = res.attributes(change.before) or {}
    after = res.attributes(change.after) or {}
    if change.action in (Action.UPDATE, Action.REPLACE):
        for name in change.changed:
            lines.append(f"      ~ {name}: {_value(before.get(name))} -> {_value(after.get(name))}")
        return lines
    shown = after if change.action in (Action.CREATE, Action.READ) else before
    for name, value in shown.items():
        if name in HIDDEN or value is None or value == "" or _is_default(change, name, value):
            continue
        lines.append(f"      {symbol[0]} {name}: {_value(value)}")
    if change.deferred:
        lines.append(f"        state: {KNOWN_AFTER_APPLY}")
    return lines


def _is_default(change: Change, name: str, value: object) -> bool:
    """Attributes a reader need not see: the route's family and the kernel's defaults."""
    resource = change.resource
    if isinstance(resource, res.Route):
        default = {
            "family": value,
            "table": res.MAIN_TABLE,
            "metric": res.DEFAULT_METRIC[resource.family],
            "onlink": False,
        }
        return name in default and default[name] == value
    return isinstance(resource, res.Namespace) and name == "role"


def _value(value: object) -> str:
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def plan_json(plan: Plan) -> str:
    return json.dumps(plan_document(plan), indent=2) + "\n"


def checks_text(results: list[CheckResult]) -> str:
    """The checks as a table: check, from, to, result, time, and what was seen."""
    rows = [("CHECK", "FROM", "TO", "RESULT", "TIME", "DETAIL")]
    for result in results:
        took = "-" if result.status == "skipped" else f"{result.seconds * 1000:.0f} ms"
        check = result.check
        rows.append((result.kind, check.source, check.target, result.status, took, result.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
        for row in rows
    ]
    count = Counter(r.status for r in results)
    lines.append("")
    not_run = f", {count['not run']} could not run" if count["not run"] else ""
    lines.append(
        f"Checks: {count['pass']} passed, {count['fail']} failed{not_run}, "
        f"{count['skipped']} skipped."
    )
    return "\n".join(line.rstrip() for line in lines) + "\n"


def report_text(report: ApplyReport) -> str:
    lines = []
    done = failed = skipped = 0
    for change, outcome in report.outcomes:
        if change.action is Action.NOOP and outcome.status is Status.DONE:
            continue
        symbol = SYMBOL[change.action]
        if outcome.status is Status.DONE:
            done += 1
            lines.append(
                f"  {symbol:3} {change.address}: {outcome.detail} [{outcome.seconds * 1000:.0f} ms]"
            )
        elif outcome.status is Status.FAILED:
            failed += 1
            lines.append(f"  {symbol:3} {change.address}: FAILED: {outcome.detail}")
        else:
            skipped += 1
            lines.append(f"  {symbol:3} {change.address}: skipped: {outcome.detail}")
    for error in report.verify_errors:
        lines.append(f"  verify: {error}")
    verb = "Destroy" if report.plan.destroy else "Apply"
    if any(o.detail == INTERRUPTED for _, o in report.outcomes):
        lines.append(
            f"  interrupted: what ran is recorded; run {verb.lower()} again to finish"
            + ("" if report.plan.destroy else ", or destroy to remove what was made")
        )
    verdict = f"{verb} complete!" if report.ok else f"{verb} failed."
    lines.append("")
    lines.append(
        f"{verdict} Resources: {done} done, {failed} failed, {skipped} skipped"
        f" ({report.seconds:.2f} s)."
    )
    return "\n".join(lines) + "\n"
