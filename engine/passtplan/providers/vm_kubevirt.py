"""KubeVirt VMs on a real cluster, through the official kubernetes client.

VirtualMachines are applied server-side (field manager `passtplan`) with the labels
`app.kubernetes.io/managed-by: passtplan` and `passtplan.dev/lab: LAB`, so destroy deletes only
the VMs a lab made. The launcher pod is found as KubeVirt finds its own: labelled
kubevirt.io=virt-launcher and kubevirt.io/created-by=<VMI UID>, controlled by the VMI, on the
VMI's status.nodeName, the newest of them.

What KubeVirt accepts is read from the cluster (the KubeVirt CR and the VirtualMachine CRD, see
passtplan.kubevirt). Drift is decided as `kubectl diff --server-side` decides it: the manifest is
applied with dryRun=All and the result compared with the live object, so what KubeVirt's
mutating webhook adds (machine type, architecture, firmware uuid and serial from v1.7) and the
canonical form it gives quantities (2048Mi comes back 2Gi) are not drift, while a field the lab
dropped, or a VM stopped with `virtctl stop`, is. Apply uses fieldValidation=Strict, so a field
the CRD does not know is an error naming it rather than silently pruned.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from passtplan import log
from passtplan.errors import PasstplanError
from passtplan.kubevirt import Install, crd_fields, drift, judge, parse_release, swap_after_running
from passtplan.providers.resolve import NodePaths, Pod
from passtplan.resources import ClusterVm

GROUP, VERSION = "kubevirt.io", "v1"
VM_CRD = "virtualmachines.kubevirt.io"
FIELD_MANAGER = "passtplan"
MANAGED_BY = "app.kubernetes.io/managed-by"
LAB_LABEL = "passtplan.dev/lab"
REQUEST_TIMEOUT = 10  # seconds for one API request
POLL_EVERY = 0.5
FINISHED = ("Failed", "Succeeded")  # a VMI in these phases never becomes Running again
# printableStatus values of a VM that will not start without a change (KubeVirt's
# VirtualMachinePrintableStatus, staging/src/kubevirt.io/api/core/v1/types.go @v1.9.0)
STUCK = (
    "CrashLoopBackOff",
    "ErrorUnschedulable",
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrorPvcNotFound",
    "ErrorDataVolumeNotFound",
    "DataVolumeError",
)
BOOKKEEPING = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid")
T = TypeVar("T")
Obj = dict[str, Any]


class ClusterError(PasstplanError):
    pass


class ClusterOptions(msgspec.Struct, frozen=True):
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
        self.extensions: Any = client.ApiextensionsV1Api(api)
        self.api_exception = client.ApiException
        self.installed: Install | None = None

    def call(self, what: str, request: Callable[[], T], *, missing_ok: bool = False) -> T | None:
        try:
            return log.logged(f"kubernetes: {what}", request)
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
        """The KubeVirt CR's version, gates and binding plugins, and the interface fields the
        VirtualMachine CRD has: a cluster is asked what it accepts, not looked up in a table."""
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
        configuration = kubevirt.get("spec", {}).get("configuration", {}) or {}
        developer = configuration.get("developerConfiguration", {}) or {}
        gates = developer.get("featureGates") or []
        disabled = developer.get("disabledFeatureGates") or []
        plugins = (configuration.get("network", {}) or {}).get("binding") or {}
        version = kubevirt.get("status", {}).get("observedKubeVirtVersion") or "unknown"
        self.installed = Install(
            version, frozenset(gates), frozenset(plugins), frozenset(disabled), self._crd(version)
        )
        return self.installed

    def _crd(self, version: str) -> frozenset[str] | None:
        try:
            response = self.call(
                f"read the CRD {VM_CRD}",
                lambda: self.extensions.read_custom_resource_definition(
                    VM_CRD, _request_timeout=REQUEST_TIMEOUT, _preload_content=False
                ),
            )
        except ClusterError as exc:
            if parse_release(version) is not None:
                return None  # the version says enough; the CRD would only confirm it
            raise ClusterError(
                f"KubeVirt reports its version as {version!r}, which names no release, and "
                f"its VirtualMachine CRD cannot be read to tell ({exc}); grant get on "
                "customresourcedefinitions"
            ) from None
        crd: Obj = json.loads(response.data) if response else {}
        versions = crd.get("spec", {}).get("versions") or []
        served: Obj = next((v for v in versions if v.get("name") == VERSION), {})
        schema = (served.get("schema") or {}).get("openAPIV3Schema") or {}
        return crd_fields(schema)

    # --- VirtualMachines ------------------------------------------------------------------

    def vm(self, namespace: str, name: str) -> Obj | None:
        return self.call(
            f"get VirtualMachine {namespace}/{name}",
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "virtualmachines", name, _request_timeout=REQUEST_TIMEOUT
            ),
            missing_ok=True,
        )

    def apply_vm(self, namespace: str, manifest: Obj, lab: str, *, dry_run: bool = False) -> Obj:
        """Server-side apply (field manager passtplan, forced, strict field validation); with
        dry_run, what the server would make of it, webhooks included, and nothing stored."""
        body = labelled(manifest, namespace, lab)
        name = body["metadata"]["name"]
        extra = {"dry_run": "All"} if dry_run else {}
        response = self.call(
            f"{'dry-run ' if dry_run else ''}apply VirtualMachine {namespace}/{name}",
            lambda: self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                "virtualmachines",
                name,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                field_validation="Strict",
                _content_type="application/apply-patch+yaml",
                _request_timeout=REQUEST_TIMEOUT,
                _preload_content=False,  # the object as the server made it, also on 201
                **extra,
            ),
        )
        applied: Obj | None = json.loads(response.data) if response else None
        if not isinstance(applied, dict) or "metadata" not in applied:
            raise ClusterError(f"VirtualMachine {namespace}/{name}: the server sent no object")
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
        """Poll until the VMI is Running and Ready, printing each new phase; stop at once when
        it fails or ends, or when the VM will not start without a change."""
        deadline = time.monotonic() + self.options.wait
        last = ""
        while True:
            vmi = self.vmi(namespace, name)
            if vmi is not None and is_ready(vmi):
                return vmi
            phase = (vmi or {}).get("status", {}).get("phase", "not created yet")
            said = f"{phase}{_waiting_on(vmi)}"
            if said != last:
                progress(f"VirtualMachineInstance {namespace}/{name}: {said}")
                last = said
            if vmi is not None and phase in FINISHED:
                raise ClusterError(
                    f"VirtualMachineInstance {namespace}/{name} is {phase}{_why(vmi)}; it will "
                    "not become Running: fix the cause, then apply again"
                )
            vm = self.vm(namespace, name)
            stuck = _stuck(vm)
            if stuck:
                raise ClusterError(f"VirtualMachine {namespace}/{name} will not start: {stuck}")
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


class ClusterContext(msgspec.Struct):
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
    plan no longer has (destroy deletes only those). A VM drifts where a dry-run apply of its
    manifest would change the live object."""
    found: dict[str, ClusterVm | None] = {}
    for name, vm in sorted(wanted.items()):
        _notes(cluster.installed, vm)
        live = cluster.vm(vm.kube_namespace, name)
        # Also for a VM still to be made: the server's field validation and KubeVirt's webhooks
        # judge the manifest now, at plan time, not half-way through apply.
        would = cluster.apply_vm(vm.kube_namespace, manifests[name], lab, dry_run=True)
        if live is None:
            found[name] = None
            continue
        differences = tuple(describe_drift(comparable(would), comparable(live)))
        found[name] = _observed(cluster, live, vm.passt_form, differences)
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


def _notes(install: Install | None, vm: ClusterVm) -> None:
    """What the plan must say beside the VM: warnings on its form, and when eth0 may go."""
    if install is None:
        return
    for warning in judge(vm.passt_form, install).warnings:  # type: ignore[arg-type]
        print(f"warning: vm.{vm.name}: {warning}", file=sys.stderr, flush=True)
    if swap_after_running(vm.passt_form, install):  # type: ignore[arg-type]
        print(
            f"note: vm.{vm.name}: {install.shown} sets up a passtBinding VM's network only while "
            'its pod\'s eth0 exists (virt-handler: "pod link (eth0) is missing"): the swap is '
            "made after the VM is Running, and a VM that KubeVirt restarts needs apply again",
            file=sys.stderr,
            flush=True,
        )


def comparable(obj: Obj) -> Obj:
    """What `kubectl diff` compares: the object without status and the server's bookkeeping."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k != "status"}
    meta = out.get("metadata", {})
    for key in BOOKKEEPING:
        meta.pop(key, None)
    return out


def describe_drift(would: Obj, live: Obj) -> list[str]:
    """Each difference as the path, and what apply would do there."""
    described = []
    for path in drift(would, live):
        before, after = _at(live, path), _at(would, path)
        if after is None:
            described.append(f"{path} (apply removes {_short(before)})")
        elif before is None:
            described.append(f"{path} (apply adds {_short(after)})")
        else:
            described.append(f"{path} (live {_short(before)}, apply sets {_short(after)})")
    return described


def _at(obj: Any, path: str) -> Any:
    for part in path.replace("[", ".[").split("."):
        if part.startswith("[") and isinstance(obj, list):
            index = int(part[1:-1])
            obj = obj[index] if index < len(obj) else None
        elif isinstance(obj, dict):
            obj = obj.get(part)
        else:
            return None
    return obj


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _waiting_on(vmi: Obj | None) -> str:
    """Why a VMI waits, when KubeVirt says (a failing pod render shows only here)."""
    for condition in (vmi or {}).get("status", {}).get("conditions") or []:
        if condition.get("status") == "False" and condition.get("type") == "Synchronized":
            return f" ({condition.get('reason')}: {condition.get('message')})"
    return ""


def _why(vmi: Obj) -> str:
    state = vmi.get("status", {})
    parts = [state["reason"]] if state.get("reason") else []
    parts += [
        f"{c.get('reason')}: {c.get('message')}"
        for c in state.get("conditions") or []
        if c.get("status") == "False" and c.get("message")
    ]
    return f" ({'; '.join(parts)})" if parts else ""


def _stuck(vm: Obj | None) -> str | None:
    if vm is None:
        return "it is gone"
    spec, state = vm.get("spec", {}), vm.get("status", {})
    strategy = spec.get("runStrategy") or ("Always" if spec.get("running") else "Halted")
    if strategy == "Halted":
        return "its runStrategy is Halted (stopped, e.g. by virtctl stop)"
    printable = state.get("printableStatus")
    if printable in STUCK:
        messages = [c.get("message") for c in state.get("conditions") or [] if c.get("message")]
        return f"{printable}" + (f" ({'; '.join(messages)})" if messages else "")
    return None


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
