"""The cheap commands stay cheap: --help and validate never import pyroute2 or kubernetes, nor
importlib.metadata (pydantic's plugin loader, replaced while plugins are off)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from passtplan.cli import PLUGIN_LOADER
from tests.conftest import PLANS

HEAVY = ("pyroute2", "kubernetes", "networkx", "importlib.metadata")

PROBE = """
import atexit, json, sys
atexit.register(lambda: open({out!r}, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["passtplan", *{args!r}]
from passtplan.cli import main
main()
"""


def modules_after(args: list[str], tmp_path: object) -> tuple[int, set[str]]:
    out = f"{tmp_path}/modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(out=out, args=args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    with open(out) as handle:
        return proc.returncode, set(json.load(handle))


@pytest.mark.parametrize(
    "args",
    [["--help"], ["validate", str(PLANS / "passt-macvlan/lab.yaml")], ["validate", "--help"]],
    ids=["help", "validate", "validate-help"],
)
def test_no_heavy_imports(args: list[str], tmp_path: object) -> None:
    code, modules = modules_after(args, tmp_path)
    assert code == 0
    loaded = sorted(m for m in modules if m.startswith(HEAVY))
    assert loaded == []
    # The probe itself must be able to see imports: the command did load what it needs.
    assert "typer" in modules
    if args[0] == "validate" and args[1] != "--help":
        assert "passtplan.lang.loader" in modules


def test_pydantic_takes_only_get_plugins_from_its_plugin_loader() -> None:
    """cli stands a module with get_plugins alone in for pydantic's plugin loader: a pydantic
    that takes anything else from it would break every command."""
    package = Path(pydantic.__file__).parent
    loader = package.joinpath(*PLUGIN_LOADER.split(".")[1:]).with_suffix(".py")
    assert loader.is_file()
    taken = set()
    for source in package.rglob("*.py"):
        if source == loader:
            continue
        text = source.read_text()
        assert "_loader." not in text, f"{source} uses the loader's attributes"
        for names in re.findall(r"from \.+_loader import ([\w, ]+)", text):
            taken |= {name.strip() for name in names.split(",")}
    assert taken == {"get_plugins"}
