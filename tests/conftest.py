from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
PLANS = REPO / "plans"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()
