"""The v1alpha1 plan language as pydantic models.

These models judge one field or one object at a time; rules that span the lab (references, cycles,
gateways reachable through declared addresses) live in `semantics`, which reads validated models.
The annotations are not postponed (no `from __future__ import annotations`): pydantic would
evaluate each field's from its string at every start (~5 ms of each command that reads a lab).
"""

from typing import Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from passtplan.lang.types import (
    IP,
    AbsolutePath,
    Address,
    Endpoint,
    Gateway,
    IfName,
    LinkKind,
    LinkRef,
    Mac,
    MacvlanMode,
    Mtu,
    Name,
    PodRef,
    Port,
    RouteDestination,
    RouteProtocol,
    State,
    SysctlName,
    SysctlValue,
    Uid,
    Vni,
    parse_ip,
)

API_VERSION = "passtplan/v1alpha1"
HOST = "host"  # the reserved namespace: the node's own root namespace
VM_PREFIX = "vm/"  # checks run `from: vm/NAME` inside a VM's guest


# Which kinds take which field. The kernel side reads the same names (desired.py).
KIND_FIELDS: dict[str, frozenset[str]] = {
    "veth": frozenset({"peer"}),
    "macvlan": frozenset({"parent", "mode"}),
    "macvtap": frozenset({"parent", "mode"}),
    "bridge": frozenset(),
    "vxlan": frozenset({"id", "remote", "group", "local", "dstport", "dev"}),
    "tap": frozenset({"owner"}),
}
KIND_SPECIFIC = tuple(sorted(set().union(*KIND_FIELDS.values())))
# field -> the kinds it belongs to
FIELD_KINDS: dict[str, tuple[str, ...]] = {
    field: tuple(kind for kind, fields in KIND_FIELDS.items() if field in fields)
    for field in KIND_SPECIFIC
}
# (kind, field) -> the value when omitted
DEFAULTS: dict[tuple[str, str], object] = {
    ("macvlan", "mode"): "vepa",  # the kernel's default for a new macvlan
    ("macvtap", "mode"): "vepa",
    ("vxlan", "dstport"): 4789,  # IANA's port; the kernel's default (8472) predates it
}
# (kind, field) -> the message when a new link of that kind lacks it
REQUIRED: dict[tuple[str, str], str] = {
    ("veth", "peer"): "a veth needs peer: NAMESPACE/IFNAME, the other end of the pair",
    ("macvlan", "parent"): "a macvlan needs parent: NAMESPACE/IFNAME, the device it sits on",
    ("macvtap", "parent"): "a macvtap needs parent: NAMESPACE/IFNAME, the device it sits on",
    ("vxlan", "id"): "a vxlan needs id: its VNI, a number from 0 to 16777215",
}


class Spec(BaseModel):
    """Base of every object in a lab file: immutable, and unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Metadata(Spec):
    name: Name = Field(description="The lab's name; sandbox namespaces are called NAME-NAMESPACE.")
    description: str = ""


class Link(Spec):
    """An interface in a namespace. Without `kind` it names one the lab does not create."""

    kind: LinkKind | None = Field(
        default=None, description="What to create; omit it to configure or remove an existing link."
    )
    state: State = "present"
    up: bool = True
    mtu: Mtu | None = None
    mac: Mac | None = None
    master: IfName | None = Field(default=None, description="A bridge in the same namespace.")
    addresses: tuple[Address, ...] = Field(default=(), description="Addresses in CIDR form.")
    # Fields of one kind or a few. Each is None on the other kinds (and refused there), and is
    # checked, defaulted or required by _fields_of_their_kinds, which needs kind and state
    # declared above them.
    parent: LinkRef | None = Field(
        default=None,
        validate_default=True,
        description="macvlan, macvtap: the lower device, NAMESPACE/IFNAME (created there, then "
        "moved here).",
    )
    mode: MacvlanMode | None = Field(
        default=None, validate_default=True, description="macvlan, macvtap mode; vepa if omitted."
    )
    peer: LinkRef | None = Field(
        default=None,
        validate_default=True,
        description="veth: the other end, NAMESPACE/IFNAME.",
    )
    id: Vni | None = Field(
        default=None, validate_default=True, description="vxlan: the VNI, 0 to 16777215."
    )
    remote: IP | None = Field(
        default=None,
        validate_default=True,
        description="vxlan: the unicast address of the other end (or group, not both).",
    )
    group: IP | None = Field(
        default=None,
        validate_default=True,
        description="vxlan: a multicast group to flood to (needs dev); or remote, not both.",
    )
    local: IP | None = Field(
        default=None, validate_default=True, description="vxlan: the source address."
    )
    dstport: Port | None = Field(
        default=None, validate_default=True, description="vxlan: the UDP port; 4789 if omitted."
    )
    dev: IfName | None = Field(
        default=None,
        validate_default=True,
        description="vxlan: the underlay link, in the same namespace; required with group.",
    )
    owner: Uid | None = Field(
        default=None, validate_default=True, description="tap: the uid allowed to open it."
    )

    @field_validator(*KIND_SPECIFIC)
    @classmethod
    def _fields_of_their_kinds(cls, value: object, info: ValidationInfo) -> object:
        """A field of other kinds is refused; a kind's required field is required."""
        if "kind" not in info.data:
            return value  # kind itself is invalid, and reported
        kind, field = info.data["kind"], str(info.field_name)
        owners = FIELD_KINDS[field]
        if kind not in owners:
            if value is not None:
                raise ValueError(f"{field} is only for {_kinds(owners)}, not {_kind_name(kind)}")
            return value
        if info.data.get("state") == "absent":
            return value
        if value is None and (kind, field) in DEFAULTS:
            return DEFAULTS[kind, field]
        if value is None and (kind, field) in REQUIRED:
            raise ValueError(REQUIRED[kind, field])
        if kind == "vxlan":
            check_vxlan_field(field, value, info.data)
        return value

    @model_validator(mode="after")
    def _absent_takes_nothing_else(self) -> Self:
        if self.state == "absent":
            extra = sorted(self.model_fields_set - {"state", "kind", "parent", "peer", "mode"})
            if extra:
                raise ValueError(
                    f"a link with state: absent is removed, so {', '.join(extra)} cannot apply; "
                    "remove those fields"
                )
        return self


def check_vxlan_field(field: str, value: object, earlier: dict[str, object]) -> None:
    """A vxlan reaches its other ends by remote (one unicast address) or group (multicast).

    Judged field by field, each against those declared before it, so that every message
    points at the field to change.
    """
    remote, group = earlier.get("remote"), earlier.get("group")
    if field in ("remote", "local") and isinstance(value, str):
        ip = parse_ip(value)
        if ip.is_multicast or ip.is_unspecified:
            also = "; for multicast use group" if field == "remote" else ""
            raise ValueError(f"{field} {value} is not a unicast address{also}")
    if field == "group" and isinstance(value, str):
        if remote is not None:
            raise ValueError("a vxlan takes remote (one other end) or group (multicast), not both")
        if not parse_ip(value).is_multicast:
            raise ValueError(f"group {value} is not a multicast address; for one peer use remote")
    if field == "local" and isinstance(value, str):
        other = remote if isinstance(remote, str) else group
        if isinstance(other, str) and parse_ip(other).version != parse_ip(value).version:
            raise ValueError(f"local {value} and {other} are not of the same IP version")
    if field == "dev" and value is None and group is not None:
        raise ValueError(f"a vxlan with group {group} needs dev: the link to join the group on")


def _kinds(kinds: tuple[str, ...]) -> str:
    return "kind: " + " or ".join(kinds)


def _kind_name(kind: str | None) -> str:
    return f"kind: {kind}" if kind else "a link without kind"


class Route(Spec):
    to: RouteDestination = Field(description="'default' or a network in CIDR form.")
    via: Gateway | None = None
    dev: IfName | None = None
    metric: int | None = Field(default=None, ge=0, le=2**32 - 1)
    table: int | None = Field(default=None, ge=1, le=2**32 - 1, description="254 is main.")
    onlink: bool = Field(
        default=False, description="The gateway is on the link even if no address covers it."
    )
    protocol: RouteProtocol | None = Field(
        default=None,
        description="Who added the route, as `ip route` writes it (static, dhcp, ra, 0-255); "
        "left out, the route is added as boot and any protocol found on it is fine.",
    )
    state: State = "present"

    @field_validator("via")
    @classmethod
    def _via_same_family(cls, via: str | None, info: ValidationInfo) -> str | None:
        to = info.data.get("to")
        if via is not None and to not in (None, "default") and _family(via) != _family(to):
            raise ValueError(f"gateway {via} is not of the same IP version as {to}")
        return via

    @model_validator(mode="after")
    def _needs_via_or_dev(self) -> Self:
        if self.via is None and self.dev is None and self.state == "present":
            raise ValueError("a route needs via (a gateway), dev (an interface), or both")
        return self

    @property
    def family(self) -> int:
        if self.to != "default":
            return _family(self.to)
        return _family(self.via) if self.via else 4


def _family(value: str) -> int:
    return 6 if ":" in value else 4


class Resolve(Spec):
    """How to find a namespace the lab does not create. Exactly one field."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    vm: Name | None = Field(default=None, description="A VM of this lab: its virt-launcher pod.")
    pod: PodRef | None = Field(default=None, description="NAMESPACE/NAME of a pod.")
    pid: PositiveInt | None = Field(default=None, description="A process in the namespace.")
    path: AbsolutePath | None = Field(
        default=None, description="A namespace file, e.g. /var/run/netns/NAME."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        chosen = sorted(self.model_fields_set)
        if len(chosen) != 1:
            have = ", ".join(chosen) if chosen else "none"
            raise ValueError(f"resolve takes exactly one of vm, pod, pid, path (got {have})")
        return self


class Namespace(Spec):
    resolve: Resolve | None = Field(
        default=None, description="Find this namespace instead of creating it."
    )
    links: dict[IfName, Link] = Field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    sysctls: dict[SysctlName, SysctlValue] = Field(default_factory=dict)


class Check(Spec):
    """A connectivity check run after apply, from a namespace or from a VM's guest (vm/NAME)."""

    source: str = Field(alias="from", description="A namespace, or vm/NAME for a VM's guest.")
    ping: IP | None = None
    tcp: Endpoint | None = None
    timeout: float = Field(default=5.0, gt=0, le=600, description="Seconds before it fails.")
    expect: Literal["success", "failure"] = "success"

    @model_validator(mode="after")
    def _one_probe(self) -> Self:
        if (self.ping is None) == (self.tcp is None):
            raise ValueError("a check takes exactly one of ping: ADDRESS or tcp: HOST:PORT")
        return self

    @property
    def target(self) -> str:
        return self.ping or self.tcp or ""


class Vm(Spec):
    namespace: Name = Field(default="default", description="The Kubernetes namespace.")
    manifest: str = Field(
        min_length=1, description="A KubeVirt VirtualMachine file, relative to the lab file."
    )


class SandboxVm(Spec):
    """How the sandbox's virt-launcher stand-in sets up a VM's pod."""

    address: Address | None = Field(
        default=None,
        description="The pod's CNI address (Calico style, /32); default 10.233.70.4/32, then .5...",
    )
    gateway: IP = Field(default="169.254.1.1", description="The pod's default gateway.")


class Sandbox(Spec):
    """The surroundings of the lab, built only with --sandbox."""

    namespaces: dict[Name, Namespace] = Field(default_factory=dict)
    vms: dict[Name, SandboxVm] = Field(default_factory=dict)
    kubevirt: str = Field(
        default="v1.0",
        pattern=r"^v1\.[0-9]+$",
        description=(
            "The KubeVirt release whose virt-launcher the sandbox plays (v1.0 as in the seed): "
            "v1.0 starts passt as virt-launcher did (--runas 107 -e -t -u, QEMU through qrap); "
            "from v1.1 as libvirt does (--one-off --socket --pid --interface eth0 --log-file "
            "--tcp-ports --udp-ports)."
        ),
    )
    guest: Literal["qemu", "stand-in"] = Field(
        default="qemu",
        description=(
            "What runs behind passt for each VM: qemu, a Debian kernel with a busybox userland "
            "on passt's socket as KubeVirt runs it (DHCP client, sshd, ping; some 250 MB and a "
            "few seconds per VM), or stand-in, a Python process that takes the DHCP lease and "
            "greets on the VM's ports (some 20 MB, a fraction of a second: for large labs and "
            "fast tests)."
        ),
    )


class Settings(Spec):
    """How passtplan runs this lab."""

    rollback: Literal["never", "on-failure"] = Field(
        default="never",
        description="on-failure: when an action or a check fails, apply undoes what it did "
        "(as apply --rollback-on-failure).",
    )


class Lab(Spec):
    api_version: Literal["passtplan/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Lab"]
    metadata: Metadata
    vms: dict[Name, Vm] = Field(default_factory=dict)
    namespaces: dict[Name, Namespace] = Field(default_factory=dict)
    checks: tuple[Check, ...] = ()
    sandbox: Sandbox = Field(default_factory=Sandbox)
    settings: Settings = Field(default_factory=Settings)
