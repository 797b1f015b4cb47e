"""A lab's VM manifests: KubeVirt VirtualMachines whose pod-network interface uses passt.

Only what passtplan relies on is checked here (the kind, the name, the passt interface, its ports,
cloud-init secrets); the rest of the manifest is KubeVirt's to judge when it is applied.
"""

from __future__ import annotations

import json
from typing import Literal

import msgspec

from passtplan.errors import Severity, SpecError, SpecIssue
from passtplan.lang.yamlsource import DataPath, YamlDocument, parse_yaml

KUBEVIRT_API = "kubevirt.io/v1"
# The three ways KubeVirt has spelled "this interface uses passt" (passtplan.kubevirt says which
# release accepts which): core `passt: {}` v1.0-v1.2, the binding plugin `binding: {name: passt}`
# from v1.1.1, core `passtBinding: {}` from v1.8.
PasstForm = Literal["passt", "binding", "passtBinding"]
INTERFACE_PATH: DataPath = ("spec", "template", "spec", "domain", "devices", "interfaces")
NETWORKS_PATH: DataPath = ("spec", "template", "spec", "networks")
VOLUMES_PATH: DataPath = ("spec", "template", "spec", "volumes")
HOSTNAME_PATH: DataPath = ("spec", "template", "spec", "hostname")
CLOUD_SOURCES = ("cloudInitNoCloud", "cloudInitConfigDrive")
OTHER_BINDINGS = ("masquerade", "bridge", "sriov", "slirp", "macvtap")
# KubeVirt's run strategies (staging/src/kubevirt.io/api/core/v1/types.go @v1.9.0); a VM with
# neither `running` nor `runStrategy` is Halted (VirtualMachine.RunStrategy, @v1.0.0-@v1.9.0).
STARTS = ("Always", "RerunOnFailure", "Once")
NEVER_STARTS = {
    "Halted": "Halted keeps it stopped",
    "Manual": "Manual starts it only on `virtctl start`",
}
RUN_FIX = "set spec.runStrategy: Always (or RerunOnFailure) so that KubeVirt starts it"
SECRET_HINT = (
    "anyone who can read the VM can read it; keep the cloud-config in a Secret and reference it "
    "with userDataSecretRef: {name: SECRET}"
)


class Port(msgspec.Struct, frozen=True):
    port: int
    protocol: Literal["TCP", "UDP"]


class VmManifest(msgspec.Struct, frozen=True):
    """What the engine needs to know of a VirtualMachine manifest, and the manifest itself."""

    name: str
    namespace: str
    passt_form: PasstForm
    interface: str
    ports: tuple[Port, ...] | None  # None: the interface forwards every port
    body: dict[str, object]


def get(data: object, path: DataPath) -> object:
    """The value at `path`, or None where the document does not have it."""
    for part in path:
        if isinstance(part, int) and isinstance(data, list) and part < len(data):
            data = data[part]
        elif isinstance(part, str) and isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


def read_manifest(
    doc: YamlDocument, vm_name: str, k8s_namespace: str
) -> tuple[VmManifest | None, list[SpecIssue]]:
    """Judge one manifest; return it when it has no errors, and every issue found either way."""
    issues: list[SpecIssue] = []
    data = doc.data
    if not isinstance(data, dict):
        return None, [doc.issue((), "a VM manifest must be a mapping (a KubeVirt VirtualMachine)")]
    if data.get("apiVersion") != KUBEVIRT_API:
        issues.append(
            doc.issue(
                ("apiVersion",),
                f"must be {KUBEVIRT_API} for a KubeVirt VirtualMachine, "
                f"not {data.get('apiVersion')!r}",
            )
        )
    if data.get("kind") != "VirtualMachine":
        hint = (
            " (wrap the VMI's spec in spec.template)"
            if data.get("kind") == ("VirtualMachineInstance")
            else ""
        )
        issues.append(
            doc.issue(("kind",), f"must be VirtualMachine, not {data.get('kind')!r}{hint}")
        )
        return None, issues
    issues += _check_metadata(doc, vm_name, k8s_namespace)
    if get(data, ("spec", "running")) is not None and get(data, ("spec", "runStrategy")):
        issues.append(
            doc.issue(
                ("spec", "running"),
                "running and runStrategy exclude each other; keep runStrategy (running is "
                "deprecated)",
                at_key=True,
            )
        )
    issues += _run_strategy(doc)
    found, interface_issues = _passt_interface(doc)
    issues += interface_issues
    issues += _cloud_init_passwords(doc)
    if found is None or any(i.severity is Severity.ERROR for i in issues):
        return None, issues
    form, iface_name, ports = found
    return VmManifest(vm_name, k8s_namespace, form, iface_name, ports, data), issues


def _check_metadata(doc: YamlDocument, vm_name: str, k8s_namespace: str) -> list[SpecIssue]:
    issues = []
    name = get(doc.data, ("metadata", "name"))
    if name != vm_name:
        issues.append(
            doc.issue(
                ("metadata", "name"),
                f"the manifest names the VM {name!r} but the lab calls it {vm_name!r}; "
                "make them the same",
            )
        )
    namespace = get(doc.data, ("metadata", "namespace"))
    if namespace is not None and namespace != k8s_namespace:
        issues.append(
            doc.issue(
                ("metadata", "namespace"),
                f"the manifest puts the VM in namespace {namespace!r} but the lab says "
                f"{k8s_namespace!r}; make them the same or drop it here",
            )
        )
    return issues


def _run_strategy(doc: YamlDocument) -> list[SpecIssue]:
    """A lab's VM must start by itself: apply waits for it, and its pod is what the lab changes."""
    running = get(doc.data, ("spec", "running"))
    strategy = get(doc.data, ("spec", "runStrategy"))
    if running is not None and strategy:
        return []  # reported above: the two exclude each other
    if running is not None:
        if running is True:
            return []
        return [
            doc.issue(
                ("spec", "running"),
                f"running: {json.dumps(running)} never starts the VM; {RUN_FIX} in place of "
                "running",
            )
        ]
    if strategy is None:
        return [
            doc.issue(
                ("spec",),
                "the VM has neither running nor runStrategy, so KubeVirt keeps it Halted and it "
                f"never starts; {RUN_FIX}",
            )
        ]
    if strategy in NEVER_STARTS:
        return [
            doc.issue(
                ("spec", "runStrategy"),
                f"runStrategy {strategy} never starts the VM ({NEVER_STARTS[strategy]}); {RUN_FIX}",
            )
        ]
    if strategy not in STARTS:
        known = ", ".join((*STARTS, *NEVER_STARTS))
        message = f"unknown runStrategy {strategy!r}: use {known}"
        return [doc.issue(("spec", "runStrategy"), message)]
    return []


def _passt_interface(
    doc: YamlDocument,
) -> tuple[tuple[PasstForm, str, tuple[Port, ...] | None] | None, list[SpecIssue]]:
    networks = get(doc.data, NETWORKS_PATH)
    pod_networks = [
        n["name"]
        for n in (networks if isinstance(networks, list) else [])
        if isinstance(n, dict) and isinstance(n.get("pod"), dict) and "name" in n
    ]
    if not pod_networks:
        return None, [
            doc.issue(
                NETWORKS_PATH,
                "the VM has no pod network; passt works only on it: add "
                "networks: [{name: default, pod: {}}]",
            )
        ]
    interfaces = get(doc.data, INTERFACE_PATH)
    if not isinstance(interfaces, list):
        interfaces = []
    for index, iface in enumerate(interfaces):
        if isinstance(iface, dict) and iface.get("name") == pod_networks[0]:
            return _judge_interface(doc, (*INTERFACE_PATH, index), iface, len(interfaces))
    return None, [
        doc.issue(
            INTERFACE_PATH,
            f"no interface is named {pod_networks[0]!r}, the pod network; add "
            f"{{name: {pod_networks[0]}, passtBinding: {{}}}}",
        )
    ]


def _judge_interface(
    doc: YamlDocument, path: DataPath, iface: dict[str, object], count: int
) -> tuple[tuple[PasstForm, str, tuple[Port, ...] | None] | None, list[SpecIssue]]:
    name = str(iface["name"])
    form = _passt_form(iface)
    if form is None:
        used = next((b for b in OTHER_BINDINGS if b in iface), None)
        what = f"uses {used}" if used else "has no binding"
        return None, [
            doc.issue(
                path,
                f"interface {name!r} {what}; a passtplan lab needs passt: use passtBinding: {{}} "
                "(KubeVirt >= 1.8), binding: {name: passt} (>= 1.1.1) or passt: {} (1.0-1.2)",
            )
        ]
    issues = []
    if count > 1 and form == "passt":
        # vmi-create-admitter.go @v1.0.0-@v1.2.0: "Passt interface is only supported as the
        # single interface of the VMI"; the binding plugin and passtBinding have no such rule.
        issues.append(
            doc.issue(
                INTERFACE_PATH,
                f"the VM has {count} interfaces; the core `passt: {{}}` binding works only as a "
                "VM's only interface (KubeVirt v1.0-v1.2): use passtBinding: {} (v1.8+) or "
                "binding: {name: passt} for a VM with secondary interfaces",
            )
        )
    ports, port_issues = _ports(doc, (*path, "ports"), iface.get("ports"))
    return (form, name, ports), issues + port_issues


def _passt_form(iface: dict[str, object]) -> PasstForm | None:
    if isinstance(iface.get("passtBinding"), dict):
        return "passtBinding"
    if isinstance(iface.get("passt"), dict):
        return "passt"
    binding = iface.get("binding")
    if isinstance(binding, dict) and binding.get("name") == "passt":
        return "binding"
    return None


def _ports(
    doc: YamlDocument, path: DataPath, raw: object
) -> tuple[tuple[Port, ...] | None, list[SpecIssue]]:
    if raw is None:
        return None, []
    if not isinstance(raw, list):
        return None, [doc.issue(path, "ports must be a list of {port: N, protocol: TCP|UDP}")]
    ports, issues = [], []
    for index, entry in enumerate(raw):
        number = entry.get("port") if isinstance(entry, dict) else None
        protocol = entry.get("protocol", "TCP") if isinstance(entry, dict) else None
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            issues.append(doc.issue((*path, index), "port must be a number from 1 to 65535"))
        elif protocol not in ("TCP", "UDP"):
            issues.append(doc.issue((*path, index, "protocol"), "protocol must be TCP or UDP"))
        else:
            ports.append(Port(number, protocol))
    return tuple(ports), issues


def _cloud_init_passwords(doc: YamlDocument) -> list[SpecIssue]:
    volumes = get(doc.data, VOLUMES_PATH)
    issues = []
    for index, volume in enumerate(volumes if isinstance(volumes, list) else []):
        for source in ("cloudInitNoCloud", "cloudInitConfigDrive"):
            user_data = get(volume, (source, "userData"))
            if isinstance(user_data, str):
                what = plaintext_password(user_data)
                if what:
                    issue = doc.issue(
                        (*VOLUMES_PATH, index, source, "userData"),
                        f"cloud-init sets a plaintext password ({what}); {SECRET_HINT}",
                    )
                    issues.append(_as_warning(issue))
    return issues


def _as_warning(issue: SpecIssue) -> SpecIssue:
    return SpecIssue(issue.file, issue.line, issue.col, issue.path, issue.message, Severity.WARNING)


def plaintext_password(user_data: str) -> str | None:
    """Name the cloud-config key that carries a password in clear text, if any."""
    try:
        config = parse_yaml(user_data.encode(), "userData").data
    except SpecError:
        return None  # not a cloud-config we can read, so not one that sets a password
    if not isinstance(config, dict):
        return None
    if isinstance(config.get("password"), str):
        return "password"
    chpasswd = config.get("chpasswd")
    if isinstance(chpasswd, dict) and (chpasswd.get("list") or _users_with(chpasswd, "password")):
        return "chpasswd"
    if _users_with(config, "plain_text_passwd"):
        return "users[].plain_text_passwd"
    return None


def _users_with(section: dict[object, object], key: str) -> bool:
    users = section.get("users")
    return isinstance(users, list) and any(isinstance(u, dict) and key in u for u in users)


def cloud_init_volume(manifest: VmManifest) -> dict[str, object] | None:
    """The manifest's cloud-init source (NoCloud or ConfigDrive), if it has one."""
    volumes = get(manifest.body, VOLUMES_PATH)
    for volume in volumes if isinstance(volumes, list) else []:
        for source in CLOUD_SOURCES:
            found = get(volume, (source,))
            if isinstance(found, dict):
                return found
    return None
