"""A fake Kubernetes API server with KubeVirt in it, faithful where passtplan depends on it, for
the real kubernetes client and for kubectl.

HTTP on 127.0.0.1 with:
- discovery (/version, /api, /api/v1, /apis, /apis/GROUP/VERSION) and the VirtualMachine CRD
  (/apis/apiextensions.k8s.io/v1/customresourcedefinitions/virtualmachines.kubevirt.io) whose
  openAPIV3Schema is KubeVirt's own for the release (tests/kube/crds, from KubeVirt's source);
- VirtualMachines: server-side apply with field ownership (managedFields in the FieldsV1 form: a
  field a later apply drops is removed when that manager alone owned it; another manager's field
  is a 409 conflict unless forced), dryRun=All, fieldValidation Strict (an unknown field is a 400
  naming it), Warn and Ignore (pruned), create, get, list, delete;
- KubeVirt's admission, per release: the mutating webhook rewrites /spec (quantities come back
  canonical, 2048Mi -> 2Gi), sets architecture and machine type, and from v1.7 the firmware uuid
  and serial on create; it runs after managed fields are computed, so what it adds belongs to
  nobody (kubernetes/kubernetes#87672). The validating webhook applies the passt rules of
  passtplan.kubevirt's sources (gates Passt, NetworkBindingPlugins, PasstBinding; passt: {}
  discontinued from v1.3, only interface before);
- VirtualMachineInstances, pods and the KubeVirt CR (observedKubeVirtVersion, featureGates,
  disabledFeatureGates, network.binding), 404/409/422 as Status objects, 401 without the token,
  403 for what the test forbids.
A controller follows runStrategy (Always and RerunOnFailure restart a failed VMI after a
back-off, Once runs once and then sets Halted, Manual and Halted start nothing, Halted stops a
running VMI); a VMI goes Pending -> Scheduling -> Scheduled -> Running (Ready) with a launcher pod
controlled by it, or fails with a reason when the test says so, or stays Pending when a binding
plugin is not registered (the pod cannot be rendered).
"""

from __future__ import annotations

import copy
import gzip
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from ruamel.yaml import YAML

KUBEVIRT = ("kubevirt.io", "v1")
EXTENSIONS = ("apiextensions.k8s.io", "v1")
OLD_EXTENSIONS = ("apiextensions.k8s.io", "v1beta1")  # what kubectl 1.20 lists CRDs with
VM_CRD = "virtualmachines.kubevirt.io"
PHASES = ("Pending", "Scheduling", "Scheduled", "Running")
CRDS = Path(__file__).parent / "crds"
RELEASES = ("v1.0", "v1.4", "v1.8", "v1.9")
RESTART_BACKOFF = 1.0  # seconds before Always/RerunOnFailure replace a failed VMI
Obj = dict[str, Any]
Path_ = tuple[str, ...]
IDENTITY = ("apiVersion", "kind")
META_BOOKKEEPING = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
)
OBJECT_META = {
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "finalizers",
    "ownerReferences",
    *META_BOOKKEEPING,
}


def release_of(version: str) -> str:
    found = re.match(r"v?(\d+)\.(\d+)", version)
    if not found:
        raise ValueError(f"cannot tell the release of {version!r}: pass release=")
    return f"v{found.group(1)}.{found.group(2)}"


def rel(release: str) -> tuple[int, int]:
    major, minor = release.lstrip("v").split(".")[:2]
    return int(major), int(minor)


@dataclass
class ClusterConfig:
    node: str = "node1"
    pod_ip: str = "10.233.70.4"
    kubevirt_version: str = "v1.0.0"  # what the KubeVirt CR reports: v1.4.2, devel, latest...
    release: str | None = None  # whose CRD and rules (v1.0, v1.4, v1.8, v1.9); default: version's
    feature_gates: list[str] = field(default_factory=lambda: ["Passt"])
    disabled_gates: list[str] = field(default_factory=list)
    binding_plugins: dict[str, Obj] = field(default_factory=dict)
    never_ready: bool = False
    vmi_fails: str | None = None  # the reason a VMI fails with, after Scheduled
    forbidden: set[str] = field(default_factory=set)  # plurals the user may not touch
    pod_uids: list[str] = field(default_factory=list)  # UIDs for launcher pods, in order
    on_pod: Callable[[Obj], None] | None = None  # called when a launcher pod is made
    # The bearer token the server wants; None: anonymous access (kubectl sends no token over
    # plain HTTP, so its tests run without one)
    token: str | None = "secret"

    @property
    def rules(self) -> str:
        return self.release or release_of(self.kubevirt_version)


# --- quantities -----------------------------------------------------------------------------

QUANTITY = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$")
BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def canonical_quantity(text: str) -> str:
    """Kubernetes' canonical form of a quantity (resource.Quantity.String): a binary suffix is
    kept when the value is a whole number of its largest power of 1024, else the decimal form
    with the largest power of 1000 that leaves a whole number."""
    found = QUANTITY.match(text.strip())
    if not found:
        return text
    sign, number, suffix = found.group(1), found.group(2), found.group(3) or ""
    value = Fraction(number) * (-1 if sign == "-" else 1)
    if suffix in BINARY:
        value *= 1024 ** BINARY[suffix]
        if value.denominator == 1 and value != 0:
            whole = int(value)
            for name, power in sorted(BINARY.items(), key=lambda kv: -kv[1]):
                if whole % (1024**power) == 0:
                    return f"{whole // 1024**power}{name}"
            if abs(whole) < 1024:
                return str(whole)
    elif suffix.lower().startswith("e") and suffix not in DECIMAL:
        value *= Fraction(10) ** int(suffix[1:])
    else:
        value *= Fraction(10) ** DECIMAL[suffix]
    for name, exponent in sorted(DECIMAL.items(), key=lambda kv: -kv[1]):
        scaled = value / Fraction(10) ** exponent
        if scaled.denominator == 1 and (scaled != 0 or exponent == 0):
            return f"{int(scaled)}{name}"
    return f"{int(value * 10**9)}n"


# --- the CRD schema -------------------------------------------------------------------------


def load_schema(release: str) -> Obj:
    data: Obj = json.loads(gzip.decompress((CRDS / f"{release}.json.gz").read_bytes()))
    return data


def unknown_fields(obj: Any, schema: Obj, path: str = "") -> Iterator[str]:
    """The fields of obj its schema does not declare, as Kubernetes names them."""
    if isinstance(obj, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            child = f"{path}.{key}"
            if path == ".metadata" and key in OBJECT_META:
                continue
            if properties is not None and key in properties:
                yield from unknown_fields(value, properties[key], child)
            elif isinstance(extra, dict):
                yield from unknown_fields(value, extra, child)
            elif properties is not None or extra is False:
                yield child
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for index, value in enumerate(obj):
            yield from unknown_fields(value, schema["items"], f"{path}[{index}]")


def prune(obj: Any, schema: Obj, path: str = "") -> Any:
    if isinstance(obj, dict):
        dropped = set(unknown_fields(obj, schema, path))
        return {
            k: prune(v, _child(schema, k), f"{path}.{k}")
            for k, v in obj.items()
            if f"{path}.{k}" not in dropped
        }
    if isinstance(obj, list):
        return [prune(v, schema.get("items") or {}, path) for v in obj]
    return obj


def _child(schema: Obj, key: str) -> Obj:
    properties = schema.get("properties") or {}
    if key in properties:
        child: Obj = properties[key]
        return child
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else {}


def canonicalize(obj: Any, schema: Obj) -> Any:
    """What a Go round trip does to quantities: fields declared int-or-string with the quantity
    pattern come back in canonical form."""
    if isinstance(obj, dict):
        return {k: canonicalize(v, _child(schema, k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [canonicalize(v, schema.get("items") or {}) for v in obj]
    if (
        isinstance(obj, str)
        and schema.get("x-kubernetes-int-or-string")
        and "[KMGTPE]i" in str(schema.get("pattern", ""))
    ):
        return canonical_quantity(obj)
    return obj


# --- server-side apply's field sets ---------------------------------------------------------


def field_paths(obj: Obj, prefix: Path_ = ()) -> set[Path_]:
    """The fields an object sets, as FieldsV1 has them: maps are granular, lists atomic (the
    VirtualMachine CRD's lists are atomic but for a few that passtplan does not use)."""
    found: set[Path_] = set()
    for key, value in obj.items():
        path = (*prefix, key)
        if not prefix and key in IDENTITY:
            continue
        if prefix == ("metadata",) and key in META_BOOKKEEPING:
            continue
        if isinstance(value, dict) and value:
            found |= field_paths(value, path)
        else:
            found.add(path)
    return found


def to_fields_v1(paths: set[Path_]) -> Obj:
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return root


def from_fields_v1(tree: Obj, prefix: Path_ = ()) -> set[Path_]:
    found: set[Path_] = set()
    for key, value in tree.items():
        if not key.startswith("f:"):
            continue
        path = (*prefix, key[2:])
        found |= from_fields_v1(value, path) if value else {path}
    return found


def overlaps(a: Path_, b: Path_) -> bool:
    return a[: len(b)] == b or b[: len(a)] == a


def get_path(obj: Any, path: Path_) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def remove_path(obj: Obj, path: Path_, keep: Callable[[Path_], bool]) -> None:
    """Remove a field, then the maps it leaves empty that nobody keeps."""
    parents = [obj]
    for part in path[:-1]:
        child = parents[-1].get(part)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):
        if parents[depth] or keep(path[:depth]):
            break
        parents[depth - 1].pop(path[depth - 1], None)


def merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(patch)


class ConflictError(Exception):
    pass


class InvalidError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def owners(obj: Obj) -> list[Obj]:
    managed: list[Obj] = obj.get("metadata", {}).setdefault("managedFields", [])
    return managed


def entry(obj: Obj, manager: str, operation: str) -> Obj:
    for managed in owners(obj):
        if managed["manager"] == manager and managed["operation"] == operation:
            return managed
    managed = {
        "manager": manager,
        "operation": operation,
        "apiVersion": obj.get("apiVersion", "v1"),
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": {},
    }
    owners(obj).append(managed)
    return managed


def server_side_apply(live: Obj | None, applied: Obj, manager: str, *, force: bool) -> Obj:
    """Kubernetes' server-side apply of `applied` by `manager` onto `live` (None: create)."""
    result = copy.deepcopy(live) if live is not None else {"metadata": {}}
    wanted = field_paths(applied)
    others = [
        m for m in owners(result) if not (m["manager"] == manager and m["operation"] == "Apply")
    ]
    conflicts = []
    for managed in others:
        owned = from_fields_v1(managed.get("fieldsV1", {}))
        taken = {
            o
            for o in owned
            for w in wanted
            if overlaps(o, w) and get_path(result, o) != get_path(merge(result, applied), o)
        }
        if taken and not force:
            conflicts += [(managed["manager"], ".".join(p)) for p in sorted(taken)]
        managed["fieldsV1"] = to_fields_v1(owned - taken)
    if conflicts:
        raise ConflictError(
            f"Apply failed with {len(conflicts)} conflict(s): "
            + ", ".join(f'conflict with "{who}": .{path}' for who, path in conflicts)
        )
    mine = entry(result, manager, "Apply")
    before = from_fields_v1(mine.get("fieldsV1", {}))
    kept = set().union(*(from_fields_v1(m.get("fieldsV1", {})) for m in others))

    def still_owned(path: Path_) -> bool:
        return any(overlaps(path, p) for p in kept | wanted)

    for path in sorted(before - wanted, key=len, reverse=True):
        if not any(overlaps(path, p) for p in kept) and not any(
            w[: len(path)] == path for w in wanted
        ):
            remove_path(result, path, still_owned)
    managed_fields = result["metadata"].pop("managedFields", [])
    result = dict(merge(result, applied))
    result["metadata"]["managedFields"] = managed_fields
    mine["fieldsV1"] = to_fields_v1(wanted)
    mine["time"] = now()
    mine["apiVersion"] = applied.get("apiVersion", mine["apiVersion"])
    result["metadata"]["managedFields"] = [
        m for m in managed_fields if from_fields_v1(m.get("fieldsV1", {})) or m is mine
    ]
    return result


def update_field(obj: Obj, manager: str, path: Path_, value: Any) -> None:
    """A non-apply write (a controller, virtctl): the value changes and the writer owns it."""
    node = obj
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    for managed in owners(obj):
        owned = from_fields_v1(managed.get("fieldsV1", {}))
        managed["fieldsV1"] = to_fields_v1({p for p in owned if not overlaps(p, path)})
    mine = entry(obj, manager, "Update")
    mine["fieldsV1"] = to_fields_v1(from_fields_v1(mine["fieldsV1"]) | {path})


# --- KubeVirt -------------------------------------------------------------------------------


def run_strategy(vm: Obj) -> str:
    spec = vm.get("spec", {})
    if spec.get("running") is not None:
        return "Always" if spec["running"] else "Halted"
    return str(spec.get("runStrategy") or "Halted")


def _same(a: Obj, b: Obj) -> bool:
    """Equal but for the times in managedFields."""

    def timeless(obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        for managed in out.get("metadata", {}).get("managedFields", []):
            managed.pop("time", None)
        return out

    return timeless(a) == timeless(b)


class KubeVirtRules:
    """KubeVirt's admission for VirtualMachines at one release."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.release = rel(config.rules)
        self.schema = load_schema(config.rules)

    def gate_on(self, gate: str) -> bool:
        if gate == "NetworkBindingPlugins" and self.release >= (1, 5):
            return True
        if gate in self.config.feature_gates:
            return True
        if gate == "PasstBinding" and self.release >= (1, 9):
            return gate not in self.config.disabled_gates
        return False

    def mutate(self, vm: Obj, *, create: bool) -> Obj:
        """vm-mutator.go: defaults, then /spec and /metadata replaced by their Go round trip."""
        vm = copy.deepcopy(vm)
        template = vm.get("spec", {}).get("template")
        if isinstance(template, dict):
            spec = template.setdefault("spec", {})
            spec.setdefault("architecture", "amd64")
            domain = spec.setdefault("domain", {})
            machine = domain.setdefault("machine", {})
            machine.setdefault("type", "q35")
            if create and self.release >= (1, 7):
                firmware = domain.setdefault("firmware", {})
                firmware.setdefault("uuid", str(uuid.uuid4()))
                firmware.setdefault("serial", str(uuid.uuid4()))
        spec_schema = self.schema.get("properties", {}).get("spec", {})
        if "spec" in vm:
            vm["spec"] = canonicalize(vm["spec"], spec_schema)
        return vm

    def validate(self, vm: Obj) -> list[str]:
        """The validating webhook's passt rules (file@tag in passtplan.kubevirt)."""
        spec = vm.get("spec", {}).get("template", {}).get("spec", {})
        interfaces = spec.get("domain", {}).get("devices", {}).get("interfaces") or []
        networks = {n.get("name"): n for n in spec.get("networks") or []}
        causes = []
        for index, iface in enumerate(interfaces):
            where = f"spec.template.spec.domain.devices.interfaces[{index}]"
            on_pod = "pod" in networks.get(iface.get("name"), {})
            if "passt" in iface:
                if self.release >= (1, 3):
                    causes.append(f"{where}.passt: Passt network binding has been discontinued")
                elif not self.gate_on("Passt"):
                    causes.append(f"{where}.name: Passt feature gate is not enabled")
                elif not on_pod:
                    causes.append(f"{where}.name: Passt interface only implemented with pod net")
                elif len(interfaces) > 1:
                    causes.append(
                        f"{where}.name: Passt interface is only supported as the single "
                        "interface of the VMI"
                    )
            if "binding" in iface and not self.gate_on("NetworkBindingPlugins"):
                causes.append(f"{where}.name: Binding plugins feature gate is not enabled")
            if "passtBinding" in iface:
                if not self.gate_on("PasstBinding"):
                    causes.append(f"{where}.name: PasstBinding feature gate is not enabled")
                elif not on_pod:
                    causes.append(f"{where}.name: PasstBinding interface only implemented with pod")
        if vm.get("spec", {}).get("running") is not None and vm["spec"].get("runStrategy"):
            causes.append("spec.running: running and runstrategy are mutually exclusive")
        return causes

    def pod_render_error(self, vmi: Obj) -> str | None:
        """virt-controller's pod rendering (netbinding.go @v1.4.0): a binding plugin must be
        registered in the KubeVirt CR."""
        interfaces = vmi.get("spec", {}).get("domain", {}).get("devices", {}).get("interfaces")
        for iface in interfaces or []:
            name = (iface.get("binding") or {}).get("name")
            if name and name not in self.config.binding_plugins:
                return (
                    "failed to render launch manifest: couldn't find configuration for network "
                    f"bindining: {name}"
                )
        return None


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
            meta["creationTimestamp"] = now()
            meta["generation"] = 1
        return obj


def status(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
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


OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def openapi_v2_document() -> bytes:
    """An OpenAPI v2 document in gnostic's protobuf encoding (openapiv2.proto: Document 1
    swagger, 2 info, 8 paths; Paths 2 path; NamedPathItem 1 name, 2 value; PathItem 8 patch;
    Operation 8 parameters, 13 vendor_extension; ParametersItem 1 parameter; Parameter 2
    non_body_parameter; NonBodyParameter 3 query_parameter_sub_schema; QueryParameterSubSchema
    2 in, 4 name; NamedAny 1 name, 2 value; Any 2 yaml). It has no definitions, so kubectl
    leaves validation to the server; its one path, the Namespace PATCH taking dryRun, is what
    kubectl before 1.23 looks for to allow dry-run on custom resources (DryRunVerifier)."""

    def field(number: int, payload: bytes) -> bytes:
        length, size = b"", len(payload)
        while True:
            byte, size = size & 0x7F, size >> 7
            length += bytes([byte | (0x80 if size else 0)])
            if not size:
                break
        return bytes([number << 3 | 2]) + length + payload

    info = field(1, b"Kubernetes") + field(2, b"v1.29.0")
    query = field(2, b"query") + field(4, b"dryRun")
    parameter = field(1, field(2, field(3, query)))
    gvk = field(1, b"x-kubernetes-group-version-kind") + field(
        2, field(2, b"group: ''\nkind: Namespace\nversion: v1\n")
    )
    operation = field(5, b"patchCoreV1Namespace") + field(8, parameter) + field(13, gvk)
    path = field(1, b"/api/v1/namespaces/{name}") + field(2, field(8, operation))
    return field(1, b"2.0") + field(2, info) + field(8, field(2, path))


RESOURCES = {
    # plural: (group/version, kind, short names, namespaced)
    "pods": ("v1", "Pod", ["po"], True),
    "namespaces": ("v1", "Namespace", ["ns"], False),
    "virtualmachines": ("kubevirt.io/v1", "VirtualMachine", ["vm", "vms"], True),
    "virtualmachineinstances": ("kubevirt.io/v1", "VirtualMachineInstance", ["vmi", "vmis"], True),
    "kubevirts": ("kubevirt.io/v1", "KubeVirt", ["kv", "kvs"], True),
    "customresourcedefinitions": (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        ["crd", "crds"],
        False,
    ),
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


class FakeCluster:
    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig()
        self.rules = KubeVirtRules(self.config)
        self.store = Store(self.config)
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.stop_event = threading.Event()
        self.controller = threading.Thread(target=self._control, daemon=True)
        self.failed_at: dict[tuple[str, str], float] = {}
        self.ran_once: set[tuple[str, str]] = set()
        configuration: dict[str, Any] = {
            "developerConfiguration": {
                "featureGates": self.config.feature_gates,
                **(
                    {"disabledFeatureGates": self.config.disabled_gates}
                    if self.config.disabled_gates
                    else {}
                ),
            }
        }
        if self.config.binding_plugins:
            configuration["network"] = {"binding": self.config.binding_plugins}
        kubevirt = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "KubeVirt",
            "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
            "spec": {"configuration": configuration},
            "status": {
                "phase": "Deployed",
                "observedKubeVirtVersion": self.config.kubevirt_version,
            },
        }
        self.store.objects[("kubevirts", "kubevirt", "kubevirt")] = self.store.stamp(
            kubevirt, new=True
        )
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": VM_CRD},
            "spec": {
                "group": "kubevirt.io",
                "names": {"kind": "VirtualMachine", "plural": "virtualmachines"},
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": self.rules.schema},
                    }
                ],
            },
        }
        self.store.objects[("customresourcedefinitions", "", VM_CRD)] = self.store.stamp(
            crd, new=True
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
            "users": [
                {
                    "name": "tester",
                    "user": {"token": self.config.token} if self.config.token else {},
                }
            ],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "tester"}}],
            "current-context": context,
        }

    def virtctl(self, verb: str, namespace: str, name: str) -> None:
        """virtctl stop/start: virt-api sets the VM's runStrategy (a non-apply write)."""
        with self.store.lock:
            vm = self.store.objects[("virtualmachines", namespace, name)]
            vm["spec"].pop("running", None)
            value = {"stop": "Halted", "start": "Always"}[verb]
            update_field(vm, "virt-api", ("spec", "runStrategy"), value)
            self.store.stamp(vm, new=False)

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
            key = ("virtualmachineinstances", ns, name)
            vmi = objects.get(key)
            strategy = run_strategy(vm)
            phase = (vmi or {}).get("status", {}).get("phase")
            if vmi is not None and strategy == "Halted":
                self._delete_vmi(key)
                vmi = None
            elif phase in ("Failed", "Succeeded"):
                restart = strategy == "Always" or (
                    strategy == "RerunOnFailure" and phase == "Failed"
                )
                if strategy == "Once" and vm["spec"].get("runStrategy") == "Once":
                    update_field(vm, "virt-controller", ("spec", "runStrategy"), "Halted")
                    self.store.stamp(vm, new=False)
                waited = time.monotonic() - self.failed_at.setdefault((ns, name), time.monotonic())
                if restart and waited > RESTART_BACKOFF:
                    self._delete_vmi(key)
                    self.failed_at.pop((ns, name), None)
                    vmi = None
            starts = strategy in ("Always", "RerunOnFailure") or (
                strategy == "Once" and (ns, name) not in self.ran_once
            )
            if vmi is None and starts:
                vmi = objects[key] = self.store.stamp(self._vmi(vm), new=True)
                self.ran_once.add((ns, name))
            if vmi is not None:
                self._advance(vmi)
            self._vm_status(vm, vmi)
        for plural, ns, name in list(objects):
            if plural == "virtualmachineinstances" and ("virtualmachines", ns, name) not in objects:
                self._delete_vmi((plural, ns, name))

    def _delete_vmi(self, key: tuple[str, str, str]) -> None:
        vmi = self.store.objects.pop(key)
        for other, pod in list(self.store.objects.items()):
            owners_ = pod.get("metadata", {}).get("ownerReferences", [])
            if other[0] == "pods" and any(o["uid"] == vmi["metadata"]["uid"] for o in owners_):
                del self.store.objects[other]

    def _vm_status(self, vm: Obj, vmi: Obj | None) -> None:
        phase = (vmi or {}).get("status", {}).get("phase")
        printable = {
            None: "Stopped",
            "Pending": "Starting",
            "Scheduling": "Starting",
            "Scheduled": "Starting",
            "Running": "Running",
            "Succeeded": "Stopped",
            "Failed": "CrashLoopBackOff" if run_strategy(vm) != "Halted" else "Stopped",
        }[phase]
        state: Obj = {"printableStatus": printable, "created": vmi is not None}
        if phase == "Running":
            state["ready"] = True
        if vm.get("status") != state:
            vm["status"] = state

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
        if phase in ("Running", "Failed", "Succeeded"):
            return
        if self.config.never_ready and phase == "Scheduled":
            return
        if phase == "Pending":
            problem = self.rules.pod_render_error(vmi)
            if problem is not None:
                condition = {
                    "type": "Synchronized",
                    "status": "False",
                    "reason": "FailedCreate",
                    "message": problem,
                }
                if state["conditions"] != [condition]:
                    state["conditions"] = [condition]
                    self.store.stamp(vmi, new=False)
                return
        if phase == "Scheduled" and self.config.vmi_fails:
            state["phase"] = "Failed"
            state["reason"] = self.config.vmi_fails
            state["conditions"] = [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "PodTerminating",
                    "message": f"virt-launcher pod failed: {self.config.vmi_fails}",
                }
            ]
            self.store.stamp(vmi, new=False)
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
        pod: Obj = {
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
        pod["metadata"]["creationTimestamp"] = now()
        return pod

    # --- HTTP ------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: Obj, warnings: list[str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for warning in warnings or []:
                    self.send_header("Warning", f'299 - "{warning}"')
                self.end_headers()
                self.wfile.write(data)

            def _send_raw(self, code: int, data: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
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

            def do_PUT(self) -> None:
                cluster.handle(self, "PUT")

            def do_DELETE(self) -> None:
                cluster.handle(self, "DELETE")

        return Handler

    def handle(self, request: Any, method: str) -> None:
        url = urlparse(request.path)
        query = parse_qs(url.query)
        parts = [p for p in url.path.split("/") if p]
        self.requests.append((method, request.path))
        wanted = f"Bearer {self.config.token}" if self.config.token else None
        if wanted and request.headers.get("Authorization") != wanted:
            request._send(401, status(401, "Unauthorized", "Unauthorized"))
            return
        if parts == ["openapi", "v2"]:
            # kubectl before 1.23 (Debian's 1.20) validates against OpenAPI v2 in protobuf
            request._send_raw(200, openapi_v2_document(), OPENAPI_V2_PROTOBUF)
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
        warnings: list[str] = []
        with self.store.lock:
            try:
                code, body = self._serve(
                    request,
                    method=method,
                    plural=plural,
                    namespace=namespace,
                    name=name,
                    query=query,
                    warnings=warnings,
                )
            except InvalidError as exc:
                code, body = exc.code, status(exc.code, exc.reason, exc.message)
        request._send(code, body, warnings)

    def _discovery(self, parts: list[str]) -> Obj | None:
        if parts == ["openapi", "v3"]:
            # kubectl's field-validation check (k8s.io/cli-runtime query_param_verifier_v3.go):
            # the root names each group-version's document
            url = "/openapi/v3/apis/kubevirt.io/v1?hash=fake"
            return {"paths": {"apis/kubevirt.io/v1": {"serverRelativeURL": url}}}
        if parts == ["openapi", "v3", "apis", *KUBEVIRT]:
            return self._openapi_v3()
        if parts == ["version"]:
            return {"major": "1", "minor": "29", "gitVersion": "v1.29.0", "platform": "linux/amd64"}
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"]}
        if parts == ["apis"]:
            groups = []
            for group, version in (KUBEVIRT, EXTENSIONS):
                gv = {"groupVersion": f"{group}/{version}", "version": version}
                groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        for group_version in (["api", "v1"], ["apis", *KUBEVIRT], ["apis", *EXTENSIONS]):
            if parts == group_version:
                name = "/".join(group_version[1:])
                resources = [
                    {
                        "name": plural,
                        "singularName": kind.lower(),
                        "namespaced": namespaced,
                        "kind": kind,
                        "verbs": VERBS,
                        "shortNames": short,
                    }
                    for plural, (owner, kind, short, namespaced) in RESOURCES.items()
                    if owner == name
                ]
                return {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": name,
                    "resources": resources,
                }
        return None

    def _openapi_v3(self) -> Obj:
        """The OpenAPI v3 document of kubevirt.io/v1, as far as kubectl reads it: the
        VirtualMachine path's PATCH takes fieldValidation (and dryRun, fieldManager, force)."""
        gvk = {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachine"}
        params = [
            {"name": name, "in": "query", "schema": {"type": "string"}}
            for name in ("dryRun", "fieldManager", "fieldValidation", "force")
        ]
        schema_ref = {"$ref": "#/components/schemas/io.kubevirt.v1.VirtualMachine"}
        body = {"content": {"application/apply-patch+yaml": {"schema": schema_ref}}}
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.29.0"},
            "paths": {
                "/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}": {
                    "patch": {
                        "operationId": "patchKubevirtIoV1NamespacedVirtualMachine",
                        "parameters": params,
                        "requestBody": body,
                        "responses": {"200": {"description": "OK"}},
                        "x-kubernetes-action": "patch",
                        "x-kubernetes-group-version-kind": gvk,
                    }
                }
            },
            "components": {
                "schemas": {
                    "io.kubevirt.v1.VirtualMachine": {
                        **self.rules.schema,
                        "x-kubernetes-group-version-kind": [gvk],
                    }
                }
            },
        }

    @staticmethod
    def _route(parts: list[str]) -> tuple[str, str | None, str | None] | None:
        if parts[:2] == ["api", "v1"]:
            rest = parts[2:]
        elif parts[:3] in (["apis", *KUBEVIRT], ["apis", *EXTENSIONS], ["apis", *OLD_EXTENSIONS]):
            rest = parts[3:]
        else:
            return None
        if len(rest) in (1, 2) and rest[0] != "namespaces":
            return rest[0], None, rest[1] if len(rest) == 2 else None
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
        warnings: list[str],
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
            kind = RESOURCES.get(plural, ("", "Object"))[1]
            return 200, {
                "kind": f"{kind}List",
                "apiVersion": RESOURCES.get(plural, ("v1",))[0],
                "metadata": {"resourceVersion": str(self.store.version)},
                "items": items,
            }
        if name is None and method == "POST":
            _, body = request._body()
            key = (plural, namespace or "", body["metadata"]["name"])
            if key in objects:
                return 409, status(409, "AlreadyExists", f'{plural} "{key[2]}" already exists')
            body["metadata"]["namespace"] = namespace
            if plural == "virtualmachines":
                body = self._admit(body, query, warnings, create=True)
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
            return self._apply(request, key, query, warnings)
        return 405, status(405, "MethodNotAllowed", method)

    def _admit(
        self, vm: Obj, query: dict[str, list[str]], warnings: list[str], *, create: bool
    ) -> Obj:
        """Decoding with field validation, then KubeVirt's mutating and validating webhooks."""
        validation = query.get("fieldValidation", ["Warn"])[0]
        unknown = sorted(unknown_fields(vm, self.rules.schema))
        if unknown and validation == "Strict":
            name = vm.get("metadata", {}).get("name")
            raise InvalidError(
                400,
                "BadRequest",
                f"failed to create typed patch object ({vm.get('metadata', {}).get('namespace')}"
                f"/{name}; kubevirt.io/v1, Kind=VirtualMachine): "
                + ", ".join(f"{path}: field not declared in schema" for path in unknown),
            )
        if unknown and validation == "Warn":
            warnings += [f'unknown field "{path.lstrip(".")}"' for path in unknown]
        admitted: Obj = prune(vm, self.rules.schema)
        return admitted

    def _apply(
        self,
        request: Any,
        key: tuple[str, str, str],
        query: dict[str, list[str]],
        warnings: list[str],
    ) -> tuple[int, Obj]:
        kind, body = request._body()
        if "apply-patch" not in kind:
            return 415, status(415, "UnsupportedMediaType", f"unsupported patch type {kind}")
        manager = query.get("fieldManager", [""])[0]
        if not manager:
            return 422, status(422, "Invalid", "fieldManager is required for apply patch")
        if key[0] != "virtualmachines":
            return 405, status(405, "MethodNotAllowed", f"apply to {key[0]} is not faked")
        if not isinstance(body, dict) or body.get("metadata", {}).get("name") != key[2]:
            return 400, status(400, "BadRequest", "the name of the object does not match the URL")
        body.setdefault("metadata", {})["namespace"] = key[1]
        existing = self.store.objects.get(key)
        body = self._admit(body, query, warnings, create=existing is None)
        force = query.get("force", ["false"])[0] == "true"
        try:
            merged = server_side_apply(existing, body, manager, force=force)
        except ConflictError as exc:
            return 409, status(409, "Conflict", str(exc))
        merged = self.rules.mutate(merged, create=existing is None)
        causes = self.rules.validate(merged)
        if causes:
            message = (
                'admission webhook "virtualmachine-validator.kubevirt.io" denied the request: '
                + ", ".join(causes)
            )
            return 422, status(422, "Invalid", message)
        merged["metadata"]["namespace"] = key[1]
        if existing is not None:
            for kept in ("uid", "creationTimestamp", "generation", "resourceVersion"):
                merged["metadata"][kept] = existing["metadata"].get(kept)
            merged["status"] = copy.deepcopy(existing.get("status", {}))
            if merged.get("spec") != existing.get("spec"):
                merged["metadata"]["generation"] = existing["metadata"].get("generation", 1) + 1
        if existing is not None and _same(merged, existing):
            # a no-op apply (judged after admission) leaves managedFields, times included, as
            # they were
            merged["metadata"]["managedFields"] = copy.deepcopy(
                existing["metadata"].get("managedFields", [])
            )
        if query.get("dryRun", [""])[0] == "All":
            if existing is None:
                merged["metadata"]["uid"] = str(uuid.uuid4())
                merged["metadata"]["creationTimestamp"] = now()
                merged["metadata"]["generation"] = 1
            return (201 if existing is None else 200), merged
        if existing is not None and merged == existing:
            return 200, existing
        self.store.objects[key] = self.store.stamp(merged, new=existing is None)
        return (201 if existing is None else 200), self.store.objects[key]
