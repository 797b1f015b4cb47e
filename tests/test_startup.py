"""The cheap commands stay cheap: --help and validate never import pyroute2 or kubernetes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PLANS

HEAVY = ("pyroute2", "kubernetes", "networkx")

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
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert loaded == []
    # The probe itself must be able to see imports: the command did load what it needs.
    assert "typer" in modules
    if args[0] == "validate" and args[1] != "--help":
        assert "passtplan.lang.loader" in modules
