"""The v1alpha1 plan language as pydantic models.

These models judge one field or one object at a time; rules that span the lab (references, cycles,
gateways reachable through declared addresses) live in `semantics`, which reads validated models.
"""

from __future__ import annotations

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
    RouteDestination,
    State,
    SysctlName,
    SysctlValue,
)

API_VERSION = "passtplan/v1alpha1"
HOST = "host"  # the reserved namespace: the node's own root namespace
VM_PREFIX = "vm/"  # checks run `from: vm/NAME` inside a VM's guest


class Spec(BaseModel):
    """Base of every object in a lab file: immutable, and unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
    parent: LinkRef | None = Field(
        default=None,
        validate_default=True,
        description="macvlan: the lower device, NAMESPACE/IFNAME (created there, then moved here).",
    )
    mode: MacvlanMode | None = Field(
        default=None, validate_default=True, description="macvlan mode; vepa when omitted."
    )
    peer: LinkRef | None = Field(
        default=None,
        validate_default=True,
        description="veth: the other end, NAMESPACE/IFNAME.",
    )

    @field_validator("parent", "mode", "peer")
    @classmethod
    def _fields_of_one_kind(cls, value: str | None, info: ValidationInfo) -> str | None:
        """parent and mode belong to a macvlan, peer to a veth; a veth or macvlan needs its own."""
        if "kind" not in info.data:
            return value  # kind itself is invalid, and reported
        kind, field = info.data["kind"], str(info.field_name)
        owner, needed = KIND_FIELDS[field]
        if kind != owner and value is not None:
            raise ValueError(f"{field} is only for kind: {owner}, not {_kind_name(kind)}")
        if kind == owner and value is None and info.data.get("state") != "absent":
            if needed is None:
                return "vepa"  # the kernel's default mode for a new macvlan
            raise ValueError(needed)
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


# field -> (the kind it belongs to, the message when that kind lacks it; None: has a default)
KIND_FIELDS: dict[str, tuple[str, str | None]] = {
    "parent": ("macvlan", "a macvlan needs parent: NAMESPACE/IFNAME, the device it sits on"),
    "mode": ("macvlan", None),
    "peer": ("veth", "a veth needs peer: NAMESPACE/IFNAME, the other end of the pair"),
}


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


class Lab(Spec):
    api_version: Literal["passtplan/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Lab"]
    metadata: Metadata
    vms: dict[Name, Vm] = Field(default_factory=dict)
    namespaces: dict[Name, Namespace] = Field(default_factory=dict)
    checks: tuple[Check, ...] = ()
    sandbox: Sandbox = Field(default_factory=Sandbox)
