"""KubeVirt facts as pure functions: which passt form a cluster accepts, and how a VM will run.

What a cluster accepts is read from the cluster itself, not from a release table alone: the
VirtualMachine CRD's schema says which interface fields exist (an operator built from source
reports `devel` or `latest` as its version, so the version string cannot be trusted), and the
KubeVirt CR says which feature gates are on and which binding plugins are registered.

Facts from KubeVirt's source (file@tag):
- `passt: {}` (the core binding, gate `Passt`): the interface must be the VMI's only one and on
  the pod network (pkg/virt-api/webhooks/validating-webhook/admitters/vmi-create-admitter.go
  @v1.0.0 and @v1.2.0); deprecated in v1.2 (pkg/virt-config/deprecation/feature-gates.go
  @v1.2.0), discontinued in v1.3: the webhook rejects it whether the gate is listed or not
  (pkg/virt-config/deprecation/validator.go and pkg/network/admitter/passt.go @v1.3.0,
  pkg/network/admitter/discontinued.go @v1.8.0). The CRD keeps the field through v1.9.
- `binding: {name: passt}` (network binding plugins): the CRD field appears in v1.1.0, the passt
  plugin's sidecar in v1.1.1 (cmd/sidecars/network-passt-binding @v1.1.1); the gate
  `NetworkBindingPlugins` is needed in v1.1-v1.4 (pkg/network/admitter/binding.go @v1.4.0) and
  GA from v1.5 (pkg/virt-config/featuregate/inactive.go @v1.5.0); the plugin must be registered
  under spec.configuration.network.binding, else virt-controller fails only when it renders the
  pod ("couldn't find configuration for network bindining", pkg/network/netbinding/netbinding.go
  @v1.4.0). Still built and accepted in v1.9 (cmd/sidecars @v1.9.0).
- `passtBinding: {}` (core, from v1.8): gate `PasstBinding`, Beta (pkg/virt-config/featuregate/
  active.go @v1.8.0, @v1.9.0); in v1.8 a Beta gate is on only when listed
  (pkg/virt-config/feature-gates.go @v1.8.0), from v1.9 it is on unless listed in
  disabledFeatureGates (pkg/virt-config/featuregate/feature-gates.go @v1.9.0); pod network only
  (pkg/network/admitter/passt.go @v1.8.0); libvirt runs passt in vhost-user mode
  (pkg/virt-launcher/virtwrap/converter/network/configurator.go @v1.8.0, interface type
  vhostuser); virt-handler refuses to set up the pod network when the pod's eth0 is missing
  ("pod link (eth0) is missing", pkg/network/setup/netpod/discover.go @v1.8.0).
- A VM with neither `running` nor `runStrategy` is Halted
  (staging/src/kubevirt.io/api/core/v1/types.go, VirtualMachine.RunStrategy, @v1.0.0, @v1.9.0).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from passtplan.lang.manifest import PasstForm, get

Release = tuple[int, int, int]

INTERFACE_FIELDS = ("passt", "binding", "passtBinding")
# Fields of the VirtualMachine CRD that first appear in a release: what a cluster that does not
# say its version (devel, latest) is at least. Found by comparing the CRDs of every v1.x.0 tag.
CRD_MARKERS: tuple[tuple[str, Release], ...] = (
    ("spec.template.spec.domain.devices.interfaces[].binding", (1, 1, 0)),
    ("spec.updateVolumesStrategy", (1, 3, 0)),
    ("spec.template.spec.domain.ioThreads", (1, 5, 0)),
    ("spec.template.spec.domain.devices.interfaces[].passtBinding", (1, 8, 0)),
    ("spec.template.spec.domain.devices.interfaces[].portRanges", (1, 9, 0)),
)
MARKER_PATHS = tuple(path for path, _ in CRD_MARKERS)
GA_FROM: dict[str, Release] = {"NetworkBindingPlugins": (1, 5, 0)}
BETA_ON_BY_DEFAULT_FROM: Release = (1, 9, 0)
BETA_GATES = frozenset({"PasstBinding"})
SWAP_AFTER_RUNNING_FROM: Release = (1, 8, 0)


class Install(msgspec.Struct, frozen=True):
    """What the cluster says of its KubeVirt: the KubeVirt CR and the VirtualMachine CRD."""

    version: str  # status.observedKubeVirtVersion as reported: v1.4.2, devel, latest...
    feature_gates: frozenset[str] = frozenset()  # developerConfiguration.featureGates
    binding_plugins: frozenset[str] = frozenset()  # names under spec.configuration.network.binding
    disabled_gates: frozenset[str] = frozenset()  # developerConfiguration.disabledFeatureGates
    crd_fields: frozenset[str] | None = None  # marker paths the CRD has; None: not read

    @property
    def release(self) -> Release:
        """The release the rules follow: the version when it is one, else what the CRD shows."""
        parsed = parse_release(self.version)
        if parsed is not None:
            return parsed
        return self.crd_release or (0, 0, 0)

    @property
    def crd_release(self) -> Release | None:
        if self.crd_fields is None:
            return None
        found = [release for path, release in CRD_MARKERS if path in self.crd_fields]
        return max(found, default=(1, 0, 0))

    @property
    def shown(self) -> str:
        """The release as the messages name it."""
        if parse_release(self.version) is not None or self.crd_release is None:
            return f"KubeVirt {self.version}"
        major, minor, _ = self.crd_release
        return f"KubeVirt {self.version} (v{major}.{minor} or later, by its VirtualMachine CRD)"

    def has_field(self, name: str) -> bool:
        """Whether the VM CRD has this interface field (by the release when it was not read)."""
        path = f"spec.template.spec.domain.devices.interfaces[].{name}"
        if self.crd_fields is not None and path in MARKER_PATHS:
            return path in self.crd_fields
        release = self.release
        return {
            "passt": True,
            "binding": release >= (1, 1, 0),
            "passtBinding": release >= (1, 8, 0),
        }[name]

    def gate_on(self, gate: str) -> bool:
        release = self.release
        if gate in GA_FROM and release >= GA_FROM[gate]:
            return True
        if gate in self.feature_gates:
            return True
        if gate in BETA_GATES and release >= BETA_ON_BY_DEFAULT_FROM:
            return gate not in self.disabled_gates
        return False


def parse_release(version: str) -> Release | None:
    found = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+].*)?", version.strip())
    if not found:
        return None
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def crd_fields(schema: dict[str, Any]) -> frozenset[str]:
    """The marker paths a VirtualMachine CRD's openAPIV3Schema has."""
    return frozenset(path for path in MARKER_PATHS if _schema_at(schema, path) is not None)


def _schema_at(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: Any = schema
    for part in path.split("."):
        name, is_list = (part[:-2], True) if part.endswith("[]") else (part, False)
        node = (node.get("properties") or {}).get(name) if isinstance(node, dict) else None
        if is_list:
            node = node.get("items") if isinstance(node, dict) else None
        if node is None:
            return None
    return node if isinstance(node, dict) else None


class Judgement(msgspec.Struct, frozen=True):
    """What passtplan says of a VM's passt form on a cluster."""

    error: str | None = None
    warnings: tuple[str, ...] = msgspec.field(default_factory=tuple)


def suggested_form(install: Install) -> str:
    """The form to write on this cluster, with what it needs."""
    if install.has_field("passtBinding"):
        if install.gate_on("PasstBinding"):
            return "passtBinding: {}"
        return (
            "passtBinding: {} (add PasstBinding to spec.configuration.developerConfiguration."
            "featureGates in the KubeVirt CR)"
        )
    if install.has_field("binding") and install.release >= (1, 1, 1):
        needs = [] if "passt" in install.binding_plugins else ["register the passt plugin"]
        if not install.gate_on("NetworkBindingPlugins"):
            needs.insert(0, "enable the NetworkBindingPlugins gate")
        extra = f" ({' and '.join(needs)} in the KubeVirt CR)" if needs else ""
        return "binding: {name: passt}" + extra
    return "passt: {}"


def judge(form: PasstForm, install: Install) -> Judgement:
    """Whether this cluster's KubeVirt runs a VM with this passt form, naming the fix."""
    release, shown, wanted = install.release, install.shown, suggested_form(install)
    if form == "passt":
        if release >= (1, 3, 0):
            return Judgement(
                f"{shown} rejects the core `passt: {{}}` binding (discontinued in v1.3): "
                f"use {wanted}"
            )
        if not install.gate_on("Passt"):
            return Judgement(
                f"{shown} needs the feature gate Passt for `passt: {{}}`: add it to "
                "spec.configuration.developerConfiguration.featureGates in the KubeVirt CR"
            )
        return Judgement()
    if form == "binding":
        if not install.has_field("binding") or release < (1, 1, 1):
            return Judgement(
                f"{shown} has no passt network binding plugin (from v1.1.1): use {wanted}"
            )
        if not install.gate_on("NetworkBindingPlugins"):
            return Judgement(
                f"{shown} needs the feature gate NetworkBindingPlugins for `binding: {{name: "
                "passt}` (GA from v1.5): add it to spec.configuration.developerConfiguration."
                "featureGates in the KubeVirt CR"
            )
        if "passt" not in install.binding_plugins:
            return Judgement(
                f"{shown} has no passt binding plugin registered: KubeVirt would accept the VM "
                "and fail only when it renders the pod; register it under "
                "spec.configuration.network.binding.passt in the KubeVirt CR "
                "(networkAttachmentDefinition and sidecarImage)"
            )
        warnings: tuple[str, ...] = ()
        if install.has_field("passtBinding"):
            warnings = (
                f"{shown} also has the core `passtBinding: {{}}`, the newer form (the plugin "
                "was replaced by it in v1.8)",
            )
        return Judgement(None, warnings)
    if not install.has_field("passtBinding"):
        return Judgement(
            f"{shown} has no `passtBinding` field in its VirtualMachine CRD (from v1.8): "
            f"use {wanted}"
        )
    if not install.gate_on("PasstBinding"):
        where = (
            "remove it from disabledFeatureGates"
            if "PasstBinding" in install.disabled_gates
            else "add it to spec.configuration.developerConfiguration.featureGates"
        )
        return Judgement(f"{shown} needs the feature gate PasstBinding: {where} in the KubeVirt CR")
    return Judgement()


def passt_form_error(form: PasstForm, install: Install) -> str | None:
    """Why this cluster's KubeVirt will not run a VM with this passt form, naming the form to
    use; None when it will."""
    return judge(form, install).error


def swap_after_running(form: PasstForm, install: Install) -> bool:
    """Whether virt-handler needs the pod's eth0 to set up this VM's network (passtBinding from
    v1.8): the CNI's eth0 may go only once the VM runs, and a restarted VM needs a new apply."""
    return form == "passtBinding" and install.release >= SWAP_AFTER_RUNNING_FROM


def early_eth0_removal(
    vms: dict[str, tuple[PasstForm, Install]],
    namespaces: dict[str, tuple[str, str] | None],
    removes_eth0: set[str],
) -> list[str]:
    """The namespaces of a lab that would delete the CNI's eth0 without waiting for a VM whose
    network virt-handler sets up only while eth0 exists (passtBinding from v1.8): one that
    resolves the pod otherwise than by `vm:` is not ordered after the VM's start. `namespaces`
    maps a namespace to its resolve (way, value), `removes_eth0` names those with eth0 absent."""
    strict = sorted(
        name for name, (form, install) in vms.items() if swap_after_running(form, install)
    )
    errors = []
    for namespace in sorted(removes_eth0):
        resolve = namespaces.get(namespace)
        if not strict or resolve is None or resolve[0] == "vm":
            continue
        errors.append(
            f"namespaces.{namespace}: removes eth0 but resolves by {resolve[0]}, so nothing "
            f"orders it after VM {', '.join(strict)} runs, and KubeVirt >= v1.8 refuses to set up "
            "a passtBinding VM's network without eth0: resolve it with {vm: "
            f"{strict[0]}}} so that eth0 goes after the VM is Running"
        )
    return errors


def drift(wanted: object, live: object, path: str = "") -> list[str]:
    """Paths where two objects differ (both sides compared: a field on one side only is a
    difference). Used on what a server-side dry-run apply would make against the live object."""
    if isinstance(wanted, dict) and isinstance(live, dict):
        found = []
        for key in sorted(set(wanted) | set(live), key=str):
            child = f"{path}.{key}" if path else str(key)
            found += drift(wanted.get(key), live.get(key), child)
        return found
    if isinstance(wanted, list) and isinstance(live, list) and len(wanted) == len(live):
        found = []
        for index, (want, have) in enumerate(zip(wanted, live, strict=True)):
            found += drift(want, have, f"{path}[{index}]")
        return found
    return [] if wanted == live else [path or "."]


DEFAULT_GUEST_MEMORY_MIB = 256
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
QUANTITY_BYTES = {
    None: 1,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def guest_memory_mib(body: dict[str, object]) -> int:
    """The guest's memory as KubeVirt sizes it: domain.memory.guest, else the memory request,
    else the limit (virt-launcher's converter takes them in that order); 256 MiB without any."""
    domain = ("spec", "template", "spec", "domain")
    for path in (
        (*domain, "memory", "guest"),
        (*domain, "resources", "requests", "memory"),
        (*domain, "resources", "limits", "memory"),
    ):
        found = QUANTITY.match(str(get(body, path) or ""))
        if found:
            return max(1, int(float(found[1]) * QUANTITY_BYTES[found[2]]) // 2**20)
    return DEFAULT_GUEST_MEMORY_MIB


def guest_cpus(body: dict[str, object]) -> int:
    """The guest's vCPUs: sockets x cores x threads of domain.cpu, each 1 when absent."""
    count = 1
    for part in ("sockets", "cores", "threads"):
        value = get(body, ("spec", "template", "spec", "domain", "cpu", part))
        count *= value if isinstance(value, int) and value > 0 else 1
    return count
