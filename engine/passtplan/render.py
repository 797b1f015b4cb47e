"""Plans and reports as text (the way Terraform users read them) and as JSON. Pure: data in,
strings out; computing a diff and showing it stay apart.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import TYPE_CHECKING

import yaml

from passtplan import resources as res
from passtplan import style
from passtplan.changes import (
    Action,
    ApplyReport,
    Change,
    Plan,
    counts,
    plan_document,
    plan_summary,
    show_value,
)
from passtplan.lang.manifest import cloud_init_volume
from passtplan.walk import INTERRUPTED, Status

if TYPE_CHECKING:  # the checks' probes load only when checks run
    from passtplan.providers.checks import CheckResult

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
        return (
            cluster_vms_text(plan)
            + warnings_text(plan)
            + "No changes. The live state matches the plan.\n"
        )
    mode = " (sandbox)" if plan.desired.sandbox else ""
    lines = [
        cluster_vms_text(plan)
        + warnings_text(plan)
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


def warnings_text(plan: Plan) -> str:
    """What a reader must know before the actions: a partial plan (as Terraform warns of
    -target), and changes to this machine's own root namespace."""
    lines = []
    if plan.targets:
        lines.append(
            f"Warning: resource targeting is in effect (--target {', '.join(plan.targets)}): "
            "this plan is partial and may not show every change the lab asks for; --target is "
            "for exceptional cases, such as recovering from a failed step."
        )
    roots = {
        name
        for name, ns in plan.desired.namespaces.items()
        if ns.role is res.NamespaceRole.HOST and not plan.desired.sandbox
    }
    there = [c for c in plan.pending if getattr(c.resource, "namespace", None) in roots]
    if there:
        lines.append(
            "Warning: this plan changes this machine's own root namespace (the lab's host; "
            "with --sandbox it would be a namespace of its own):"
        )
        lines += [f"  {SYMBOL[c.action]} {c.address} {VERB[c.action]}" for c in there]
    return "\n".join(lines) + "\n\n" if lines else ""


def guest_notes(plan: Plan) -> list[str]:
    """A line per VM the sandbox starts whose cloud-init user data its guest does not all do."""
    starting = [
        change.after
        for change in plan.pending
        if isinstance(change.after, res.Vm) and change.action in (Action.CREATE, Action.REPLACE)
    ]
    if not starting:
        return []
    from passtplan.lang.cloudinit import cloud_config  # noqa: PLC0415 - VMs only

    lines = []
    for vm in starting:
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
            lines.append(
                f"      ~ {name}: {show_value(before.get(name))} -> {show_value(after.get(name))}"
            )
        return lines
    shown = after if change.action in (Action.CREATE, Action.READ) else before
    for name, value in shown.items():
        if name in HIDDEN or value is None or value == "" or _is_default(change, name, value):
            continue
        lines.append(f"      {symbol[0]} {name}: {show_value(value)}")
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
            "protocol": res.DEFAULT_ROUTE_PROTOCOL,
            "scope": resource.natural_scope,
        }
        return name in default and default[name] == value
    return isinstance(resource, res.Namespace) and name == "role"


def plan_json(plan: Plan) -> str:
    return as_format(plan_document(plan), "json")


def as_format(data: object, fmt: str) -> str:
    """A document as `-o json` or `-o yaml` print it: YAML is the same data as the JSON."""
    text = json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        # Through the JSON: exactly its data (enum members are plain strings there).
        return yaml.safe_dump(json.loads(text), sort_keys=False, default_flow_style=False)
    return text


def checks_document(results: list[CheckResult]) -> dict[str, object]:
    """The checks as `check -o json` prints them: each check's status and what was seen."""
    count = Counter(r.status for r in results)
    return {
        "checks": [
            {
                "kind": result.kind,
                "from": result.check.source,
                "to": result.check.target,
                "expect": result.check.expect,
                "status": result.status,
                "detail": result.detail,
                "seconds": None if result.status == "skipped" else round(result.seconds, 6),
            }
            for result in results
        ],
        "summary": {
            "passed": count["pass"],
            "failed": count["fail"],
            "not_run": count["not run"],
            "skipped": count["skipped"],
        },
    }


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
    failed = skipped = 0
    for change, outcome in report.outcomes:
        if change.action is Action.NOOP and outcome.status is Status.DONE:
            continue
        symbol = SYMBOL[change.action]
        if outcome.status is Status.DONE:
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
    added, changed, destroyed = counts(c for c, o in report.outcomes if o.status is Status.DONE)
    unfinished = f"; {failed} failed, {skipped} skipped" if failed or skipped else ""
    lines.append("")
    lines.append(
        f"{verdict} Resources: {added} added, {changed} changed, {destroyed} destroyed"
        f"{unfinished} ({report.seconds:.2f} s)."
    )
    return "\n".join(lines) + "\n"


# --- colour: the text above, painted line by line on a terminal ------------------------------

SYMBOL_COLOR = {
    "+": style.GREEN,
    "-": style.RED,
    "~": style.YELLOW,
    "-/+": style.RED,
    "<=": style.CYAN,
}
STATUS_COLOR = {
    "pass": style.GREEN,
    "fail": style.RED,
    "not run": style.RED,
    "skipped": style.YELLOW,
}
_SYMBOL_LINE = re.compile(r"^(\s+)(-/\+|<=|[-+~])(?= )")
_HEADING = re.compile(r"^(  )(# \S+)")
_FAILED = re.compile(r"(?<=: )FAILED(?=: )")
_VERDICT = re.compile(r"^(\w+ complete!|No changes\.)|^(\w+ failed\.)|^(Plan:)")


def colored(text: str) -> str:
    """Plan, apply report and checks text as Terraform colours it on a terminal: green create,
    yellow update, red destroy and replace, each check's result; unchanged when colour is off."""
    if not style.enabled():
        return text
    lines = text.split("\n")
    result_column = None
    for i, line in enumerate(lines):
        if line.startswith("  CHECK ") and "RESULT" in line:
            result_column = line.index("RESULT")
        elif result_column is not None and line:
            lines[i] = _paint_status(line, result_column)
        else:
            result_column = None
            lines[i] = _paint_line(line)
    return "\n".join(lines)


def _paint_line(line: str) -> str:
    line = _SYMBOL_LINE.sub(lambda m: m[1] + style.paint(m[2], SYMBOL_COLOR[m[2]]), line)
    line = _HEADING.sub(lambda m: m[1] + style.paint(m[2], style.BOLD), line)
    line = _FAILED.sub(lambda m: style.paint(m[0], style.RED), line, count=1)
    match = _VERDICT.match(line)
    if match is None:
        return line
    color = {1: (style.BOLD, style.GREEN), 2: (style.BOLD, style.RED), 3: (style.BOLD,)}
    group = match.lastindex or 0
    return style.paint(match[group], *color[group]) + line[match.end() :]


def _paint_status(line: str, column: int) -> str:
    for status, color in STATUS_COLOR.items():
        if line.startswith(status, column):
            end = column + len(status)
            return line[:column] + style.paint(status, color) + line[end:]
    return line
