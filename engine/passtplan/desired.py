"""What a lab asks for, as resources: the pure step from the plan language to the engine's terms.

Here the two modes differ. On a node, `host` is the machine's root namespace; with --sandbox every
namespace N is the named netns LAB.N, `host` included, and the sandbox section is added.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cached_property
from typing import Literal

import msgspec

from passtplan import resources as res
from passtplan.kubevirt import guest_cpus, guest_memory_mib
from passtplan.lang import models as spec
from passtplan.lang.manifest import HOSTNAME_PATH, Port, VmManifest, cloud_init_volume, get
from passtplan.lang.semantics import split_ref
from passtplan.subnets import SubnetIndex


class Desired(msgspec.Struct, dict=True):
    lab: str
    sandbox: bool
    namespaces: dict[str, res.Namespace] = msgspec.field(default_factory=dict)
    links: dict[str, res.Link] = msgspec.field(default_factory=dict)  # by address
    absent_links: set[res.Ref] = msgspec.field(default_factory=set)
    addresses: dict[str, res.Address] = msgspec.field(default_factory=dict)
    routes: dict[str, res.Route] = msgspec.field(default_factory=dict)
    absent_routes: dict[str, res.Route] = msgspec.field(default_factory=dict)
    sysctls: dict[str, res.Sysctl] = msgspec.field(default_factory=dict)
    vms: dict[str, res.Vm | res.ClusterVm] = msgspec.field(default_factory=dict)

    def route_dev(self, route: res.Route) -> str | None:
        """The link a route leaves through: its dev, or the link whose address's subnet holds
        its gateway."""
        if route.dev is not None or route.via is None:
            return route.dev
        found = self._route_devs.get(route)
        if found is None:
            holding = self._address_subnets.holding(route.namespace, route.via)
            found = self._route_devs[route] = holding[0] if holding else ""
        return found or None

    @cached_property
    def _route_devs(self) -> dict[res.Route, str]:
        """route_dev's answers ("" for none). A memo, not a field: kept out of the record's
        constructor, repr and equality."""
        return {}

    @cached_property
    def _address_subnets(self) -> SubnetIndex[str]:
        """Links by the subnets of their addresses, per namespace (the lab is complete by the
        time anything asks)."""
        index: SubnetIndex[str] = SubnetIndex()
        for address in self.addresses.values():
            index.add(address.namespace, address.cidr, address.link)
        return index

    @property
    def owner(self) -> str:
        """The mark on the links this lab makes; the sandbox and the node are different labs."""
        return res.OWNER_PREFIX + lab_id(self.lab, sandbox=self.sandbox)


def lab_id(lab: str, *, sandbox: bool) -> str:
    """The name the lab goes by on this machine; its sandbox is another lab (`LAB@sandbox`)."""
    return f"{lab}@sandbox" if sandbox else lab


NETNS_SEPARATOR = "."  # never in a lab's or a namespace's name (DNS labels): no two labs collide


def netns_name(lab: str, namespace: str) -> str:
    """The kernel's name for a lab namespace: `LAB.NAMESPACE`, as `ip netns` lists it. Lab and
    namespace names are DNS labels, which hold no dot, so no other lab and namespace make the
    same name (with a dash, lab `a` namespace `b-c` and lab `a-b` namespace `c` would)."""
    return f"{lab}{NETNS_SEPARATOR}{namespace}"


DEFAULT_POD_NETWORK = "10.233.70.{}/32"  # the seed's Calico pod address is the first VM's
FIRST_POD_HOST = 4
SOCKETS_PER_PORT = 4  # passt binds TCP and UDP, IPv4 and IPv6, per forwarded port
FILES_HEADROOM = 512  # what passt needs besides its port sockets


def desired_state(
    lab: spec.Lab,
    *,
    sandbox: bool,
    manifests: Mapping[str, VmManifest] | None = None,
    open_files: int = 1024,
    links_only: bool = False,
) -> Desired:
    """`open_files` is the hard limit passt will run with, for VMs that forward every port.
    With `links_only`, addresses, routes and sysctls are left out: nothing waits for them, so
    the lab's cycle check needs only the rest."""
    desired = Desired(lab.metadata.name, sandbox)
    sections = [lab.namespaces]
    if sandbox:
        sections.append(lab.sandbox.namespaces)
    for section in sections:
        for name, namespace in section.items():
            desired.namespaces.setdefault(name, _namespace(desired, name, namespace))
    for section in sections:
        for name, namespace in section.items():
            _add_contents(desired, name, namespace, links_only=links_only)
    _add_implied_veth_ends(desired)
    for index, (name, manifest) in enumerate(sorted((manifests or {}).items())):
        if sandbox:
            desired.vms[name] = sandbox_vm(lab, name, manifest, index, open_files)
        else:
            desired.vms[name] = res.ClusterVm(
                name, manifest.namespace, manifest.passt_form, owner=desired.lab
            )
    return desired


def sandbox_vm(
    lab: spec.Lab, name: str, manifest: VmManifest, index: int, open_files: int
) -> res.Vm:
    """A VM as the sandbox's virt-launcher stand-in runs it."""
    launcher = next(
        (
            ns
            for ns, spec_ns in lab.namespaces.items()
            if spec_ns.resolve and spec_ns.resolve.vm == name
        ),
        f"launcher-{name}",
    )
    settings = lab.sandbox.vms.get(name) or spec.SandboxVm()
    standin = lab.sandbox.guest == "stand-in"
    address = settings.address or DEFAULT_POD_NETWORK.format(FIRST_POD_HOST + index)
    tcp, udp, forwarding = port_specs(manifest.ports, open_files)
    node = spec.HOST if spec.HOST in lab.namespaces or spec.HOST in lab.sandbox.namespaces else None
    return res.Vm(
        name=name,
        launcher=netns_name(lab.metadata.name, launcher),
        guest=netns_name(lab.metadata.name, f"vm.{name}") if standin else None,
        pod_address=address,
        gateway=settings.gateway,
        tcp_ports=tcp,
        udp_ports=udp,
        forwarding=forwarding,
        node=node,
        kubevirt=lab.sandbox.kubevirt,
        guest_kind=lab.sandbox.guest,
        memory_mib=guest_memory_mib(manifest.body),
        cpus=guest_cpus(manifest.body),
        guest_config=None if standin else guest_config_digest(manifest),
    )


def guest_config_digest(manifest: VmManifest) -> str:
    """What a QEMU guest is made of beyond its VM's resource: the manifest's cloud-init source
    and host name, which its overlay is written from (the stand-in applies neither)."""
    made_of = {
        "cloud-init": cloud_init_volume(manifest),
        "hostname": get(manifest.body, HOSTNAME_PATH),
    }
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:12]


def port_specs(ports: tuple[Port, ...] | None, open_files: int) -> tuple[str, str, str]:
    """passt's -t and -u specs for the ports of a VM's passt interface, and what they mean.

    An interface without `ports` forwards every port; passt needs a socket per port and family,
    and `-t all -u all` needs more than the open-files limit allows here, so the range is cut
    to what the limit allows, and the plan says so.
    """
    if ports is None:
        last = max(1, min(65535, (open_files - FILES_HEADROOM) // SOCKETS_PER_PORT))
        note = (
            f"all ports (no ports in the manifest); the open-files limit ({open_files}) allows "
            f"TCP and UDP 1-{last}"
        )
        return f"1-{last}", f"1-{last}", note
    tcp = ",".join(str(p.port) for p in ports if p.protocol == "TCP") or "none"
    udp = ",".join(str(p.port) for p in ports if p.protocol == "UDP") or "none"
    return tcp, udp, f"the manifest's ports: TCP {tcp}, UDP {udp}"


def _namespace(desired: Desired, name: str, namespace: spec.Namespace) -> res.Namespace:
    if namespace.resolve is not None:
        way, value = next(iter(namespace.resolve.model_dump(exclude_none=True).items()))
        return res.Namespace(
            name, netns_name(desired.lab, name), res.NamespaceRole.RESOLVED, (way, str(value))
        )
    if name == spec.HOST and not desired.sandbox:
        return res.Namespace(name, None, res.NamespaceRole.HOST)
    return res.Namespace(name, netns_name(desired.lab, name), res.NamespaceRole.CREATED)


def _add_contents(
    desired: Desired, ns: str, namespace: spec.Namespace, *, links_only: bool
) -> None:
    for name, link in namespace.links.items():
        if link.state == "absent":
            desired.absent_links.add((ns, name))
            continue
        resource = desired_link(desired.owner, ns, name, link)
        desired.links[resource.address] = resource
        if links_only:
            continue
        for cidr in link.addresses:
            address = res.Address(ns, name, cidr)
            desired.addresses[address.address] = address
    if links_only:
        return
    for route in namespace.routes:
        wanted = desired_route(ns, route)
        target = desired.routes if route.state == "present" else desired.absent_routes
        target[wanted.address] = wanted
    for key, value in namespace.sysctls.items():
        sysctl = res.Sysctl(ns, key, value)
        desired.sysctls[sysctl.address] = sysctl


def desired_link(owner: str, ns: str, name: str, link: spec.Link) -> res.Link:
    created = link.kind is not None
    return res.Link(
        namespace=ns,
        name=name,
        kind=link.kind,
        # A link the lab creates is up unless it says otherwise; one it only configures keeps
        # its state unless `up` is written.
        up=link.up if created or "up" in link.model_fields_set else None,
        mtu=link.mtu,
        mac=link.mac,
        master=link.master,
        parent=split_ref(link.parent, ns) if link.parent else None,
        mode=link.mode,
        peer=split_ref(link.peer, ns) if link.peer else None,
        vni=link.id,
        remote=link.remote,
        group=link.group,
        local=link.local,
        dstport=link.dstport,
        dev=link.dev,
        tap_owner=link.owner,
        owner=owner if created else None,
    )


def desired_route(ns: str, route: spec.Route) -> res.Route:
    family: Literal[4, 6] = 6 if route.family == 6 else 4
    # The language wrote `to` canonically; `::/0` and `0.0.0.0/0` are `default`, as observation
    # writes them.
    to = "default" if route.to.endswith("/0") else route.to
    return res.Route(
        namespace=ns,
        to=to,
        family=family,
        via=route.via,
        dev=route.dev,
        metric=route.metric if route.metric is not None else res.DEFAULT_METRIC[family],
        table=route.table or res.MAIN_TABLE,
        onlink=route.onlink,
        protocol=route.protocol,
    )


def _add_implied_veth_ends(desired: Desired) -> None:
    """A veth whose other end is not declared still has one: up, with default settings."""
    for link in list(desired.links.values()):
        if link.kind != "veth" or link.peer is None:
            continue
        ns, name = link.peer
        # Default settings include no master: a port dropped from the lab leaves its bridge.
        other = res.Link(
            ns,
            name,
            "veth",
            up=True,
            master="",
            peer=(link.namespace, link.name),
            owner=desired.owner,
        )
        desired.links.setdefault(other.address, other)


def destroy_target(desired: Desired) -> Desired:
    """What is left wanted when destroying: nothing but the namespaces the lab never creates.

    In the sandbox a namespace found through a VM is that VM's pod, which goes with the VM.
    """
    kept = {
        name: ns
        for name, ns in desired.namespaces.items()
        if ns.role is not res.NamespaceRole.CREATED
        and not (desired.sandbox and ns.resolve is not None and ns.resolve[0] == "vm")
    }
    return Desired(desired.lab, desired.sandbox, namespaces=kept)
