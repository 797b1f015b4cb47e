"""A faithful fake of the few Kubernetes API endpoints passtplan uses, for the real client.

HTTP on 127.0.0.1 with:
- discovery: /version, /api, /api/v1, /apis, /apis/kubevirt.io/v1;
- VirtualMachines: server-side apply (PATCH application/apply-patch+yaml, field manager), create
  (POST, 409 when it exists), get, list, delete;
- VirtualMachineInstances: get, list; pods: get, list by label selector;
- KubeVirt CRs: list across namespaces;
- resourceVersion on every write, 404 and 409 as Status objects, and a 403 for any resource the
  test forbids (RBAC).
A small controller turns a VM with runStrategy Always into a VMI that goes Pending -> Scheduling
-> Scheduled -> Running (Ready), and a virt-launcher pod controlled by the VMI, with node and IP,
as KubeVirt does; deleting the VM deletes both.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from ruamel.yaml import YAML

KUBEVIRT = ("kubevirt.io", "v1")
PHASES = ("Pending", "Scheduling", "Scheduled", "Running")
Obj = dict[str, Any]


@dataclass
class ClusterConfig:
    node: str = "node1"
    pod_ip: str = "10.233.70.4"
    kubevirt_version: str = "v1.0.0"
    feature_gates: list[str] = field(default_factory=lambda: ["Passt"])
    never_ready: bool = False
    forbidden: set[str] = field(default_factory=set)  # plurals the user may not touch
    pod_uids: list[str] = field(default_factory=list)  # UIDs for launcher pods, in order
    on_pod: Callable[[Obj], None] | None = None  # called when a launcher pod is made


class Store:
    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str], Obj] = {}  # (plural, namespace, name)
        self.version = 1000

    def stamp(self, obj: Obj, *, new: bool) -> Obj:
        self.version += 1
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self.version)
        if new:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            meta["generation"] = 1
        return obj


def merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(patch)


def status(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeCluster:
    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig()
        self.store = Store(self.config)
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.stop_event = threading.Event()
        self.controller = threading.Thread(target=self._control, daemon=True)
        kubevirt = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "KubeVirt",
            "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
            "spec": {
                "configuration": {
                    "developerConfiguration": {"featureGates": self.config.feature_gates}
                }
            },
            "status": {
                "phase": "Deployed",
                "observedKubeVirtVersion": self.config.kubevirt_version,
            },
        }
        self.store.objects[("kubevirts", "kubevirt", "kubevirt")] = self.store.stamp(
            kubevirt, new=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeCluster:
        self.thread.start()
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, context: str = "fake") -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "secret"}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "tester"}}],
            "current-context": context,
        }

    # --- the controller --------------------------------------------------------------------

    def _control(self) -> None:
        while not self.stop_event.wait(0.05):
            with self.store.lock:
                self._reconcile()

    def _reconcile(self) -> None:
        objects = self.store.objects
        for (plural, ns, name), vm in list(objects.items()):
            if plural != "virtualmachines":
                continue
            wanted = vm.get("spec", {}).get("runStrategy") in (
                "Always",
                "RerunOnFailure",
            ) or vm.get("spec", {}).get("running")
            key = ("virtualmachineinstances", ns, name)
            if wanted and key not in objects:
                objects[key] = self.store.stamp(self._vmi(vm), new=True)
            vmi = objects.get(key)
            if vmi is not None:
                self._advance(vmi)
        for (plural, ns, name), vmi in list(objects.items()):
            if plural == "virtualmachineinstances" and ("virtualmachines", ns, name) not in objects:
                del objects[(plural, ns, name)]
                for key, pod in list(objects.items()):
                    owners = pod.get("metadata", {}).get("ownerReferences", [])
                    if key[0] == "pods" and any(o["uid"] == vmi["metadata"]["uid"] for o in owners):
                        del objects[key]

    def _vmi(self, vm: Obj) -> Obj:
        meta = vm["metadata"]
        return {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "ownerReferences": [
                    {
                        "kind": "VirtualMachine",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": copy.deepcopy(vm["spec"]["template"]["spec"]),
            "status": {"phase": "Pending", "conditions": []},
        }

    def _advance(self, vmi: Obj) -> None:
        state = vmi["status"]
        phase = state["phase"]
        if phase == "Running" or (self.config.never_ready and phase == "Scheduled"):
            return
        state["phase"] = PHASES[PHASES.index(phase) + 1]
        if state["phase"] == "Scheduled":
            pod = self._launcher_pod(vmi)
            self.store.objects[("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])] = (
                pod
            )
            state["nodeName"] = self.config.node
            state["activePods"] = {pod["metadata"]["uid"]: self.config.node}
            if self.config.on_pod is not None:
                self.config.on_pod(pod)
        if state["phase"] == "Running":
            state["conditions"] = [{"type": "Ready", "status": "True"}]
            state["interfaces"] = [
                {
                    "name": "default",
                    "ipAddress": self.config.pod_ip,
                    "ipAddresses": [self.config.pod_ip],
                    "mac": "52:54:00:12:34:56",
                    "interfaceName": "eth0",
                    "podInterfaceName": "eth0",
                    "infoSource": "domain, guest-agent",
                }
            ]
        self.store.stamp(vmi, new=False)

    def _launcher_pod(self, vmi: Obj) -> Obj:
        meta = vmi["metadata"]
        uid = self.config.pod_uids.pop(0) if self.config.pod_uids else str(uuid.uuid4())
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"virt-launcher-{meta['name']}-{uid[:5]}",
                "generateName": f"virt-launcher-{meta['name']}-",
                "namespace": meta["namespace"],
                "uid": uid,
                "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": meta["uid"]},
                "annotations": {"kubevirt.io/domain": meta["name"]},
                "ownerReferences": [
                    {
                        "apiVersion": "kubevirt.io/v1",
                        "kind": "VirtualMachineInstance",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "nodeName": self.config.node,
                "containers": [
                    {
                        "name": "compute",
                        "image": f"quay.io/kubevirt/virt-launcher:{self.config.kubevirt_version}",
                    }
                ],
            },
            "status": {
                "phase": "Running",
                "podIP": self.config.pod_ip,
                "podIPs": [{"ip": self.config.pod_ip}],
                "hostIP": "192.0.2.10",
            },
        }
        self.store.stamp(pod, new=False)
        pod["metadata"]["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return pod

    # --- HTTP ------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: Obj) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> tuple[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                kind = self.headers.get("Content-Type", "")
                if "yaml" in kind:
                    return kind, YAML(typ="safe", pure=True).load(raw)
                return kind, json.loads(raw) if raw else None

            def do_GET(self) -> None:
                cluster.handle(self, "GET")

            def do_POST(self) -> None:
                cluster.handle(self, "POST")

            def do_PATCH(self) -> None:
                cluster.handle(self, "PATCH")

            def do_DELETE(self) -> None:
                cluster.handle(self, "DELETE")

        return Handler

    def handle(self, request: Any, method: str) -> None:
        url = urlparse(request.path)
        query = parse_qs(url.query)
        parts = [p for p in url.path.split("/") if p]
        self.requests.append((method, url.path))
        if request.headers.get("Authorization") != "Bearer secret":
            request._send(401, status(401, "Unauthorized", "Unauthorized"))
            return
        discovery = self._discovery(parts)
        if discovery is not None:
            request._send(200, discovery)
            return
        route = self._route(parts)
        if route is None:
            request._send(404, status(404, "NotFound", f"the server could not find {url.path}"))
            return
        plural, namespace, name = route
        if plural in self.config.forbidden:
            message = (
                f'{plural} is forbidden: User "tester" cannot {method.lower()} resource "{plural}"'
            )
            request._send(403, status(403, "Forbidden", message))
            return
        with self.store.lock:
            code, body = self._serve(
                request, method=method, plural=plural, namespace=namespace, name=name, query=query
            )
        request._send(code, body)

    def _discovery(self, parts: list[str]) -> Obj | None:
        if parts == ["version"]:
            return {"major": "1", "minor": "29", "gitVersion": "v1.29.0"}
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"]}
        if parts == ["apis"]:
            group = {
                "name": "kubevirt.io",
                "versions": [{"groupVersion": "kubevirt.io/v1", "version": "v1"}],
            }
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}
        if parts == ["apis", *KUBEVIRT]:
            names = ("virtualmachines", "virtualmachineinstances", "kubevirts")
            resources = [{"name": n, "namespaced": True, "kind": n[:-1]} for n in names]
            return {
                "kind": "APIResourceList",
                "groupVersion": "kubevirt.io/v1",
                "resources": resources,
            }
        return None

    @staticmethod
    def _route(parts: list[str]) -> tuple[str, str | None, str | None] | None:
        if parts[:2] == ["api", "v1"]:
            rest = parts[2:]
        elif parts[:3] == ["apis", *KUBEVIRT]:
            rest = parts[3:]
        else:
            return None
        if len(rest) == 1:
            return rest[0], None, None
        if len(rest) >= 3 and rest[0] == "namespaces":
            return rest[2], rest[1], rest[3] if len(rest) > 3 else None
        return None

    def _serve(
        self,
        request: Any,
        *,
        method: str,
        plural: str,
        namespace: str | None,
        name: str | None,
        query: dict[str, list[str]],
    ) -> tuple[int, Obj]:
        objects = self.store.objects
        if name is None and method == "GET":
            selector = query.get("labelSelector", [""])[0]
            items = [
                obj
                for (p, ns, _), obj in sorted(objects.items())
                if p == plural
                and (namespace is None or ns == namespace)
                and matches(obj.get("metadata", {}).get("labels", {}), selector)
            ]
            return 200, {
                "kind": "List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.store.version)},
                "items": items,
            }
        if name is None and method == "POST":
            _, body = request._body()
            key = (plural, namespace or "", body["metadata"]["name"])
            if key in objects:
                return 409, status(409, "AlreadyExists", f'{plural} "{key[2]}" already exists')
            body["metadata"]["namespace"] = namespace
            objects[key] = self.store.stamp(body, new=True)
            return 201, objects[key]
        key = (plural, namespace or "", name or "")
        if method == "GET":
            if key not in objects:
                return 404, status(404, "NotFound", f'{plural} "{name}" not found')
            return 200, objects[key]
        if method == "DELETE":
            if key not in objects:
                return 404, status(404, "NotFound", f'{plural} "{name}" not found')
            gone = objects.pop(key)
            return 200, gone
        if method == "PATCH":
            kind, body = request._body()
            if "apply-patch" not in kind:
                return 415, status(415, "UnsupportedMediaType", f"unsupported patch type {kind}")
            manager = parse_qs(urlparse(request.path).query).get("fieldManager", [""])[0]
            if not manager:
                return 422, status(422, "Invalid", "fieldManager is required for apply patch")
            existing = objects.get(key)
            merged = merge(existing, body) if existing else body
            merged.setdefault("metadata", {})["namespace"] = namespace
            merged["metadata"]["managedFields"] = [{"manager": manager, "operation": "Apply"}]
            if existing is not None and merged.get("spec") != existing.get("spec"):
                merged["metadata"]["generation"] = existing["metadata"].get("generation", 1) + 1
            objects[key] = self.store.stamp(merged, new=existing is None)
            return (201 if existing is None else 200), objects[key]
        return 405, status(405, "MethodNotAllowed", method)
