"""The corpus of bad lab files: each states, in `# expect:` lines at its end (or in a sidecar
NAME.expect when it cannot hold a comment), every message `passtplan validate` must print."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from passtplan.cli import app
from tests.conftest import FIXTURES

BAD = FIXTURES / "bad"
EXPECT = "# expect: "
CASES = sorted(p for p in BAD.glob("*.yaml"))


def expected_lines(case: Path) -> list[str]:
    sidecar = case.with_suffix(".expect")
    if sidecar.exists():
        return sidecar.read_text().splitlines()
    text = case.read_text()
    return [line[len(EXPECT) :] for line in text.splitlines() if line.startswith(EXPECT)]


def test_corpus_is_large_and_every_case_states_its_errors() -> None:
    assert len(CASES) >= 40
    for case in CASES:
        assert expected_lines(case), f"{case.name} states no expected error"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_bad_lab_reports_exact_errors(
    case: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BAD)
    result = cli.invoke(app, ["validate", case.name])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    printed = [line for line in result.stderr.splitlines() if ": warning: " not in line]
    assert printed == expected_lines(case)
