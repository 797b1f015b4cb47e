"""The fake cluster against a client nobody here wrote: kubectl gets, server-side applies and
diffs the seed lab's VirtualMachine, and sees what passtplan sees (no false drift, a dropped
field removed, field ownership recorded). Debian's kubernetes-client (kubectl 1.20) is what
scripts/setup installs; any kubectl on PATH, or PASSTPLAN_KUBECTL, is used."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kube.fake_apiserver import ClusterConfig, FakeCluster

SEED_VM = Path(__file__).parents[2] / "plans" / "passt-macvlan" / "passt-vm.yaml"
TIMEOUT = 60


def kubectl_binary() -> str:
    found = os.environ.get("PASSTPLAN_KUBECTL") or shutil.which("kubectl")
    if not found:
        pytest.skip("no kubectl (apt-get install kubernetes-client, or scripts/setup)")
    try:
        subprocess.run(
            [found, "version", "--client"], capture_output=True, timeout=TIMEOUT, check=False
        )
    except OSError as exc:
        pytest.skip(f"kubectl at {found} does not run: {exc}")
    return found


class Kubectl:
    def __init__(self, binary: str, directory: Path, cluster: FakeCluster) -> None:
        self.binary = binary
        self.directory = directory
        config = directory / "kubeconfig"
        config.write_text(json.dumps(cluster.kubeconfig()))
        self.env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(directory)}

    def __call__(self, *args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if code is not None:
            assert result.returncode == code, f"kubectl {args}: {result.stdout}{result.stderr}"
        return result

    def get(self, name: str) -> dict[str, Any]:
        got: dict[str, Any] = json.loads(
            self("get", "vm", name, "-n", "default", "-o", "json").stdout
        )
        return got


@pytest.fixture
def kubectl(tmp_path: Path) -> Iterator[tuple[Kubectl, FakeCluster]]:
    binary = kubectl_binary()
    # The seed's KubeVirt: v1.0.0 with the Passt gate. kubectl sends no token over plain HTTP.
    with FakeCluster(ClusterConfig(token=None)) as cluster:
        yield Kubectl(binary, tmp_path, cluster), cluster


def manifest(directory: Path, text: str) -> str:
    path = directory / "vm.yaml"
    path.write_text(text)
    return str(path)


def test_kubectl_applies_gets_and_diffs_the_seed_vm(kubectl: tuple[Kubectl, FakeCluster]) -> None:
    run, cluster = kubectl
    seed = SEED_VM.read_text().replace("memory: 1Gi", "memory: 1024Mi")
    path = manifest(run.directory, seed)
    applied = run("apply", "--server-side", "-n", "default", "-f", path)
    assert "passt-macvlan serverside-applied" in applied.stdout
    vm = run.get("passt-macvlan")
    stored = cluster.store.objects[("virtualmachines", "default", "passt-macvlan")]
    managers = [(m["manager"], m["operation"]) for m in stored["metadata"]["managedFields"]]
    assert managers == [("kubectl", "Apply")]
    domain = vm["spec"]["template"]["spec"]["domain"]
    assert domain["resources"]["requests"]["memory"] == "1Gi"  # canonical, from the webhook
    assert domain["devices"]["interfaces"] == [{"name": "default", "passt": {}}]
    # The webhook's rewrite and defaults are no difference to kubectl either.
    assert run("diff", "--server-side", "-n", "default", "-f", path).stdout == ""
    # A field dropped from the manifest: diff shows it going, apply removes it.
    dropped = seed.replace("          model: host-model\n", "")
    assert dropped != seed
    path = manifest(run.directory, dropped)
    diff = run("diff", "--server-side", "-n", "default", "-f", path, code=1).stdout
    assert "-          model: host-model" in diff
    run("apply", "--server-side", "-n", "default", "-f", path)
    assert "model" not in run.get("passt-macvlan")["spec"]["template"]["spec"]["domain"]["cpu"]
    assert run("diff", "--server-side", "-n", "default", "-f", path).stdout == ""


def test_kubectl_meets_a_conflict_over_a_field_another_manager_owns(
    kubectl: tuple[Kubectl, FakeCluster],
) -> None:
    run, cluster = kubectl
    path = manifest(run.directory, SEED_VM.read_text())
    run("apply", "--server-side", "-n", "default", "-f", path)
    cluster.virtctl("stop", "default", "passt-macvlan")  # virt-api now owns runStrategy
    conflict = run("apply", "--server-side", "-n", "default", "-f", path, code=1)
    assert 'conflict with "virt-api"' in conflict.stderr
    assert ".spec.runStrategy" in conflict.stderr
    run("apply", "--server-side", "--force-conflicts", "-n", "default", "-f", path)
    assert run.get("passt-macvlan")["spec"]["runStrategy"] == "Always"
