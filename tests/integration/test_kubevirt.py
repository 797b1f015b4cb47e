"""KubeVirt for real, against a fake API server driven by the real kubernetes client: the VM is
applied, waited for, its launcher pod's namespace found on this node and swapped."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from passtplan.providers import resolve
from tests.integration.conftest import Lab, ip, ip_json
from tests.integration.test_resolve import LAUNCHER
from tests.kube.fake_apiserver import ClusterConfig, FakeCluster

UID = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
VM = """apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: vm1}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        devices:
          interfaces: [{name: default, passt: {}, ports: [{port: 22}]}]
        resources: {requests: {memory: 1Gi}}
      networks: [{name: default, pod: {}}]
"""
LAB = """apiVersion: passtplan/v1alpha1
kind: Lab
metadata: {name: LABNAME}
vms:
  vm1: {namespace: default, manifest: vm.yaml}
namespaces:
  node:
    links:
      nic0: {kind: veth, peer: wire/eth0}
  wire:
    links:
      eth0: {kind: veth, peer: node/nic0, addresses: [10.7.0.1/16]}
  pod:
    resolve: {vm: vm1}
    links:
      eth0: {state: absent}
      macvlan1: {kind: macvlan, parent: node/nic0, mode: vepa, addresses: [10.7.120.202/16]}
    routes:
      - {to: default, via: 10.7.0.1, dev: macvlan1}
checks:
  - {from: wire, ping: 10.7.120.202}
"""


class Node:
    """This machine as a Kubernetes node: kubelet's pod directory, and launchers started in a
    namespace of the test when the fake controller schedules a pod here."""

    def __init__(self, tmp_path: Path, pod_netns: str) -> None:
        self.kubelet = tmp_path / "kubelet"
        self.pod_netns = pod_netns
        self.launchers: list[subprocess.Popen[str]] = []

    def start_launcher(self, pod: dict[str, Any]) -> None:
        sock = self.kubelet / "pods" / pod["metadata"]["uid"] / resolve.LAUNCHER_SOCKET
        sock.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.pod_netns, sys.executable, "-c", LAUNCHER, str(sock)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        self.launchers.append(proc)

    def stop(self) -> None:
        for proc in self.launchers:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def node(tmp_path: Path, foreign_netns: Callable[[str], str]) -> Iterator[Node]:
    pod = foreign_netns("cni-pod")  # the CNI made it, with its eth0 and the pod IP
    cni = foreign_netns("cni")
    ip("link", "add", "eth0", "netns", pod, "type", "veth", "peer", "name", "cali1", "netns", cni)
    ip("address", "add", "10.233.70.4/32", "dev", "eth0", netns=pod)
    ip("link", "set", "eth0", "up", netns=pod)
    this = Node(tmp_path, pod)
    yield this
    this.stop()


def cluster_for(this: Node, **config: Any) -> FakeCluster:
    """A fake cluster whose launcher pods start on this node (use it in a with statement)."""
    return FakeCluster(ClusterConfig(pod_uids=[UID], on_pod=this.start_launcher, **config))


def lab_for(make_lab: Callable[[str], Lab], cluster: FakeCluster) -> Lab:
    lab = make_lab(LAB)
    (lab.directory / "vm.yaml").write_text(VM)
    (lab.directory / "kubeconfig").write_text(json.dumps(cluster.kubeconfig()))
    return lab


def flags(lab: Lab, node: Node, *extra: str) -> list[str]:
    return [
        "--kubeconfig",
        str(lab.directory / "kubeconfig"),
        "--node",
        "node1",
        "--kubelet-root",
        str(node.kubelet),
        *extra,
    ]


def test_plan_apply_resolve_swap_converge_destroy(
    node: Node, make_lab: Callable[[str], Lab]
) -> None:
    with cluster_for(node) as cluster:
        lab = lab_for(make_lab, cluster)
        plan = lab.plan("--detailed-exitcode", *flags(lab, node)[:2], code=2).stdout
        assert "vm.vm1 will be created" in plan
        assert "netns.pod will be read during apply (found at apply time (vm:vm1))" in plan
        assert "link.pod/macvlan1 will be created (found at apply time)" in plan
        assert "state: (known after apply)" in plan
        applied = lab.apply(*flags(lab, node, "--wait", "20")).stdout
        assert "vm.vm1: applied; Running and Ready on node1, IP 10.233.70.4" in applied
        assert "by its launcher socket peer credentials; attached as" in applied
        assert "Checks: 1 passed, 0 failed, 0 skipped." in applied
        vm = cluster.store.objects[("virtualmachines", "default", "vm1")]
        assert vm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "passtplan"
        assert vm["metadata"]["managedFields"][0]["manager"] == "passtplan"
        attached = lab.netns("pod")
        assert [link["ifname"] for link in ip_json("link", "show", netns=attached)] == [
            "lo",
            "macvlan1",
        ]
        assert ip_json("route", "show", "default", netns=node.pod_netns)[0]["gateway"] == "10.7.0.1"
        lab.converged(*flags(lab, node)[:2])
        shown = lab.plan(*flags(lab, node)[:2]).stdout
        assert "vm.vm1: default/vm1 Running on node1, IP 10.233.70.4" in shown
        lab.destroy(*flags(lab, node)[:2])
        assert ("virtualmachines", "default", "vm1") not in cluster.store.objects
        assert lab.leftovers() == []


def test_no_kubeconfig(make_lab: Callable[[str], Lab], tmp_path: Path) -> None:
    lab = make_lab(LAB)
    (lab.directory / "vm.yaml").write_text(VM)
    result = lab.plan("--kubeconfig", str(tmp_path / "missing"), code=1)
    assert result.stderr.splitlines()[-1] == (
        f"error: no kubeconfig at {tmp_path / 'missing'}: pass --kubeconfig FILE or set KUBECONFIG "
        "(or run passtplan in a pod, which uses its service account)"
    )


def test_cluster_unreachable(make_lab: Callable[[str], Lab], node: Node) -> None:
    with cluster_for(node) as cluster:
        lab = lab_for(make_lab, cluster)
    # nothing listens there any more
    result = lab.plan(*flags(lab, node)[:2], code=1)
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith(
        f"error: cannot reach the cluster at {cluster.url} (read the KubeVirt CR):"
    )


def test_forbidden_by_rbac(make_lab: Callable[[str], Lab], node: Node) -> None:
    with cluster_for(node, forbidden={"virtualmachines"}) as cluster:
        lab = lab_for(make_lab, cluster)
        result = lab.plan(*flags(lab, node)[:2], code=1)
    assert result.stderr.splitlines()[-1] == (
        "error: get VirtualMachine default/vm1: forbidden by RBAC: virtualmachines is forbidden: "
        'User "tester" cannot get resource "virtualmachines"'
    )


def test_vm_never_ready(make_lab: Callable[[str], Lab], node: Node) -> None:
    with cluster_for(node, never_ready=True) as cluster:
        lab = lab_for(make_lab, cluster)
        result = lab.apply(*flags(lab, node, "--wait", "1"), code=1).stdout
    assert "vm.vm1: FAILED: ClusterError" not in result
    assert "is not Running and Ready after 1 s (phase Scheduled)" in result
    assert "netns.pod: skipped: upstream dependency vm.vm1 failed" in result


def test_launcher_pod_on_another_node(make_lab: Callable[[str], Lab], node: Node) -> None:
    with cluster_for(node, node="node2") as cluster:
        lab = lab_for(make_lab, cluster)
        result = lab.apply(*flags(lab, node, "--wait", "20"), code=1).stdout
        # Now that the VM runs, the plan says where to run passtplan.
        shown = lab.plan(*flags(lab, node)[:4], code=None).stdout
    assert "runs on node node2, not on this node (node1): run passtplan on node2" in result
    assert (
        "vm.vm1: default/vm1 Running on node2, IP 10.233.70.4 "
        "(not this node, node1: run passtplan on node2)"
    ) in shown


def test_passt_core_binding_against_kubevirt_1_5(
    make_lab: Callable[[str], Lab], node: Node
) -> None:
    with cluster_for(node, kubevirt_version="v1.4.0") as cluster:
        lab = lab_for(make_lab, cluster)
        result = lab.plan(*flags(lab, node)[:2], code=1)
    assert result.stderr.splitlines()[-1] == (
        f"error: {lab.path}: vms.vm1: KubeVirt v1.4.0 rejects the core `passt: {{}}` binding "
        "(discontinued in v1.3): use binding: {name: passt} (enable the NetworkBindingPlugins gate "
        "and register the passt plugin in the KubeVirt CR)"
    )


def test_context_selects_the_cluster(make_lab: Callable[[str], Lab], node: Node) -> None:
    with cluster_for(node) as cluster:
        lab = lab_for(make_lab, cluster)
        config = cluster.kubeconfig(context="lab")
        config["clusters"].append({"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}})
        config["contexts"].append(
            {"name": "other", "context": {"cluster": "gone", "user": "tester"}}
        )
        config["current-context"] = "other"
        (lab.directory / "kubeconfig").write_text(json.dumps(config))
        lab.plan(*flags(lab, node)[:2], code=1)  # the current context is unreachable
        result = lab.plan(*flags(lab, node)[:2], "--context", "lab", "--detailed-exitcode", code=2)
    assert "vm.vm1 will be created" in result.stdout


def test_destroy_deletes_only_the_labs_vms(make_lab: Callable[[str], Lab], node: Node) -> None:
    with cluster_for(node) as cluster:
        lab = lab_for(make_lab, cluster)
        theirs = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "spec": {"runStrategy": "Halted"},
        }
        with cluster.store.lock:
            for name, labels in (("vm1", {}), ("other", {"passtplan.dev/lab": "another-lab"})):
                body = json.loads(json.dumps(theirs))
                body["metadata"] = {"name": name, "namespace": "default", "labels": labels}
                cluster.store.objects[("virtualmachines", "default", name)] = cluster.store.stamp(
                    body, new=True
                )
        result = lab.destroy(*flags(lab, node)[:2]).stdout
        assert "No changes." in result
        assert ("virtualmachines", "default", "vm1") in cluster.store.objects
        assert ("virtualmachines", "default", "other") in cluster.store.objects
