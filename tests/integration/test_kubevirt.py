"""KubeVirt for real, against a fake API server driven by the real kubernetes client: the VM is
applied, waited for, its launcher pod's namespace found on this node and swapped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from passtplan.providers import resolve
from passtplan.providers.ownership import RUN_DIR
from tests.conftest import PLANS, seed_lab
from tests.integration.conftest import Lab, ip, ip_json, unique_pod_ip
from tests.integration.test_resolve import LAUNCHER
from tests.kube.fake_apiserver import ClusterConfig, FakeCluster

UID = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
# Unique to the run: the pod-IP strategy finds whichever namespace holds it, and a sandbox lab left
# up holds the seed's 10.233.70.4.
POD_IP = unique_pod_ip()
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
    ip("address", "add", f"{POD_IP}/32", "dev", "eth0", netns=pod)
    ip("link", "set", "eth0", "up", netns=pod)
    this = Node(tmp_path, pod)
    yield this
    this.stop()


def cluster_for(this: Node, **config: Any) -> FakeCluster:
    """A fake cluster whose launcher pods start on this node (use it in a with statement)."""
    config.setdefault("pod_ip", POD_IP)
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
        assert f"vm.vm1: applied; Running and Ready on node1, IP {POD_IP}" in applied
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
        assert f"vm.vm1: default/vm1 Running on node1, IP {POD_IP}" in shown
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
        f"vm.vm1: default/vm1 Running on node2, IP {POD_IP} "
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


# --- what each release accepts, asked of the cluster -----------------------------------------

FORMS = {
    "passt": "passt: {}",
    "binding": "binding: {name: passt}",
    "passtBinding": "passtBinding: {}",
}
PLUGIN = {"passt": {"networkAttachmentDefinition": "default/netbindingpasst"}}


def vm_with(form: str, *, memory: str = "1Gi", extra: str = "") -> str:
    return VM.replace("passt: {}", FORMS[form]).replace("memory: 1Gi", f"memory: {memory}") + extra


@pytest.mark.parametrize(
    ("config", "form", "error"),
    [
        ({"kubevirt_version": "v1.0.0"}, "passt", None),
        (
            {"kubevirt_version": "v1.0.0", "feature_gates": []},
            "passt",
            "KubeVirt v1.0.0 needs the feature gate Passt for `passt: {}`: add it to "
            "spec.configuration.developerConfiguration.featureGates in the KubeVirt CR",
        ),
        (
            {"kubevirt_version": "v1.0.0"},
            "passtBinding",
            "KubeVirt v1.0.0 has no `passtBinding` field in its VirtualMachine CRD (from v1.8): "
            "use passt: {}",
        ),
        (
            {"kubevirt_version": "v1.4.0", "feature_gates": ["NetworkBindingPlugins"]},
            "passt",
            "KubeVirt v1.4.0 rejects the core `passt: {}` binding (discontinued in v1.3): use "
            "binding: {name: passt} (register the passt plugin in the KubeVirt CR)",
        ),
        (
            {
                "kubevirt_version": "v1.4.0",
                "feature_gates": ["NetworkBindingPlugins"],
                "binding_plugins": PLUGIN,
            },
            "binding",
            None,
        ),
        (
            {"kubevirt_version": "v1.4.0", "feature_gates": [], "binding_plugins": PLUGIN},
            "binding",
            "KubeVirt v1.4.0 needs the feature gate NetworkBindingPlugins for `binding: {name: "
            "passt}` (GA from v1.5)",
        ),
        (
            {"kubevirt_version": "v1.8.0", "feature_gates": []},
            "passtBinding",
            "KubeVirt v1.8.0 needs the feature gate PasstBinding: add it to "
            "spec.configuration.developerConfiguration.featureGates in the KubeVirt CR",
        ),
        ({"kubevirt_version": "v1.8.0", "feature_gates": ["PasstBinding"]}, "passtBinding", None),
        ({"kubevirt_version": "v1.9.0", "feature_gates": []}, "passtBinding", None),
        (
            {"kubevirt_version": "v1.9.0", "feature_gates": [], "disabled_gates": ["PasstBinding"]},
            "passtBinding",
            "KubeVirt v1.9.0 needs the feature gate PasstBinding: remove it from "
            "disabledFeatureGates in the KubeVirt CR",
        ),
        (
            {"kubevirt_version": "v1.9.0", "feature_gates": []},
            "passt",
            "KubeVirt v1.9.0 rejects the core `passt: {}` binding (discontinued in v1.3): use "
            "passtBinding: {}",
        ),
        (
            {"kubevirt_version": "v1.9.0", "feature_gates": [], "binding_plugins": PLUGIN},
            "binding",
            None,
        ),
        (
            {"kubevirt_version": "v1.9.0", "feature_gates": []},
            "binding",
            "KubeVirt v1.9.0 has no passt binding plugin registered: KubeVirt would accept the "
            "VM and fail only when it renders the pod; register it under "
            "spec.configuration.network.binding.passt",
        ),
        (
            {"kubevirt_version": "devel", "release": "v1.9", "feature_gates": []},
            "passt",
            "KubeVirt devel (v1.9 or later, by its VirtualMachine CRD) rejects the core "
            "`passt: {}` binding (discontinued in v1.3): use passtBinding: {}",
        ),
        (
            {"kubevirt_version": "latest", "release": "v1.9", "feature_gates": []},
            "passtBinding",
            None,
        ),
        (
            {"kubevirt_version": "devel", "release": "v1.4", "feature_gates": []},
            "passtBinding",
            "KubeVirt devel (v1.3 or later, by its VirtualMachine CRD) has no `passtBinding` field",
        ),
    ],
)
def test_forms_each_release_accepts(
    make_lab: Callable[[str], Lab], node: Node, config: dict[str, Any], form: str, error: str | None
) -> None:
    with cluster_for(node, **config) as cluster:
        lab = lab_for(make_lab, cluster)
        (lab.directory / "vm.yaml").write_text(vm_with(form))
        result = lab.plan("--detailed-exitcode", *flags(lab, node)[:2], code=None)
    if error is None:
        assert result.exit_code == 2, result.output
        assert "vm.vm1 will be created" in result.stdout
    else:
        assert result.exit_code == 1, result.output
        assert result.stderr.splitlines()[-1].startswith(f"error: {lab.path}: vms.vm1: {error}")


def test_binding_plugin_on_v1_9_is_accepted_with_a_note_on_the_newer_form(
    make_lab: Callable[[str], Lab], node: Node
) -> None:
    with cluster_for(node, kubevirt_version="v1.9.0", binding_plugins=PLUGIN) as cluster:
        lab = lab_for(make_lab, cluster)
        (lab.directory / "vm.yaml").write_text(vm_with("binding"))
        result = lab.plan("--detailed-exitcode", *flags(lab, node)[:2], code=2)
    assert "warning: vm.vm1: KubeVirt v1.9.0 also has the core `passtBinding: {}`" in result.stderr


SECONDARY = """
          - {name: data, bridge: {}}
"""


def test_passt_binding_with_a_multus_secondary_interface_runs_on_v1_9(
    make_lab: Callable[[str], Lab], node: Node
) -> None:
    manifest = (
        vm_with("passtBinding")
        .replace(
            "interfaces: [{name: default, passtBinding: {}, ports: [{port: 22}]}]",
            "interfaces:\n          - {name: default, passtBinding: {}, ports: [{port: 22}]}\n"
            "          - {name: data, bridge: {}}",
        )
        .replace(
            "networks: [{name: default, pod: {}}]",
            "networks: [{name: default, pod: {}}, {name: data, multus: {networkName: br}}]",
        )
    )
    with cluster_for(node, kubevirt_version="v1.9.0", feature_gates=[]) as cluster:
        lab = lab_for(make_lab, cluster)
        (lab.directory / "vm.yaml").write_text(manifest)
        applied = lab.apply(*flags(lab, node, "--wait", "20"))
        vm = cluster.store.objects[("virtualmachines", "default", "vm1")]
    assert "vm.vm1: applied; Running and Ready on node1" in applied.stdout
    assert "the swap is made after the VM is Running" in applied.stderr
    interfaces = vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]
    assert [i["name"] for i in interfaces] == ["default", "data"]


# --- no false drift, and real drift ----------------------------------------------------------


def test_webhook_defaults_and_canonical_quantities_are_no_drift(
    make_lab: Callable[[str], Lab], node: Node
) -> None:
    with cluster_for(node, kubevirt_version="v1.9.0", feature_gates=[]) as cluster:
        lab = lab_for(make_lab, cluster)
        (lab.directory / "vm.yaml").write_text(vm_with("passtBinding", memory="2048Mi"))
        lab.apply(*flags(lab, node, "--wait", "20"))
        vm = cluster.store.objects[("virtualmachines", "default", "vm1")]
        domain = vm["spec"]["template"]["spec"]["domain"]
        assert domain["resources"]["requests"]["memory"] == "2Gi"  # canonical, as KubeVirt
        assert set(domain["firmware"]) == {"uuid", "serial"}  # the v1.7+ mutating webhook
        assert domain["machine"] == {"type": "q35"}
        result = lab.plan("--detailed-exitcode", *flags(lab, node)[:2], code=0)
    assert "No changes." in result.stdout


def test_a_field_dropped_from_the_manifest_is_removed_by_the_next_apply(
    make_lab: Callable[[str], Lab], node: Node
) -> None:
    cpu = "        cpu: {cores: 2}\n"
    with_cpu = vm_with("passt").replace("        resources:", cpu + "        resources:")
    with cluster_for(node) as cluster:
        lab = lab_for(make_lab, cluster)
        (lab.directory / "vm.yaml").write_text(with_cpu)
        lab.apply(*flags(lab, node, "--wait", "20"))
        domain = cluster.store.objects[("virtualmachines", "default", "vm1")]["spec"]["template"]
        assert domain["spec"]["domain"]["cpu"] == {"cores": 2}
        (lab.directory / "vm.yaml").write_text(vm_with("passt"))
        plan = lab.plan("--detailed-exitcode", *flags(lab, node)[:2], code=2).stdout
        assert 'spec.template.spec.domain.cpu (apply removes {"cores": 2})' in plan
        lab.apply(*flags(lab, node, "--wait", "20"))
        vm = cluster.store.objects[("virtualmachines", "default", "vm1")]
        assert "cpu" not in vm["spec"]["template"]["spec"]["domain"]
        lab.plan("--detailed-exitcode", *flags(lab, node)[:2], code=0)


def test_a_vm_stopped_with_virtctl_is_drift_and_apply_starts_it(
    make_lab: Callable[[str], Lab], node: Node
) -> None:
    with cluster_for(node) as cluster:
        lab = lab_for(make_lab, cluster)
        lab.apply(*flags(lab, node, "--wait", "20"))
        cluster.virtctl("stop", "default", "vm1")
        plan = lab.plan("--detailed-exitcode", *flags(lab, node)[:2], code=2).stdout
        assert "spec.runStrategy (live Halted, apply sets Always)" in plan
        lab.apply(*flags(lab, node, "--wait", "20"))
        vm = cluster.store.objects[("virtualmachines", "default", "vm1")]
        assert vm["spec"]["runStrategy"] == "Always"


def test_an_unknown_field_is_an_error_naming_it(make_lab: Callable[[str], Lab], node: Node) -> None:
    typo = vm_with("passt").replace(
        "        resources:", "        resorces: {}\n        resources:"
    )
    with cluster_for(node) as cluster:
        lab = lab_for(make_lab, cluster)
        (lab.directory / "vm.yaml").write_text(typo)
        result = lab.plan(*flags(lab, node)[:2], code=1)
    assert result.stderr.splitlines()[-1].endswith(
        ".spec.template.spec.domain.resorces: field not declared in schema"
    )


# --- VMs that will not start -----------------------------------------------------------------


def test_a_failed_vmi_ends_the_wait_at_once_with_its_reason(
    make_lab: Callable[[str], Lab], node: Node
) -> None:
    with cluster_for(node, vmi_fails="ErrImagePull") as cluster:
        lab = lab_for(make_lab, cluster)
        started = time.monotonic()
        result = lab.apply(*flags(lab, node, "--wait", "300"), code=1).stdout
    assert time.monotonic() - started < 30
    assert "VirtualMachineInstance default/vm1: Scheduling" in result
    assert (
        "VirtualMachineInstance default/vm1 is Failed (ErrImagePull; PodTerminating: "
        "virt-launcher pod failed: ErrImagePull)"
    ) in result


def test_an_unregistered_binding_plugin_shows_while_waiting(
    make_lab: Callable[[str], Lab], node: Node
) -> None:
    """A cluster whose CR loses the plugin after plan: the pod cannot be rendered."""
    with cluster_for(node, kubevirt_version="v1.9.0", binding_plugins=PLUGIN) as cluster:
        lab = lab_for(make_lab, cluster)
        (lab.directory / "vm.yaml").write_text(vm_with("binding"))
        cluster.config.binding_plugins = {}
        result = lab.apply(*flags(lab, node, "--wait", "2"), code=1).stdout
    assert (
        "Pending (FailedCreate: failed to render launch manifest: couldn't find configuration "
        "for network bindining: passt)"
    ) in result


def test_a_halted_vm_is_refused_at_validate_time(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(LAB)
    (lab.directory / "vm.yaml").write_text(VM.replace("runStrategy: Always", "runStrategy: Halted"))
    result = lab.run("validate", str(lab.path), code=1)
    assert "vm.yaml:5:16: spec.runStrategy: runStrategy Halted never starts the VM" in result.stderr


# --- the sandbox plays the lab's release -----------------------------------------------------


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("v1.0", ["passt", "--runas", "107", "-e", "-t", "22", "-s"]),
        ("v1.1", ["passt", "--one-off", "--socket"]),
    ],
)
def test_the_sandbox_starts_passt_as_the_labs_release_does(
    make_lab: Callable[[str], Lab], release: str, expected: list[str]
) -> None:
    seed = PLANS / "passt-macvlan"
    text = seed_lab().replace("\nsandbox:", f"\nsandbox:\n  kubevirt: {release}", 1)
    lab = make_lab(text)
    (lab.directory / "passt-vm.yaml").write_text(
        (seed / "passt-vm.yaml")
        .read_text()
        .replace("- passt: {}", "- passt: {}\n            ports: [{port: 22}]")
    )
    applied = lab.apply("--sandbox").stdout
    assert "Checks: 3 passed, 0 failed, 0 skipped." in applied
    state = json.loads((RUN_DIR / f"{lab.name}@sandbox/vm/passt-macvlan/state.json").read_text())
    command = Path(f"/proc/{state['passt'][0]}/cmdline").read_bytes().decode().split("\0")[:-1]
    assert command[: len(expected)] == expected
    if release == "v1.1":
        assert command[3:] == [
            str(RUN_DIR / f"{lab.name}@sandbox/vm/passt-macvlan/passt/passt.socket"),
            "--pid",
            str(RUN_DIR / f"{lab.name}@sandbox/vm/passt-macvlan/passt/passt.pid"),
            "--interface",
            "eth0",
            "--log-file",
            str(RUN_DIR / f"{lab.name}@sandbox/vm/passt-macvlan/kubevirt-passt.log"),
            "--tcp-ports",
            "22",
        ]  # TCP ports alone: no --udp-ports
    lab.destroy("--sandbox")
    assert lab.leftovers() == []


# --- the resolver's assumptions --------------------------------------------------------------


def test_outside_the_hosts_pid_namespace_the_resolver_says_so_and_falls_through(
    node: Node, tmp_path: Path
) -> None:
    """Peer credentials name a pid only in the reader's PID namespace, and the cgroup walk reads
    the node's /proc: both are skipped, with a note, when passtplan runs without hostPID."""
    assert resolve.shares_host_pid_namespace()  # the tests run on the host
    pod = {"metadata": {"uid": UID}}
    node.start_launcher(pod)
    found_pod = resolve.Pod("default", "virt-launcher-vm1-abcde", UID, "node1", POD_IP)
    base = {"kubelet": node.kubelet, "netns_dirs": (Path("/run/netns"),), "crictl": None}
    on_host = resolve.find_pod_netns(found_pod, resolve.NodePaths(**base, host_pid=True))  # type: ignore[arg-type]
    assert on_host.strategy == "launcher socket peer credentials"
    apart = resolve.find_pod_netns(found_pod, resolve.NodePaths(**base, host_pid=False))  # type: ignore[arg-type]
    assert apart.strategy == (
        "pod IP (launcher socket peer credentials and cgroup of a pod process skipped: passtplan "
        "does not share the host's PID namespace; run it with hostPID: true)"
    )
    assert os.stat(apart.path).st_ino == os.stat(on_host.path).st_ino
