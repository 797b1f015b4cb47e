from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from passtplan import __version__
from passtplan.cli import app


def test_version(cli: CliRunner) -> None:
    result = cli.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"passtplan {__version__}\n"


@pytest.mark.parametrize("command", [[], ["validate"], ["schema"]])
def test_every_command_has_help(cli: CliRunner, command: list[str]) -> None:
    result = cli.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.stdout


def test_validate_needs_a_file(cli: CliRunner) -> None:
    result = cli.invoke(app, ["validate"])
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr


def test_missing_file_is_one_line(cli: CliRunner) -> None:
    result = cli.invoke(app, ["validate", "no/such/lab.yaml"])
    assert result.exit_code == 1
    assert result.stderr == "no/such/lab.yaml: no such file; check the path of the lab file\n"


def test_console_script_runs_as_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "passtplan", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout) == (0, f"passtplan {__version__}\n")
