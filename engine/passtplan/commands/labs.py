"""`passtplan list`: the labs applied on this machine, from their records under /run/passtplan
(containerlab's `inspect --all`): each one's mode, namespaces, VMs and when it was last applied."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from passtplan import inputs
from passtplan.providers.ownership import JOURNAL, RUN_DIR, OwnershipStore
from passtplan.render import as_format

SANDBOX_SUFFIX = "@sandbox"  # desired.lab_id: a lab's sandbox is recorded as LAB@sandbox


class AppliedLab(msgspec.Struct, frozen=True):
    lab: str
    mode: str  # "node" or "sandbox"
    namespaces: list[str]
    vms: list[str]
    applied: str | None  # the last apply's time (UTC, ISO 8601), from the lab's journal
    record: str


def run(*, output: str, run_dir: Path = RUN_DIR) -> int:
    labs = applied_labs(run_dir)
    if output != "text":
        sys.stdout.write(as_format({"labs": [msgspec.structs.asdict(lab) for lab in labs]}, output))
    elif not labs:
        print(f"No labs are applied on this machine (nothing recorded under {run_dir}).")
    else:
        sys.stdout.write(labs_text(labs))
    return 0


def applied_labs(run_dir: Path) -> list[AppliedLab]:
    """Every lab with a record: a folder holding owned.json or a journal (locks/ holds neither)."""
    found = []
    for folder in sorted(run_dir.glob("*/")) if run_dir.is_dir() else []:
        if not ((folder / "owned.json").exists() or (folder / JOURNAL).exists()):
            continue
        owned = OwnershipStore(folder.name, run_dir).owned
        sandbox = folder.name.endswith(SANDBOX_SUFFIX)
        found.append(
            AppliedLab(
                lab=folder.name.removesuffix(SANDBOX_SUFFIX),
                mode="sandbox" if sandbox else "node",
                namespaces=sorted(owned.namespaces),
                vms=sorted(owned.vms),
                applied=_last_applied(folder / JOURNAL),
                record=str(folder),
            )
        )
    return found


def _last_applied(journal: Path) -> str | None:
    entries = inputs.state_lines(journal)
    last = entries[-1] if entries else None
    if not isinstance(last, dict) or not isinstance(last.get("time"), int | float):
        return None
    return datetime.fromtimestamp(last["time"], UTC).isoformat(timespec="seconds")


def labs_text(labs: list[AppliedLab]) -> str:
    rows = [("LAB", "MODE", "NAMESPACES", "VMS", "APPLIED")]
    for lab in labs:
        applied = lab.applied.replace("T", " ").replace("+00:00", " UTC") if lab.applied else "-"
        rows.append(
            (lab.lab, lab.mode, ",".join(lab.namespaces) or "-", ",".join(lab.vms) or "-", applied)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"
