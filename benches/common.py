"""Shared by the benchmarks: unique lab names, building labs as data, cleaning up, timing."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from passtplan.apply import apply_plan
from passtplan.cycles import load_lab
from passtplan.engine import make_plan, store_for
from passtplan.lang.loader import LoadedLab
from passtplan.providers import kernel
from passtplan.providers.ownership import RUN_DIR, OwnershipStore
from passtplan.providers.session import Session


def unique(stem: str) -> str:
    return f"bn{secrets.token_hex(2)}-{stem}"


def write_lab(directory: Path, data: dict[str, Any]) -> Path:
    path = directory / "lab.yaml"
    with path.open("w") as out:
        YAML(typ="safe", pure=True).dump(data, out)
    return path


def lab(name: str, namespaces: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "passtplan/v1alpha1",
        "kind": "Lab",
        "metadata": {"name": name},
        "namespaces": namespaces,
    }


def apply_lab(directory: Path, data: dict[str, Any]) -> tuple[LoadedLab, OwnershipStore]:
    """Write a lab, apply it (untimed: the setup of a benchmark), and hand back what it needs."""
    loaded = load_lab(write_lab(directory, data))
    store = store_for(loaded, sandbox=False)
    with Session() as session:
        plan = make_plan(loaded, session, store, sandbox=False, destroy=False)
        assert apply_plan(plan, session, store).ok
    return loaded, store


@contextmanager
def cleaned(prefix: str) -> Iterator[None]:
    try:
        yield
    finally:
        for name in kernel.list_netns():
            if name.startswith(prefix):
                subprocess.run(["ip", "netns", "delete", name], check=False)
        for path in RUN_DIR.glob(f"{prefix}*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in (RUN_DIR / "locks").glob(f"{prefix}*"):  # the labs' lock files
            path.unlink(missing_ok=True)


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def ip_batch(netns: str | None, lines: list[str], *, json_out: bool = False) -> float:
    """Time one `ip -batch` run (its process start-up included, as a person would run it)."""
    argv = ["ip", *(["-j"] if json_out else []), *(["-n", netns] if netns else []), "-batch", "-"]
    start = time.perf_counter()
    proc = subprocess.run(
        argv, input="\n".join(lines) + "\n", capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"ip -batch failed: {proc.stderr.strip()[:300]}")
    return seconds


def report(
    rows: list[tuple[str, float]], baseline: str, target: str, ratio: float, met: bool
) -> None:
    base = dict(rows)[baseline]
    print(f"{'measurement':52} {'seconds':>9} {'x baseline':>11}")
    for name, seconds in rows:
        print(f"{name:52} {seconds:9.4f} {seconds / base:11.2f}")
    print(f"\nratio {ratio:.2f} (target {target}): {'met' if met else 'MISSED'}")
