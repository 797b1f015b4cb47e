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


def seed_lab(guest: str = "stand-in") -> str:
    """The seed lab's file, named LABNAME, its sandbox's VMs run by `guest`: the Python stand-in
    unless a test is about QEMU (it starts in a fraction of a second, QEMU in seconds)."""
    text = (PLANS / "passt-macvlan" / "lab.yaml").read_text()
    text = text.replace("name: passt-macvlan\n", "name: LABNAME\n", 1)
    return text.replace("\nsandbox:", f"\nsandbox:\n  guest: {guest}", 1)
