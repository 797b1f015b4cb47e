"""The command line: parse, call the command's module, exit with its code. Nothing else.

Command modules are imported inside each command, so `passtplan --help` loads neither the models
nor pyroute2 or kubernetes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from passtplan import __version__

if TYPE_CHECKING:
    from passtplan.engine import ClusterFlags

app = typer.Typer(
    name="passtplan",
    help="Plan and apply KubeVirt passt + macvlan network labs, or try them in a sandbox.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Rich help boxes import rich.markdown and markdown-it (~160 ms, most of --help's start-up);
    # plain click help keeps `passtplan --help` within 1.3x of importing pydantic + typer + ruamel.
    rich_markup_mode=None,
)


class GraphFormat(StrEnum):
    DOT = "dot"
    MERMAID = "mermaid"


PlanFiles = Annotated[
    list[Path],
    typer.Argument(help="Lab files to check.", metavar="PLAN"),
]


def _version(value: bool) -> None:
    if value:
        print(f"passtplan {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Plan and apply KubeVirt passt + macvlan network labs, or try them in a sandbox."""


@app.command()
def validate(paths: PlanFiles) -> None:
    """Check lab files: the schema and every lab-wide rule, all errors at once."""
    from passtplan.commands import validate as command

    _exit(lambda: command.run(paths))


PlanFile = Annotated[Path, typer.Argument(help="The lab file.", metavar="PLAN", show_default=False)]
Sandbox = Annotated[
    bool,
    typer.Option(
        "--sandbox", help="Build the lab and its surroundings in network namespaces named LAB.NS."
    ),
]
Kubeconfig = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        help="The cluster's kubeconfig (default: $KUBECONFIG, ~/.kube/config).",
        metavar="FILE",
    ),
]
Context = Annotated[str | None, typer.Option("--context", help="The kubeconfig context to use.")]
Node = Annotated[
    str | None,
    typer.Option("--node", help="This node's name in the cluster (default: $NODE_NAME, hostname)."),
]
KubeletRoot = Annotated[
    str, typer.Option("--kubelet-root", help="Where kubelet keeps its pods.", metavar="DIR")
]
Wait = Annotated[
    float, typer.Option("--wait", help="Seconds to wait for a VM to be Running and Ready.")
]
AutoApprove = Annotated[
    bool, typer.Option("--auto-approve", help="Do not ask for confirmation before changing.")
]
LockTimeout = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        help="Seconds to wait for another apply or destroy of the lab to finish (0: fail at once).",
        metavar="SECONDS",
        min=0,
    ),
]


@app.command()
def plan(
    path: PlanFile,
    sandbox: Sandbox = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Save the plan for `apply FILE`.", metavar="FILE")
    ] = None,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 2 when there are changes.")
    ] = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    node: Node = None,
    kubelet_root: KubeletRoot = "/var/lib/kubelet",
) -> None:
    """Show what apply would change on this machine."""
    from passtplan.commands import plan as command

    flags = _flags(kubeconfig, context, node, kubelet_root, 300.0)
    _exit(
        lambda: command.run(
            path,
            sandbox=sandbox,
            as_json=as_json,
            out=out,
            detailed_exitcode=detailed_exitcode,
            flags=flags,
        )
    )


@app.command()
def apply(
    path: Annotated[
        Path,
        typer.Argument(help="A lab file, or a plan saved by `plan --out`.", metavar="PLAN|SAVED"),
    ],
    sandbox: Sandbox = False,
    auto_approve: AutoApprove = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    node: Node = None,
    kubelet_root: KubeletRoot = "/var/lib/kubelet",
    wait: Wait = 300.0,
    lock_timeout: LockTimeout = 0.0,
    rollback_on_failure: Annotated[
        bool,
        typer.Option(
            "--rollback-on-failure",
            help="When an action or a check fails, undo what this apply did.",
        ),
    ] = False,
) -> None:
    """Make the live state match the lab, in dependency order, then verify it."""
    from passtplan.commands import apply as command

    flags = _flags(kubeconfig, context, node, kubelet_root, wait)
    _exit(
        lambda: command.run(
            path,
            sandbox=sandbox,
            auto_approve=auto_approve,
            flags=flags,
            lock_timeout=lock_timeout,
            rollback_on_failure=rollback_on_failure,
        )
    )


@app.command()
def rollback(
    path: PlanFile,
    sandbox: Sandbox = False,
    auto_approve: AutoApprove = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    lock_timeout: LockTimeout = 0.0,
) -> None:
    """Undo the last apply of the lab, from its journal, and check the state is as before it."""
    from passtplan.commands import rollback as command

    flags = _flags(kubeconfig, context, None, "/var/lib/kubelet", 300.0)
    _exit(
        lambda: command.run(
            path,
            sandbox=sandbox,
            auto_approve=auto_approve,
            flags=flags,
            lock_timeout=lock_timeout,
        )
    )


@app.command()
def destroy(
    path: PlanFile,
    sandbox: Sandbox = False,
    auto_approve: AutoApprove = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    lock_timeout: LockTimeout = 0.0,
) -> None:
    """Remove everything the lab made, in reverse dependency order."""
    from passtplan.commands import apply as command

    flags = _flags(kubeconfig, context, None, "/var/lib/kubelet", 300.0)
    _exit(
        lambda: command.run(
            path,
            sandbox=sandbox,
            auto_approve=auto_approve,
            destroy=True,
            flags=flags,
            lock_timeout=lock_timeout,
        )
    )


@app.command()
def check(path: PlanFile, sandbox: Sandbox = False) -> None:
    """Run the lab's checks (ping, tcp) and print them as a table."""
    from passtplan.commands import check as command

    _exit(lambda: command.run(path, sandbox=sandbox))


@app.command()
def show(
    netns: Annotated[
        list[str] | None,
        typer.Option(
            "--netns",
            help="A network namespace to show ('host': this machine's own).",
            metavar="NAME",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of YAML.")] = False,
    lab: Annotated[
        Path | None,
        typer.Option(
            "--lab", help="Show this lab's namespaces, by the lab's names.", metavar="PLAN"
        ),
    ] = None,
    sandbox: Sandbox = False,
) -> None:
    """Print the live state of network namespaces in the plan language."""
    from passtplan.commands import show as command

    _exit(lambda: command.run(netns or [], as_json=as_json, lab=lab, sandbox=sandbox))


@app.command()
def graph(
    path: PlanFile,
    sandbox: Sandbox = False,
    fmt: Annotated[
        GraphFormat, typer.Option("--format", help="Output format.", case_sensitive=False)
    ] = GraphFormat.DOT,
) -> None:
    """Print the action graph of the plan."""
    from passtplan.commands import graph as command

    _exit(lambda: command.run(path, sandbox=sandbox, fmt=fmt.value))


VmName = Annotated[str, typer.Argument(help="The VM's name in the lab.", metavar="VM")]


@app.command()
def ssh(
    path: PlanFile,
    vm: VmName,
    command: Annotated[
        list[str] | None,
        typer.Argument(help="A command to run in the guest, after --.", metavar="CMD"),
    ] = None,
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="The lab as applied with --sandbox (its key).")
    ] = False,
) -> None:
    """Log in to a VM's guest with ssh, from the namespace of the lab's check that reaches it."""
    from passtplan.commands import ssh as command_module

    _exit(lambda: command_module.run(path, vm, command or [], sandbox=sandbox))


@app.command()
def console(path: PlanFile, vm: VmName) -> None:
    """Attach the terminal to a sandbox VM's serial console (Ctrl-] quits)."""
    from passtplan.commands import console as command

    _exit(lambda: command.run(path, vm))


def _flags(
    kubeconfig: str | None, context: str | None, node: str | None, kubelet_root: str, wait: float
) -> ClusterFlags:
    from passtplan.engine import ClusterFlags

    return ClusterFlags(kubeconfig, context, node, kubelet_root, wait)


def _exit(run: Callable[[], int]) -> None:
    """Run a command; a user's error is one line per problem on stderr, and exit 1."""
    from passtplan.commands.common import CommandExit
    from passtplan.errors import PasstplanError

    try:
        code = run()
    except CommandExit as exc:
        code = exc.code
    except PasstplanError as exc:
        for line in str(exc).splitlines() or ["(no message)"]:
            print(f"error: {line}", file=sys.stderr)
        code = 1
    raise typer.Exit(code)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the plan language (schemas/lab.schema.json)."""
    from passtplan.lang.schema import lab_json_schema_text

    sys.stdout.write(lab_json_schema_text())


def main() -> None:
    """Entry point: anything but a user's error is a bug, shown as one line unless debugging."""
    try:
        app()
    except Exception as exc:
        if os.environ.get("PASSTPLAN_DEBUG"):
            raise
        print(
            f"internal error (a bug in passtplan, please report it): {type(exc).__name__}: {exc}; "
            "run again with PASSTPLAN_DEBUG=1 for the traceback",
            file=sys.stderr,
        )
        sys.exit(1)
