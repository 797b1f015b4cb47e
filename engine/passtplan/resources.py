"""The resource types that both the desired state (from a lab) and the observed state (from the
kernel) are written in, and their addresses (`link.pod/macvlan1`), which are also graph node ids.

In a desired resource, an attribute left None is not managed: whatever the kernel has is fine.
In an observed resource every attribute is what the kernel reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Literal

import msgspec

from passtplan.errors import PasstplanError

OWNER_PREFIX = "passtplan:"  # link alias (IFLA_IFALIAS) marking the lab that made a link
DRIVER_PREFIX = "passtplan-vm:"  # the alias of the sandbox VM driver's own links
MARKS = (OWNER_PREFIX, DRIVER_PREFIX)  # a link carrying one of these is passtplan's
MAIN_TABLE = 254
DEFAULT_METRIC = {4: 0, 6: 1024}  # what the kernel gives a route added without a metric
DEFAULT_ROUTE_PROTOCOL = "boot"  # what `ip route add` (and passtplan) mark a route with

Ref = tuple[str, str]  # (lab namespace, interface name)


class NamespaceRole(StrEnum):
    CREATED = "created"  # a named netns the lab creates and may delete
    HOST = "host"  # the root namespace of this machine (or LAB.host in the sandbox)
    RESOLVED = "resolved"  # found through `resolve:`; never created or deleted


class Namespace(msgspec.Struct, frozen=True):
    name: str  # as the lab calls it
    netns: str | None  # the kernel's named netns; None for the machine's root namespace
    role: NamespaceRole
    resolve: tuple[str, str] | None = None  # ("pid", "123"), ("path", "/run/netns/x"), ("vm", ..)

    @property
    def address(self) -> str:
        return f"netns.{self.name}"


class Link(msgspec.Struct, frozen=True):
    namespace: str
    name: str
    kind: str | None = None  # a kind of LINK_KINDS, another kernel kind, or None (a device)
    up: bool | None = None
    mtu: int | None = None
    mac: str | None = None
    master: str | None = None  # a link in the same namespace; "" means no master
    parent: Ref | None = None  # macvlan, macvtap
    mode: str | None = None  # macvlan, macvtap
    peer: Ref | None = None  # veth
    vni: int | None = None  # vxlan
    remote: str | None = None  # vxlan: the unicast peer
    group: str | None = None  # vxlan: the multicast group
    local: str | None = None  # vxlan: the source address
    dstport: int | None = None  # vxlan: the UDP port
    dev: str | None = None  # vxlan: the underlay link, in the same namespace
    tap_owner: int | None = None  # tap: the uid that may open it
    owner: str | None = None  # the lab whose mark the link carries
    ifindex: int = 0  # observed only

    @property
    def address(self) -> str:
        return f"link.{self.namespace}/{self.name}"


def _to_or_from_passthru(want: Link, have: Link) -> bool:
    """macvlan, macvtap: the kernel switches modes in place, but not to or from passthru."""
    return "passthru" in (want.mode, have.mode)


def _vxlan_family(link: Link) -> int | None:
    """The address family of a vxlan (all its addresses share one), None if none is written."""
    address = link.remote or link.group or link.local
    return None if address is None else 6 if ":" in address else 4


def _other_family(want: Link, have: Link) -> bool:
    """vxlan: the kernel changes remote, group and local in place within the link's family
    ("New group address family does not match old group"); a link with none is IPv4."""
    return _vxlan_family(want) not in (None, _vxlan_family(have) or 4)


class LinkKind(msgspec.Struct, frozen=True):
    """What the engine knows of a kind of link it creates: which of its own fields force a
    replace when they differ, and which the kernel changes in place. Every kind also has the
    common fields, changed in place: COMMON_UPDATE. `refused` names in-place fields whose
    change the kernel still refuses in some cases, and tells those cases (they replace)."""

    replace: tuple[str, ...] = ()
    update: tuple[str, ...] = ()
    refused: tuple[tuple[str, Callable[[Link, Link], bool]], ...] = ()


COMMON_UPDATE = ("up", "mtu", "mac", "master")
# As found on Linux 6.18 (tests/integration/test_link_kinds.py): a vxlan's VNI and port are
# fixed ("Cannot change VNI", "Cannot change port"), its remote or group, local and dev are not;
# a tap's owner is set again through its character device (TUNSETOWNER).
LINK_KINDS: dict[str, LinkKind] = {
    "veth": LinkKind(replace=("peer",)),
    "bridge": LinkKind(),
    "macvlan": LinkKind(
        replace=("parent",), update=("mode",), refused=(("mode", _to_or_from_passthru),)
    ),
    "macvtap": LinkKind(
        replace=("parent",), update=("mode",), refused=(("mode", _to_or_from_passthru),)
    ),
    "vxlan": LinkKind(
        replace=("vni", "dstport"),
        update=("remote", "group", "local", "dev"),
        refused=tuple((name, _other_family) for name in ("remote", "group", "local")),
    ),
    "tap": LinkKind(update=("tap_owner",)),
}


def replace_fields(want: Link, have: Link) -> tuple[str, ...]:
    """The declared fields that differ and that the kernel cannot change on a live link."""
    kind = LINK_KINDS.get(want.kind or "")
    names = ("kind", *(kind.replace if kind else ()))
    found = tuple(n for n in names if _declared_and_differs(want, have, n))
    refused = tuple(
        n
        for n, refuses in (kind.refused if kind else ())
        if _declared_and_differs(want, have, n) and refuses(want, have)
    )
    return found + refused


def update_fields(want: Link, have: Link) -> tuple[str, ...]:
    """The declared fields that differ and that the kernel changes in place."""
    kind = LINK_KINDS.get(want.kind or "") if want.kind == have.kind else None
    names = (*COMMON_UPDATE, *(kind.update if kind else ()))
    return tuple(n for n in names if _declared_and_differs(want, have, n))


def _declared_and_differs(want: object, have: object, name: str) -> bool:
    value = getattr(want, name)
    return value is not None and value != getattr(have, name)


class Address(msgspec.Struct, frozen=True):
    namespace: str
    link: str
    cidr: str

    @property
    def address(self) -> str:
        return f"address.{self.namespace}/{self.link}[{self.cidr}]"


class Route(msgspec.Struct, frozen=True):
    namespace: str
    to: str  # "default" or a network; with family it names the destination
    family: Literal[4, 6]
    via: str | None = None
    dev: str | None = None
    metric: int = 0
    table: int = MAIN_TABLE
    onlink: bool = False
    # who added it, as `ip route` names it (boot, static, dhcp, or a number); desired: None
    # when the lab leaves it out (added as DEFAULT_ROUTE_PROTOCOL, anything found is fine)
    protocol: str | None = None
    # how far it reaches, as `ip route` names it (global, site, link, host, or a number);
    # desired: None, sent as `ip route` works it out (`natural_scope`)
    scope: str | None = None

    @property
    def natural_scope(self) -> str:
        """The scope `ip route` gives a route when none is said: global through a gateway,
        link without one."""
        return "global" if self.via else "link"

    @property
    def key(self) -> tuple[str, int, int, int]:
        """What makes two routes the same route to the kernel (destination, table, metric)."""
        return (self.to, self.family, self.table, self.metric)

    @property
    def address(self) -> str:
        dest = self.to if self.to != "default" or self.family == 4 else "default6"
        extra = "" if self.table == MAIN_TABLE else f" table={self.table}"
        extra += "" if self.metric == DEFAULT_METRIC[self.family] else f" metric={self.metric}"
        return f"route.{self.namespace}[{dest}{extra}]"


class Sysctl(msgspec.Struct, frozen=True):
    namespace: str
    name: str
    value: str

    @property
    def address(self) -> str:
        return f"sysctl.{self.namespace}[{self.name}]"


class Vm(msgspec.Struct, frozen=True):
    """A VM of the sandbox: the launcher pod's namespace (with a CNI-like eth0), passt in it,
    and the guest attached to passt's socket (QEMU, or the stand-in in a namespace of its own,
    `guest`). Observed, `passt` and `guest_state` say what runs."""

    name: str
    launcher: str  # netns of the virt-launcher pod
    guest: str | None  # netns of the stand-in guest (QEMU's network is inside QEMU)
    pod_address: str  # the CNI's address for the pod, CIDR (/32, Calico style)
    gateway: str  # the pod's default gateway (Calico: 169.254.1.1)
    tcp_ports: str  # passt's -t spec
    udp_ports: str  # passt's -u spec
    forwarding: str  # what the ports mean, for the plan
    passt: str = "running"
    guest_state: str = "running"
    node: str | None = None  # the lab namespace holding the CNI's host end, if any
    kubevirt: str = "v1.0"  # whose virt-launcher starts passt (sandbox.kubevirt)
    guest_kind: str = "qemu"  # what runs behind passt: qemu or stand-in (sandbox.guest)
    memory_mib: int = 256  # the manifest's memory for the guest (QEMU caps it for the machine)
    cpus: int = 1  # the manifest's vCPUs (sockets x cores x threads)
    # A QEMU guest is made from the manifest's cloud-init source and host name (its overlay):
    # their digest, so that a change to them makes a new guest, as a changed VMI would.
    guest_config: str | None = None

    @property
    def address(self) -> str:
        return f"vm.{self.name}"


class ClusterVm(msgspec.Struct, frozen=True):
    """A KubeVirt VirtualMachine on a real cluster. Observed, phase/node/ip come from its VMI,
    and drift lists the fields the manifest sets that the live object does not match."""

    name: str
    kube_namespace: str
    passt_form: str
    phase: str = "Running"
    node: str | None = None
    ip: str | None = None
    drift: tuple[str, ...] = ()
    owner: str | None = None  # the lab label on the live VM

    @property
    def address(self) -> str:
        return f"vm.{self.name}"


Resource = Namespace | Link | Address | Route | Sysctl | Vm | ClusterVm


def parse_sysctl_address(address: str) -> tuple[str, str]:
    """`sysctl.gw[net.ipv4.ip_forward]` -> ("gw", "net.ipv4.ip_forward")."""
    namespace, _, rest = address.removeprefix("sysctl.").partition("[")
    return namespace, rest.removesuffix("]")


def route_from_record(address: str, value: str) -> Route:
    """A route as the lab's record keeps it (its attributes, in JSON)."""
    try:
        data = json.loads(value)
        route = Route(**data)
    except (ValueError, TypeError):
        raise PasstplanError(
            f"{address}: the lab's record of this route before the lab is malformed; remove "
            "the lab's owned.json, then restore the route by hand"
        ) from None
    if route.address != address:
        raise PasstplanError(
            f"{address}: the lab's record holds another route ({route.address}); remove the "
            "lab's owned.json, then restore the route by hand"
        )
    return route


def link_from_record(address: str, value: str) -> Link:
    """A link the lab did not make, as the lab's record keeps it from before the lab changed it
    (its attributes, in JSON)."""
    try:
        link = from_attributes(address, json.loads(value))
    except (ValueError, TypeError, KeyError):
        link = None
    if not isinstance(link, Link) or link.address != address:
        raise PasstplanError(
            f"{address}: the lab's record of this link before the lab is malformed; remove the "
            "lab's owned.json, then set the link's attributes back by hand"
        )
    return link


def attributes(resource: Resource | None) -> dict[str, object] | None:
    """The attributes a plan shows and compares: observed-only bookkeeping left out."""
    if resource is None:
        return None
    data = msgspec.structs.asdict(resource)
    data.pop("ifindex", None)
    for key in ("parent", "peer", "resolve"):
        if isinstance(data.get(key), tuple):
            data[key] = "/".join(data[key]) if key != "resolve" else ":".join(data[key])
    return data


class NamespaceState(msgspec.Struct):
    """What one namespace holds, as observed."""

    namespace: Namespace
    links: dict[str, Link] = msgspec.field(default_factory=dict)
    addresses: list[Address] = msgspec.field(default_factory=list)
    routes: list[Route] = msgspec.field(default_factory=list)
    sysctls: dict[str, str] = msgspec.field(default_factory=dict)


class State(msgspec.Struct):
    """Observed state of the namespaces a lab names: None where a namespace does not exist (yet)
    or cannot be found before apply."""

    namespaces: dict[str, NamespaceState | None] = msgspec.field(default_factory=dict)
    vms: dict[str, Vm | ClusterVm | None] = msgspec.field(default_factory=dict)
    owned: Ownership = msgspec.field(default_factory=lambda: Ownership())  # noqa: PLW0108 (defined below)


class Ownership(msgspec.Struct):
    """What the lab made beyond its marked links, as recorded under /run/passtplan."""

    namespaces: set[str] = msgspec.field(
        default_factory=set
    )  # lab namespace names whose netns it made
    addresses: set[str] = msgspec.field(default_factory=set)  # resource addresses
    routes: set[str] = msgspec.field(default_factory=set)
    sysctls: dict[str, str] = msgspec.field(default_factory=dict)  # sysctl address -> value before
    vms: set[str] = msgspec.field(default_factory=set)  # VM names the sandbox runs for the lab
    links: set[str] = msgspec.field(default_factory=set)  # links being made: marked once configured
    # address -> JSON of what a thing the lab did not make was before the lab changed or
    # removed it (a route); given back when the lab no longer declares it
    foreign: dict[str, str] = msgspec.field(default_factory=dict)


def from_attributes(address: str, data: dict[str, Any]) -> Resource:
    """The resource whose `attributes` are `data` (read back from the journal)."""
    kind = address.split(".", 1)[0]
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    for key in ("parent", "peer"):
        if isinstance(values.get(key), str):
            namespace, _, name = values[key].rpartition("/")
            values[key] = (namespace, name)
    if kind == "netns":
        way = values.get("resolve")
        values["resolve"] = tuple(way.split(":", 1)) if isinstance(way, str) else None
        values["role"] = NamespaceRole(values["role"])
        return Namespace(**values)
    if kind == "vm":
        return Vm(**values) if "launcher" in values else ClusterVm(**values)
    types: dict[str, type[Link | Address | Route | Sysctl]] = {
        "link": Link,
        "address": Address,
        "route": Route,
        "sysctl": Sysctl,
    }
    return types[kind](**values)
