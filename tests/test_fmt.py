"""`passtplan fmt`: canonical key order and indentation, comments and flow style kept, the same
lab afterwards, idempotent; --check exits 3 and lists the files that would change."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from passtplan.cli import app
from passtplan.lang.loader import load_lab
from tests.conftest import PLANS

SCRAMBLED = """\
# yaml-language-server: $schema=../../schemas/lab.schema.json
kind: Lab
namespaces:
  b:
    links:
      v0: {peer: a/v0, kind: veth, addresses: [10.0.0.2/24]}   # the far end
    routes:
    - {via: 10.0.0.1, to: 10.8.0.0/16}
  a:
    sysctls: {net.ipv4.ip_forward: "1"}
    links:
      v0:
        addresses: [10.0.0.1/24]
        mtu: 9000        # jumbo
        kind: veth
        peer: b/v0
metadata: {name: fmt-test}
apiVersion: passtplan/v1alpha1
checks:
    - {ping: 10.0.0.2, from: a}
"""

CANONICAL = """\
# yaml-language-server: $schema=../../schemas/lab.schema.json
apiVersion: passtplan/v1alpha1
kind: Lab
metadata: {name: fmt-test}
namespaces:
  b:
    links:
      v0: {kind: veth, addresses: [10.0.0.2/24], peer: a/v0}   # the far end
    routes:
      - {to: 10.8.0.0/16, via: 10.0.0.1}
  a:
    links:
      v0:
        kind: veth
        mtu: 9000        # jumbo
        addresses: [10.0.0.1/24]
        peer: b/v0
    sysctls: {net.ipv4.ip_forward: "1"}
checks:
  - {from: a, ping: 10.0.0.2}
"""


def _lab(tmp_path: Path, text: str = SCRAMBLED) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


def test_check_exits_3_listing_the_file_and_changes_nothing(cli: CliRunner, tmp_path: Path) -> None:
    path = _lab(tmp_path)
    result = cli.invoke(app, ["fmt", "--check", str(path)])
    assert (result.exit_code, result.stdout) == (3, f"{path}\n")
    assert path.read_text() == SCRAMBLED


def test_fmt_rewrites_in_canonical_form_keeping_comments_then_check_passes(
    cli: CliRunner, tmp_path: Path
) -> None:
    path = _lab(tmp_path)
    before = load_lab(path).lab
    result = cli.invoke(app, ["fmt", str(tmp_path)])  # a folder means its lab.yaml
    assert (result.exit_code, result.stdout) == (0, f"{path}\n")
    assert path.read_text() == CANONICAL
    assert re.findall(r"#.*", CANONICAL) == re.findall(r"#.*", SCRAMBLED)  # every comment kept
    assert load_lab(path).lab == before  # the same lab
    again = cli.invoke(app, ["fmt", "--check", str(path)])
    assert (again.exit_code, again.stdout) == (0, "")
    assert cli.invoke(app, ["fmt", str(path)]).stdout == ""  # idempotent
    assert path.read_text() == CANONICAL


def test_the_repos_plans_are_canonical(cli: CliRunner) -> None:
    labs = sorted(str(p) for p in PLANS.glob("*/lab.yaml"))
    result = cli.invoke(app, ["fmt", "--check", *labs])
    assert (result.exit_code, result.stdout) == (0, "")


def test_broken_yaml_is_one_line_naming_the_place(cli: CliRunner, tmp_path: Path) -> None:
    path = _lab(tmp_path, "kind: Lab\nmetadata: {name: x\n")
    result = cli.invoke(app, ["fmt", "--check", str(path)])
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: {path}:")


def test_a_file_it_cannot_write_is_one_line_and_left_as_it_was(
    cli: CliRunner, tmp_path: Path
) -> None:
    path = _lab(tmp_path)
    (tmp_path / ".lab.yaml.tmp").mkdir()  # where fmt writes first: unwritable even for root
    result = cli.invoke(app, ["fmt", str(path)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {path}: cannot write the formatted lab file (Is a directory); make the file "
        "and its folder writable\n"
    )
    assert path.read_text() == SCRAMBLED
