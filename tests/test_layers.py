"""Imports follow the layers (STYLE.md): the language knows nothing of the engine; the pure
stages touch no kernel or cluster library; providers, render and the commands take the change
module and the resource types, never the diff algorithm, the orchestrator or the guest program.
Records are msgspec Structs: no module imports dataclasses."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "engine" / "passtplan"


def imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_files(*names: str) -> list[Path]:
    files: list[Path] = []
    for name in names:
        path = PACKAGE / name
        files += sorted(path.glob("*.py")) if path.is_dir() else [path]
    return files


def offending(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        name
        for name in imports(path)
        if any(name == f or name.startswith(f"{f}.") for f in forbidden)
    )


@pytest.mark.parametrize("path", module_files("lang"), ids=lambda p: p.name)
def test_the_language_imports_nothing_of_the_engine(path: Path) -> None:
    allowed = ("passtplan.lang", "passtplan.errors", "passtplan.inputs")
    engine = [
        name
        for name in imports(path)
        if name.startswith("passtplan.") and not name.startswith(allowed)
    ]
    assert engine == []


PURE = ("pyroute2", "kubernetes", "subprocess", "passtplan.providers")


@pytest.mark.parametrize(
    "path",
    module_files(
        "changes.py",
        "diff.py",
        "verify.py",
        "desired.py",
        "subnets.py",
        "resources.py",
        "diagram",
    ),
    ids=lambda p: p.name,
)
def test_the_pure_stages_touch_no_kernel_or_cluster(path: Path) -> None:
    assert offending(path, PURE) == []


GUEST_PROGRAM = "passtplan.providers.sandbox.standin_guest"  # run as a process, never imported
CONSUMERS_MUST_NOT = ("passtplan.diff", "passtplan.engine", "passtplan.apply", GUEST_PROGRAM)


@pytest.mark.parametrize(
    "path",
    module_files("providers", "providers/sandbox", "render.py", "changes.py", "diagram"),
    ids=lambda p: p.name,
)
def test_consumers_of_changes_import_the_change_module_not_the_algorithm(path: Path) -> None:
    assert offending(path, CONSUMERS_MUST_NOT) == []


@pytest.mark.parametrize("path", module_files("commands"), ids=lambda p: p.name)
def test_commands_never_import_the_diff_algorithm_or_the_guest(path: Path) -> None:
    assert offending(path, ("passtplan.diff", GUEST_PROGRAM)) == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_records_are_structs_not_dataclasses(path: Path) -> None:
    """One record style, and the cheap one: a dataclass's methods are compiled at import."""
    assert offending(path, ("dataclasses",)) == []
