"""The command line: parse, call the command's module, exit with its code. Nothing else.

Command modules are imported inside each command, so `passtplan --help` loads neither the models
nor pyroute2 or kubernetes. The annotations are not postponed (no `from __future__ import
annotations`): typer reads every command's signature at each start, and evaluating them from
strings cost ~20 ms of every command.
"""

import gc
import os
import sys
import types
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperArgument, TyperGroup

from passtplan import __version__

if TYPE_CHECKING:
    from passtplan.engine import ClusterFlags

CHANGING = frozenset({"apply", "destroy", "rollback"})  # never offered for a mistyped command


class PlainArgument(TyperArgument):
    """An argument written as its name alone (`PLAN`, `[CMD]...`), as click, Terraform and kubectl
    write them; typer 0.29 writes `{PLAN}` in the usage line and `PLAN <path>` in the list."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name if self.nargs == 1 else f"{name}..."


class Commands(TyperGroup):
    """Commands; a mistyped one is answered with the closest commands that only read, so a
    typo never leads to a change of the machine (`deploy` is no `destroy`)."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:  # typer's own click types
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            from difflib import get_close_matches

            reading = [command for command in self.list_commands(ctx) if command not in CHANGING]
            matches = get_close_matches(name, reading)
            hint = f" Did you mean {', '.join(map(repr, matches))}?" if matches else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        for param in getattr(command, "params", ()):
            if type(param) is TyperArgument:  # typer makes them; only their looks change
                param.__class__ = PlainArgument
        return command


app = typer.Typer(
    name="passtplan",
    cls=Commands,
    suggest_commands=False,
    help="Plan and apply KubeVirt passt + macvlan network labs, or try them in a sandbox.",
    no_args_is_help=True,
    # --install-completion and --show-completion cost --help nothing measurable: typer imports
    # its completion code whether it offers them or not.
    # -h as well as --help, on every command: click hands the names down to subcommands.
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    # Rich help boxes import rich.markdown and markdown-it (~160 ms, most of --help's start-up);
    # plain click help keeps `passtplan --help` within 1.3x of importing pydantic + typer + ruamel.
    rich_markup_mode=None,
)


class GraphFormat(StrEnum):
    DOT = "dot"
    MERMAID = "mermaid"


class DiagramFormat(StrEnum):
    SVG = "svg"
    PNG = "png"
    DOT = "dot"
    MERMAID = "mermaid"


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    YAML = "yaml"


def _no_color(value: bool) -> None:
    if value:
        from passtplan import style

        style.disable()


NoColor = Annotated[
    bool,
    typer.Option(
        "--no-color",
        callback=_no_color,
        expose_value=False,
        help="No colour, even on a terminal (so does NO_COLOR=1).",
    ),
]
Output = Annotated[
    OutputFormat | None,
    typer.Option("--output", "-o", help="Output format.", case_sensitive=False, show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Short for -o json.")]


def _output(output: OutputFormat | None, as_json: bool, default: OutputFormat) -> str:
    """-o as given, --json its short form; both at once must agree."""
    if as_json and output not in (None, OutputFormat.JSON):
        raise typer.BadParameter(f"--json and -o {output} disagree: give one", param_hint="-o")
    return (OutputFormat.JSON if as_json else (output or default)).value


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
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Log each netlink request and Kubernetes call, timed, to stderr "
            "(so does PASSTPLAN_LOG=debug).",
        ),
    ] = False,
    no_color: NoColor = False,
) -> None:
    """Plan and apply KubeVirt passt + macvlan network labs, or try them in a sandbox."""
    if verbose or os.environ.get("PASSTPLAN_LOG", "").lower() == "debug":
        from passtplan.log import log_to_stderr

        log_to_stderr()


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


def _sandbox(does: str) -> Any:
    """The --sandbox option, saying what it does for its command."""
    return typer.Option("--sandbox", help=does)


PlanSandbox = Annotated[
    bool,
    _sandbox(
        "Plan the lab's sandbox: every namespace (host too) is LAB.NS on this machine, with "
        "the sandbox: section; this machine's root namespace is not touched."
    ),
]
ApplySandbox = Annotated[
    bool,
    _sandbox(
        "Build the lab and its sandbox: section in network namespaces LAB.NS, with the VMs "
        "run locally (passt and a guest); this machine's root namespace is not touched."
    ),
]
DestroySandbox = Annotated[
    bool,
    _sandbox(
        "Remove the lab's sandbox (its LAB.NS namespaces, its VMs' passt and guests), not "
        "the lab applied on this node."
    ),
]
CheckSandbox = Annotated[
    bool,
    _sandbox("Run the checks in the lab's sandbox, from its LAB.NS namespaces and VMs' guests."),
]
RollbackSandbox = Annotated[
    bool, _sandbox("Undo the last apply of the lab's sandbox, not of the lab on this node.")
]
ShowSandbox = Annotated[
    bool, _sandbox("With --lab: show the lab's sandbox namespaces (LAB.NS), host included.")
]
GraphSandbox = Annotated[bool, _sandbox("The action graph of the sandbox's plan.")]


Kubeconfig = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        help="The cluster's kubeconfig (default: $KUBECONFIG, ~/.kube/config).",
        metavar="FILE",
    ),
]
Context = Annotated[
    str | None,
    typer.Option("--context", help="The kubeconfig context to use.", metavar="NAME"),
]
Node = Annotated[
    str | None,
    typer.Option(
        "--node",
        help="This node's name in the cluster (default: $NODE_NAME, hostname).",
        metavar="NAME",
    ),
]
KubeletRoot = Annotated[
    str, typer.Option("--kubelet-root", help="Where kubelet keeps its pods.", metavar="DIR")
]
Wait = Annotated[
    float,
    typer.Option(
        "--wait", help="Seconds to wait for a VM to be Running and Ready.", metavar="SECONDS"
    ),
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
Targets = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        help="Only this resource (as the plan names it: link.pod/macvlan1) and what it needs "
        "made first; repeatable.",
        metavar="ADDRESS",
    ),
]
DestroyTargets = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        help="Only this resource and what depends on it; repeatable.",
        metavar="ADDRESS",
    ),
]


@app.command()
def plan(
    path: PlanFile,
    sandbox: PlanSandbox = False,
    output: Output = None,
    as_json: AsJson = False,
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
    no_color: NoColor = False,
    target: Targets = None,
) -> None:
    """Show what apply would change on this machine."""
    from passtplan.commands import plan as command

    flags = _flags(kubeconfig, context, node, kubelet_root, 300.0)
    fmt = _output(output, as_json, OutputFormat.TEXT)
    _exit(
        lambda: command.run(
            path,
            sandbox=sandbox,
            output=fmt,
            out=out,
            detailed_exitcode=detailed_exitcode,
            flags=flags,
            targets=tuple(target or ()),
        )
    )


@app.command()
def apply(
    path: Annotated[
        Path,
        typer.Argument(help="A lab file, or a plan saved by `plan --out`.", metavar="PLAN|SAVED"),
    ],
    sandbox: ApplySandbox = False,
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
    no_color: NoColor = False,
    target: Targets = None,
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
            targets=tuple(target or ()),
        )
    )


@app.command()
def rollback(
    path: PlanFile,
    sandbox: RollbackSandbox = False,
    auto_approve: AutoApprove = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    lock_timeout: LockTimeout = 0.0,
    no_color: NoColor = False,
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
    sandbox: DestroySandbox = False,
    auto_approve: AutoApprove = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    lock_timeout: LockTimeout = 0.0,
    no_color: NoColor = False,
    target: DestroyTargets = None,
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
            targets=tuple(target or ()),
        )
    )


@app.command()
def check(
    path: PlanFile,
    sandbox: CheckSandbox = False,
    output: Output = None,
    as_json: AsJson = False,
    no_color: NoColor = False,
) -> None:
    """Run the lab's checks (ping, tcp) and print them as a table."""
    from passtplan.commands import check as command

    fmt = _output(output, as_json, OutputFormat.TEXT)
    _exit(lambda: command.run(path, sandbox=sandbox, output=fmt))


@app.command()
def show(
    saved: Annotated[
        Path | None,
        typer.Argument(
            help="A plan saved by `plan --out`: print it as the plan did.",
            metavar="SAVED_PLAN",
            show_default=False,
        ),
    ] = None,
    netns: Annotated[
        list[str] | None,
        typer.Option(
            "--netns",
            help="A network namespace to show ('host': this machine's own).",
            metavar="NAME",
        ),
    ] = None,
    output: Output = None,
    as_json: AsJson = False,
    lab: Annotated[
        Path | None,
        typer.Option(
            "--lab", help="Show this lab's namespaces, by the lab's names.", metavar="PLAN"
        ),
    ] = None,
    sandbox: ShowSandbox = False,
    no_color: NoColor = False,
) -> None:
    """Print the live state of network namespaces in the plan language (-o text is its YAML), or
    a plan saved by `plan --out`."""
    from passtplan.commands import show as command

    fmt = _output(output, as_json, OutputFormat.TEXT)
    _exit(lambda: command.run(netns or [], output=fmt, lab=lab, sandbox=sandbox, saved=saved))


@app.command()
def graph(
    path: PlanFile,
    sandbox: GraphSandbox = False,
    fmt: Annotated[
        GraphFormat,
        typer.Option("--format", help="dot or mermaid.", metavar="FORMAT", case_sensitive=False),
    ] = GraphFormat.DOT,
) -> None:
    """Print the action graph of the plan (the order apply keeps, not the topology: see
    diagram), without redundant edges: u -> v is left out when another path leads from u to v
    (a transitive reduction)."""
    from passtplan.commands import graph as command

    _exit(lambda: command.run(path, sandbox=sandbox, fmt=fmt.value))


@app.command()
def diagram(
    path: PlanFile,
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox", help="Draw the lab as --sandbox builds it, with its surroundings."
        ),
    ] = False,
    fmt: Annotated[
        DiagramFormat | None,
        typer.Option(
            "--format",
            help="svg and png are drawn by Graphviz's dot (apt-get install graphviz). "
            "Default: the --out suffix's (.svg, .png, .dot, .gv, .mmd), else dot.",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the picture there, not to stdout.", metavar="FILE"),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Observe the lab as plan does and colour what differs: missing (red, dashed), "
            "drifted (orange), foreign (grey). Needs root.",
        ),
    ] = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Draw the lab: namespaces, links and their addresses, wires, gateways, VMs and passt.

    DOT goes to stdout, as `terraform graph`: `passtplan diagram PLAN | dot -Tsvg > lab.svg`;
    or `--out lab.svg` draws it. `graph` draws the action graph instead."""
    from passtplan.commands import diagram as command

    flags = _flags(kubeconfig, context, None, "/var/lib/kubelet", 300.0)
    _exit(
        lambda: command.run(
            path,
            sandbox=sandbox,
            fmt=fmt.value if fmt else None,
            out=out,
            live=live,
            flags=flags,
        )
    )


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
        bool, _sandbox("Log in to the lab as applied with --sandbox, with the lab's own key.")
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
) -> "ClusterFlags":
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
def version(
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig",
            help="Also ask this cluster its KubeVirt version (default: no cluster).",
            metavar="FILE",
        ),
    ] = None,
    context: Context = None,
    output: Output = None,
) -> None:
    """Print the versions of passtplan, passt, QEMU, the kernel, and the cluster's KubeVirt."""
    from passtplan.commands import version as command

    fmt = _output(output, False, OutputFormat.TEXT)
    _exit(lambda: command.run(output=fmt, kubeconfig=kubeconfig, context=context))


@app.command("list")
def list_labs(output: Output = None) -> None:
    """List the labs applied on this machine: mode, namespaces, VMs, when applied."""
    from passtplan.commands import labs as command

    fmt = _output(output, False, OutputFormat.TEXT)
    _exit(lambda: command.run(output=fmt))


@app.command()
def fmt(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Lab files or their folders (default: ./lab.yaml).", metavar="PLAN"),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Change nothing; exit 3 if a file is not canonical."),
    ] = False,
) -> None:
    """Rewrite lab files in canonical form (key order, indentation), keeping comments; list
    the files changed."""
    from passtplan.commands import fmt as command

    _exit(lambda: command.run(paths or [Path("lab.yaml")], check=check))


@app.command()
def schema() -> None:
    """Print the JSON Schema of the plan language (schemas/lab.schema.json)."""
    from passtplan.lang.schema import lab_json_schema_text

    sys.stdout.write(lab_json_schema_text())


PLUGIN_LOADER = "pydantic.plugin._loader"
PLUGINS_OFF = ("__all__", "1", "true")  # the values for which pydantic's get_plugins returns ()


def _without_plugin_loader() -> None:
    """pydantic imports its plugin loader, and with it importlib.metadata (~40 ms here), when it
    builds its first validator, and only then reads PYDANTIC_DISABLE_PLUGINS. With plugins off,
    the loader's one function returns no plugins: a module with that function stands in for it.
    (test_startup checks that get_plugins is all pydantic takes from the loader.)"""
    if (
        os.environ.get("PYDANTIC_DISABLE_PLUGINS") in PLUGINS_OFF
        and PLUGIN_LOADER not in sys.modules
    ):
        loader = types.ModuleType(PLUGIN_LOADER, "pydantic's plugin loader with plugins off")
        loader.get_plugins = tuple  # type: ignore[attr-defined]
        sys.modules[PLUGIN_LOADER] = loader


def main() -> None:
    """Entry point: anything but a user's error is a bug, shown as one line unless debugging."""
    # pydantic looks for plugins in every installed distribution's entry points (~30 ms of each
    # start); passtplan's models use none. A user who wants some can still set the variable.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _without_plugin_loader()
    try:
        # The name completion scripts are written for, however passtplan was started.
        app(prog_name="passtplan")
    except Exception as exc:
        if os.environ.get("PASSTPLAN_DEBUG"):
            raise
        print(
            f"internal error (a bug in passtplan, please report it): {type(exc).__name__}: {exc}; "
            "run again with PASSTPLAN_DEBUG=1 for the traceback",
            file=sys.stderr,
        )
        sys.exit(1)
    finally:
        # What the command made (models, schemas, the observed state) lives until exit anyway;
        # frozen, the collection Python runs at shutdown skips it: ~0.1 s of a no-op plan.
        gc.freeze()
