"""`passtplan diagram`: a picture of the lab (namespaces, links, wires, gateways, VMs), in DOT or
Mermaid text, or drawn as SVG or PNG by Graphviz's `dot`; with --live, marked against the live
state as `plan` observes it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from passtplan import inputs
from passtplan.commands.common import load
from passtplan.desired import Desired, desired_state
from passtplan.diagram.dot import to_dot
from passtplan.diagram.mermaid import to_mermaid
from passtplan.diagram.topology import Live, lab_topology
from passtplan.engine import (
    ClusterFlags,
    cluster_context,
    make_plan,
    open_files_limit,
    require_root,
    store_for,
)
from passtplan.errors import PasstplanError
from passtplan.lang.loader import LoadedLab
from passtplan.providers.session import Session

DRAWN = ("svg", "png")  # the formats Graphviz draws; dot and mermaid are text
BY_SUFFIX = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot", ".mmd": "mermaid"}
DOT_TIMEOUT = 60.0  # seconds: a lab of thousands of links lays out in a few


def output_format(fmt: str | None, out: Path | None) -> str:
    """The format asked for; else the one --out's suffix names; else DOT, as `terraform graph`."""
    if fmt is not None:
        return fmt
    return BY_SUFFIX.get(out.suffix.lower(), "dot") if out is not None else "dot"


def run(
    path: Path,
    *,
    sandbox: bool,
    fmt: str | None,
    out: Path | None,
    live: bool,
    flags: ClusterFlags | None = None,
) -> int:
    chosen = output_format(fmt, out)
    if out is not None:
        inputs.out_path(out)
    elif chosen == "png" and sys.stdout.isatty():
        raise PasstplanError("a PNG is no text for a terminal: give --out FILE.png")
    loaded = load(path)
    if out is not None:
        inputs.out_path(out, lab=loaded.path)
    topology = lab_topology(*_state(loaded, sandbox=sandbox, live=live, flags=flags))
    text = to_mermaid(topology) if chosen == "mermaid" else to_dot(topology)
    picture = draw(text, chosen) if chosen in DRAWN else text.encode()
    if out is None:
        sys.stdout.buffer.write(picture)
        sys.stdout.flush()
    else:
        inputs.write_out(out, picture, what="the picture")
    return 0


def _state(
    loaded: LoadedLab, *, sandbox: bool, live: bool, flags: ClusterFlags | None
) -> tuple[Desired, Live | None]:
    """The lab's desired state; with `live`, the live state and the changes a plan finds."""
    if not live:
        desired = desired_state(
            loaded.lab, sandbox=sandbox, manifests=loaded.manifests, open_files=open_files_limit()
        )
        return desired, None
    require_root("diagram --live")
    cluster = cluster_context(loaded, sandbox=sandbox, flags=flags)
    with Session() as session:
        plan = make_plan(
            loaded,
            session,
            store_for(loaded, sandbox=sandbox),
            sandbox=sandbox,
            destroy=False,
            cluster=cluster,
        )
    return plan.desired, Live(plan.state, plan.changes)


def draw(dot_text: str, fmt: str) -> bytes:
    """The picture, as Graphviz's `dot` lays it out and draws it."""
    dot = shutil.which("dot")
    if dot is None:
        raise PasstplanError(
            f"drawing {fmt.upper()} needs Graphviz's dot, which is not installed: "
            "apt-get install graphviz (or use --format dot or mermaid, which need nothing)"
        )
    try:
        done = subprocess.run(
            [dot, f"-T{fmt}"],
            input=dot_text.encode(),
            capture_output=True,
            check=False,
            timeout=DOT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise PasstplanError(
            f"dot took over {DOT_TIMEOUT:.0f} s to lay out the lab; use --format dot and "
            "draw it with another Graphviz layout (e.g. sfdp)"
        ) from None
    if done.returncode != 0:
        first = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[0]
        raise PasstplanError(f"dot failed to draw the lab ({first}); a bug in passtplan's DOT")
    return done.stdout
