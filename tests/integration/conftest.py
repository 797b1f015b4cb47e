"""Root tests in throwaway network namespaces.

Every lab gets a unique name (so its namespaces, LAB-NS, are unique to the run), and a finalizer
removes every namespace and record with that name even when the test fails. The machine's own
root namespace is snapshotted before and after the whole run and must not change.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from passtplan.cli import app
from passtplan.providers import kernel
from passtplan.providers.ownership import RUN_DIR

# Two namespaces joined by a veth, a route in a: the small lab most tests start from. It ends in
# b's links, so a test can add links to b, then namespaces, by appending lines.
TWO = """
apiVersion: passtplan/v1alpha1
kind: Lab
metadata: {name: LABNAME}
namespaces:
  a:
    links:
      v0: {kind: veth, peer: b/v0, addresses: [10.0.0.1/24]}
    routes:
      - {to: 10.8.0.0/16, via: 10.0.0.2}
  b:
    links:
      v0: {kind: veth, peer: a/v0, addresses: [10.0.0.2/24]}
"""

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("integration tests need root", allow_module_level=True)


def unique_pod_ip() -> str:
    """A pod IP no other lab on the machine holds (the seed's sandbox holds 10.233.70.4)."""
    host = f"{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    return f"100.{secrets.choice(range(64, 128))}.{host}"


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """The test's own hands: `ip` is how a person builds foreign state (the engine never does)."""
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def ip_json(*args: str, netns: str | None = None) -> list[dict[str, object]]:
    return json.loads(ip("-j", *args, netns=netns) or "[]")


def root_snapshot() -> dict[str, object]:
    def strip(entries: list[dict[str, object]]) -> list[dict[str, object]]:
        volatile = {"stats64", "stats", "operstate", "linkmode"}
        return [{k: v for k, v in e.items() if k not in volatile} for e in entries]

    return {
        "links": strip(ip_json("link", "show")),
        "addresses": strip(ip_json("address", "show")),
        "routes": ip_json("route", "show", "table", "all"),
        "forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
    }


@pytest.fixture(scope="session", autouse=True)
def root_namespace_untouched() -> Iterator[None]:
    before = root_snapshot()
    yield
    assert root_snapshot() == before, "the machine's own root namespace changed"


class Lab:
    """A lab file with a unique name, and the CLI to drive it."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self.path = directory / "lab.yaml"
        self.cli = CliRunner()

    def write(self, text: str) -> Lab:
        self.path.write_text(text.replace("LABNAME", self.name))
        return self

    def netns(self, namespace: str) -> str:
        return f"{self.name}.{namespace}"

    def run(self, *args: str, code: int | None = 0) -> Result:
        result = self.cli.invoke(app, list(args))
        if code is not None:
            assert result.exit_code == code, f"{args}: exit {result.exit_code}\n{result.output}"
        assert "Traceback" not in result.output
        return result

    def apply(self, *extra: str, code: int = 0) -> Result:
        return self.run("apply", str(self.path), "--auto-approve", *extra, code=code)

    def plan(self, *extra: str, code: int | None = 0) -> Result:
        return self.run("plan", str(self.path), *extra, code=code)

    def destroy(self, *extra: str) -> Result:
        return self.run("destroy", str(self.path), "--auto-approve", *extra)

    def converged(self, *extra: str) -> None:
        result = self.plan("--detailed-exitcode", *extra, code=None)
        assert result.exit_code == 0, f"plan is not empty:\n{result.output}"

    def leftovers(self) -> list[str]:
        found = [n for n in kernel.list_netns() if n.startswith(f"{self.name}.")]
        found += [p.name for p in RUN_DIR.glob(f"{self.name}*")]
        return found


def stop_processes(prefix: str) -> None:
    """passt, QEMU and stand-in guest processes of a lab: their command lines carry its
    unique name (QEMU's names passt's socket)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if prefix in cmdline and ("passt" in cmdline or "standin_guest" in cmdline):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def cleanup(prefix: str) -> None:
    stop_processes(prefix)
    for name in kernel.list_netns():
        if name.startswith(prefix):
            ip("netns", "delete", name, check=False)
    for path in RUN_DIR.glob(f"{prefix}*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in (RUN_DIR / "locks").glob(f"{prefix}*"):  # the labs' lock files
        path.unlink(missing_ok=True)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A name unique to this test and run; everything named with it is removed afterwards."""
    value = f"pt{secrets.token_hex(3)}"
    yield value
    cleanup(value)


@pytest.fixture
def make_lab(tmp_path: Path, prefix: str) -> Callable[[str], Lab]:
    counter = iter(range(100))

    def make(text: str) -> Lab:
        directory = tmp_path / f"lab{next(counter)}"
        directory.mkdir()
        return Lab(directory, f"{prefix}-{directory.name}").write(text)

    return make


@pytest.fixture
def foreign_netns(prefix: str) -> Callable[[str], str]:
    """A namespace the test makes by hand (the lab finds it by path, never creates it)."""

    def make(name: str) -> str:
        netns = f"{prefix}-{name}"
        ip("netns", "add", netns)
        return netns

    return make
