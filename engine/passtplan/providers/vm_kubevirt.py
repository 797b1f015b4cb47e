"""KubeVirt VMs on a real cluster, through the official kubernetes client.

VirtualMachines are applied server-side (field manager `passtplan`) with the labels
`app.kubernetes.io/managed-by: passtplan` and `passtplan.dev/lab: LAB`, so destroy deletes only
the VMs a lab made. The launcher pod is found as KubeVirt finds its own: labelled
kubevirt.io=virt-launcher and kubevirt.io/created-by=<VMI UID>, controlled by the VMI, on the
VMI's status.nodeName, the newest of them.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from passtplan.errors import PasstplanError
from passtplan.kubevirt import Install, drift
from passtplan.providers.resolve import NodePaths, Pod
from passtplan.resources import ClusterVm

GROUP, VERSION = "kubevirt.io", "v1"
FIELD_MANAGER = "passtplan"
MANAGED_BY = "app.kubernetes.io/managed-by"
LAB_LABEL = "passtplan.dev/lab"
REQUEST_TIMEOUT = 10  # seconds for one API request
POLL_EVERY = 0.5
T = TypeVar("T")
Obj = dict[str, Any]


class ClusterError(PasstplanError):
    pass


@dataclass(frozen=True)
class ClusterOptions:
    kubeconfig: str | None = None
    context: str | None = None
    wait: float = 300.0  # seconds for a VMI to become Running and Ready


def _kubeconfig_path(options: ClusterOptions) -> Path:
    if options.kubeconfig:
        return Path(options.kubeconfig)
    from_env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(from_env) if from_env else Path.home() / ".kube" / "config"


class Cluster:
    """One connection to the API server, with every call's failure turned into one line."""

    def __init__(self, options: ClusterOptions) -> None:
        from kubernetes import client, config  # noqa: PLC0415 - 250 ms: only labs with VMs pay

        self.options = options
        in_cluster = (
            not options.kubeconfig
            and not options.context
            and "KUBERNETES_SERVICE_HOST" in os.environ
        )
        if in_cluster:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            self.where = "the in-cluster API server"
            api = client.ApiClient(configuration)
        else:
            path = _kubeconfig_path(options)
            if not path.is_file():
                raise ClusterError(
                    f"no kubeconfig at {path}: pass --kubeconfig FILE or set KUBECONFIG "
                    "(or run passtplan in a pod, which uses its service account)"
                )
            try:
                api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=str(path), context=options.context
                )
            except config.ConfigException as exc:
                raise ClusterError(f"kubeconfig {path}: {exc}") from None
            self.where = api.configuration.host
        api.configuration.retries = 0  # an unreachable cluster is an error now, not in a minute
        # Any at this boundary: the client's annotations are partial (and with
        # _preload_content=False a call returns the raw response, not the annotated model).
        self.custom: Any = client.CustomObjectsApi(api)
        self.core: Any = client.CoreV1Api(api)
        self.api_exception = client.ApiException

    def call(self, what: str, request: Callable[[], T], *, missing_ok: bool = False) -> T | None:
        try:
            return request()
        except self.api_exception as exc:
            if exc.status == 404 and missing_ok:
                return None
            raise ClusterError(f"{what}: {self._explain(exc)}") from None
        except Exception as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ClusterError(
                f"cannot reach the cluster at {self.where} ({what}): {reason}"
            ) from None

    @staticmethod
    def _explain(exc: Any) -> str:
        try:
            message = json.loads(exc.body).get("message") or exc.reason
        except (TypeError, ValueError):
            message = exc.reason
        if exc.status == 403:
            return f"forbidden by RBAC: {message}"
        if exc.status == 401:
            return "unauthorized: the kubeconfig's credentials were refused"
        return f"{exc.status} {message}"

    # --- KubeVirt's install ---------------------------------------------------------------

    def install(self) -> Install:
        found = self.call(
            "read the KubeVirt CR",
            lambda: self.custom.list_cluster_custom_object(
                GROUP, VERSION, "kubevirts", _request_timeout=REQUEST_TIMEOUT
            ),
        )
        items = (found or {}).get("items") or []
        if not items:
            raise ClusterError("no KubeVirt CR in the cluster: is KubeVirt installed?")
        kubevirt = items[0]
        configuration = kubevirt.get("spec", {}).get("configuration", {})
        gates = configuration.get("developerConfiguration", {}).get("featureGates") or []
        plugins = (configuration.get("network", {}) or {}).get("binding") or {}
        version = kubevirt.get("status", {}).get("observedKubeVirtVersion") or "unknown"
        return Install(version, frozenset(gates), frozenset(plugins))

    # --- VirtualMachines ------------------------------------------------------------------

    def vm(self, namespace: str, name: str) -> Obj | None:
        return self.call(
            f"get VirtualMachine {namespace}/{name}",
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "virtualmachines", name, _request_timeout=REQUEST_TIMEOUT
            ),
            missing_ok=True,
        )

    def apply_vm(self, namespace: str, manifest: Obj, lab: str) -> Obj:
        body = labelled(manifest, namespace, lab)
        name = body["metadata"]["name"]
        self.call(
            f"apply VirtualMachine {namespace}/{name}",
            lambda: self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                "virtualmachines",
                name,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )
        # The client gives no body back for 201 Created: read what the server made.
        applied = self.vm(namespace, name)
        if applied is None:
            raise ClusterError(f"VirtualMachine {namespace}/{name} is gone right after apply")
        return applied

    def delete_vm(self, namespace: str, name: str) -> None:
        self.call(
            f"delete VirtualMachine {namespace}/{name}",
            lambda: self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, "virtualmachines", name, _request_timeout=REQUEST_TIMEOUT
            ),
            missing_ok=True,
        )

    def vmi(self, namespace: str, name: str) -> Obj | None:
        return self.call(
            f"get VirtualMachineInstance {namespace}/{name}",
            lambda: self.custom.get_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                "virtualmachineinstances",
                name,
                _request_timeout=REQUEST_TIMEOUT,
            ),
            missing_ok=True,
        )

    def wait_ready(self, namespace: str, name: str, progress: Callable[[str], None]) -> Obj:
        deadline = time.monotonic() + self.options.wait
        last = ""
        while True:
            vmi = self.vmi(namespace, name)
            phase = (vmi or {}).get("status", {}).get("phase", "not created yet")
            if vmi is not None and is_ready(vmi):
                return vmi
            if phase != last:
                progress(f"VirtualMachineInstance {namespace}/{name}: {phase}")
                last = phase
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"VirtualMachine {namespace}/{name} is not Running and Ready after "
                    f"{self.options.wait:.0f} s (phase {phase})"
                )
            time.sleep(POLL_EVERY)  # polling the API server, bounded by the deadline

    def pod(self, namespace: str, name: str) -> Pod:
        response = self.call(
            f"get pod {namespace}/{name}",
            lambda: self.core.read_namespaced_pod(
                name, namespace, _request_timeout=REQUEST_TIMEOUT, _preload_content=False
            ),
        )
        data: Obj = json.loads(response.data) if response else {}
        return _pod(data)

    def launcher_pod(self, vmi: Obj) -> Pod | None:
        """KubeVirt's rule for the current pod: controlled by the VMI, on its node, newest."""
        meta = vmi["metadata"]
        uid = meta["uid"]
        selector = f"kubevirt.io=virt-launcher,kubevirt.io/created-by={uid}"
        response = self.call(
            f"list the launcher pods of {meta['namespace']}/{meta['name']}",
            lambda: self.core.list_namespaced_pod(
                meta["namespace"],
                label_selector=selector,
                _request_timeout=REQUEST_TIMEOUT,
                _preload_content=False,  # plain JSON, like the custom objects
            ),
        )
        pods: list[Obj] = json.loads(response.data).get("items", []) if response else []
        node = vmi.get("status", {}).get("nodeName")
        candidates = [
            pod
            for pod in pods
            if any(
                o.get("controller") and o.get("uid") == uid
                for o in pod["metadata"].get("ownerReferences", [])
            )
            and (node is None or pod.get("spec", {}).get("nodeName") == node)
        ]
        if not candidates:
            return None
        return _pod(max(candidates, key=lambda pod: pod["metadata"].get("creationTimestamp", "")))


@dataclass
class ClusterContext:
    """What apply needs of the cluster: the connection, the manifests, and who this node is."""

    cluster: Cluster
    manifests: dict[str, Obj]
    lab_vms: dict[str, str]  # VM name -> its Kubernetes namespace
    node: str
    paths: NodePaths

    def pod_of(self, resolve: tuple[str, str]) -> Pod:
        way, value = resolve
        if way == "pod":
            namespace, name = value.split("/", 1)
            return self.cluster.pod(namespace, name)
        namespace = self.lab_vms[value]
        vmi = self.cluster.vmi(namespace, value)
        if vmi is None:
            raise ClusterError(f"VirtualMachine {namespace}/{value} has no VMI: is it running?")
        pod = self.cluster.launcher_pod(vmi)
        if pod is None:
            raise ClusterError(f"VMI {namespace}/{value} has no launcher pod on its node yet")
        return pod


def this_node() -> str:
    """Who this node is to the cluster: NODE_NAME (the downward API's usual name), else the
    host name, which kubelet uses by default."""
    return os.environ.get("NODE_NAME") or socket.gethostname()


def observe_vms(
    cluster: Cluster, wanted: dict[str, ClusterVm], manifests: dict[str, Obj], lab: str
) -> dict[str, ClusterVm | None]:
    """The lab's VMs as the cluster has them, and those labelled with the lab's name that the
    plan no longer has (destroy deletes only those)."""
    found: dict[str, ClusterVm | None] = {}
    for name, vm in sorted(wanted.items()):
        live = cluster.vm(vm.kube_namespace, name)
        if live is None:
            found[name] = None
            continue
        expected = labelled(manifests[name], vm.kube_namespace, lab)
        found[name] = _observed(cluster, live, vm.passt_form, tuple(drift(expected, live)))
    listed = cluster.call(
        "list the lab's VirtualMachines",
        lambda: cluster.custom.list_cluster_custom_object(
            GROUP,
            VERSION,
            "virtualmachines",
            label_selector=f"{LAB_LABEL}={lab}",
            _request_timeout=REQUEST_TIMEOUT,
        ),
    )
    for live in (listed or {}).get("items", []):
        name = live["metadata"]["name"]
        if name not in found:
            found[name] = _observed(cluster, live, "passt", ())
    return found


def _observed(cluster: Cluster, live: Obj, form: str, differences: tuple[str, ...]) -> ClusterVm:
    meta = live["metadata"]
    vmi = cluster.vmi(meta["namespace"], meta["name"])
    phase = (vmi or {}).get("status", {}).get("phase", "not created yet")
    if vmi is not None and phase == "Running" and not is_ready(vmi):
        phase = "Running, not Ready"
    return ClusterVm(
        name=meta["name"],
        kube_namespace=meta["namespace"],
        passt_form=form,
        phase=phase,
        node=(vmi or {}).get("status", {}).get("nodeName"),
        ip=vmi_address(vmi),
        drift=differences,
        owner=meta.get("labels", {}).get(LAB_LABEL),
    )


def _pod(data: Obj) -> Pod:
    return Pod(
        namespace=data["metadata"]["namespace"],
        name=data["metadata"]["name"],
        uid=data["metadata"]["uid"],
        node=data.get("spec", {}).get("nodeName"),
        ip=data.get("status", {}).get("podIP"),
    )


def is_ready(vmi: Obj) -> bool:
    state = vmi.get("status", {})
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in state.get("conditions", [])
    )
    return state.get("phase") == "Running" and ready


def labelled(manifest: Obj, namespace: str, lab: str) -> Obj:
    body = copy.deepcopy(manifest)
    meta = body.setdefault("metadata", {})
    meta["namespace"] = namespace
    labels = meta.setdefault("labels", {})
    labels[MANAGED_BY] = "passtplan"
    labels[LAB_LABEL] = lab
    return body


def vmi_address(vmi: Obj | None) -> str | None:
    interfaces = (vmi or {}).get("status", {}).get("interfaces") or []
    return interfaces[0].get("ipAddress") if interfaces else None
