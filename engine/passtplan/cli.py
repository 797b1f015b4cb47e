"""The command line: parse, call the command's module, exit with its code. Nothing else.

Command modules are imported inside each command, so `passtplan --help` loads neither the models
nor pyroute2 or kubernetes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from passtplan import __version__

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

    raise typer.Exit(command.run(paths))


@app.command()
def schema() -> None:
    """Print the JSON Schema of the plan language (schemas/lab.schema.json)."""
    from passtplan.spec.schema import lab_json_schema_text

    sys.stdout.write(lab_json_schema_text())


def main() -> None:
    """Entry point: user errors are one line and exit 1; a traceback only with PASSTPLAN_DEBUG."""
    from passtplan.errors import PasstplanError

    try:
        app()
    except PasstplanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        if os.environ.get("PASSTPLAN_DEBUG"):
            raise
        print(
            f"internal error (a bug in passtplan, please report it): {type(exc).__name__}: {exc}; "
            "run again with PASSTPLAN_DEBUG=1 for the traceback",
            file=sys.stderr,
        )
        sys.exit(1)
