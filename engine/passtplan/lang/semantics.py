"""Rules that span a lab: references, veth ends, gateways and duplicates (dependency cycles are
judged with the engine's own dependency rules, in passtplan.cycles).

A pure pass over a validated Lab. The lab is judged twice: as it runs on a real node (the
`namespaces:` section; `host` and resolved namespaces already hold links the lab does not declare)
and as it runs with --sandbox (the `sandbox:` section merged in; only resolved namespaces hold
links the lab does not declare). A finding is reported once even when both views see it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import get_args

import msgspec

from passtplan.errors import BugError
from passtplan.lang.models import HOST, VM_PREFIX, Lab, Link, Namespace, Route
from passtplan.lang.types import Interface, IPAddress, LinkKind, parse_interface, parse_ip
from passtplan.lang.yamlsource import DataPath, format_path

LOOPBACK = "lo"
ALL_KINDS = ", ".join(get_args(LinkKind)[:-1]) + f" or {get_args(LinkKind)[-1]}"
LOWER_DEVICE_KINDS = ("macvlan", "macvtap")  # sit on a parent, and cannot be one


class Finding(msgspec.Struct, frozen=True):
    path: DataPath
    message: str
    at_key: bool = False


class DeclaredLink(msgspec.Struct, frozen=True):
    namespace: str
    name: str
    link: Link
    path: DataPath

    @property
    def address(self) -> str:
        return link_address(self.namespace, self.name)


class DeclaredNamespace(msgspec.Struct):
    name: str
    external: bool  # holds links the lab does not declare (the node's own, a pod's)
    links: dict[str, DeclaredLink] = msgspec.field(default_factory=dict)
    specs: list[tuple[Namespace, DataPath]] = msgspec.field(default_factory=list)


IpKey = tuple[int, int]  # (IP version, the address as an integer)


def ip_key(ip: IPAddress | Interface) -> IpKey:
    """An address as a set or dict key: hashing ipaddress objects costs more than the rest."""
    return ip.version, int(ip)


class Subnets(msgspec.Struct):
    """The addresses of some links, indexed so that judging a gateway scans none of them."""

    addresses: list[str] = msgspec.field(default_factory=list)
    ips: set[IpKey] = msgspec.field(default_factory=set)
    # (IP version, prefix length) -> the networks of that length, as integers
    networks: dict[tuple[int, int], set[int]] = msgspec.field(default_factory=dict)

    def add(self, address: str, iface: Interface) -> None:
        self.addresses.append(address)
        self.ips.add(ip_key(iface))
        key = (iface.version, iface.network.prefixlen)
        self.networks.setdefault(key, set()).add(int(iface.network.network_address))

    def covers(self, ip: IPAddress) -> bool:
        """Is `ip` in the subnet of one of the addresses? One probe per prefix length in use."""
        value, bits = int(ip), ip.max_prefixlen
        return any(
            (value >> (bits - prefixlen)) << (bits - prefixlen) in networks
            for (version, prefixlen), networks in self.networks.items()
            if version == ip.version
        )


class AddressBook:
    """Each link's and namespace's subnets indexed once: every route of a namespace asks."""

    def __init__(self) -> None:
        # keyed by id(namespace); the namespace is kept with its entry so its id stays unique
        self._subnets: dict[tuple[int, str | None], tuple[DeclaredNamespace, Subnets]] = {}

    def parse(self, address: str) -> Interface:
        return parse_interface(address)

    def subnets(self, ns: DeclaredNamespace, dev: DeclaredLink | None) -> Subnets:
        """The addresses on `dev`, or on every link of `ns` when dev is None."""
        key = (id(ns), dev.name if dev is not None else None)
        if key not in self._subnets:
            subnets = Subnets()
            for link in [dev] if dev is not None else ns.links.values():
                if link.link.state == "present":
                    for address in link.link.addresses:
                        subnets.add(address, self.parse(address))
            self._subnets[key] = (ns, subnets)
        return self._subnets[key][1]


def link_address(namespace: str, name: str) -> str:
    """The address of a link in plans, graphs and messages: `link.pod/macvlan1`."""
    return f"link.{namespace}/{name}"


def split_ref(ref: str, here: str) -> tuple[str, str]:
    """`NS/IF` -> (NS, IF); a bare `IF` is in the namespace it is written in."""
    namespace, _, name = ref.rpartition("/")
    return namespace or here, name


def check_lab(lab: Lab) -> list[Finding]:
    findings: dict[DataPath, Finding] = {}
    merged, merge_findings = merge_sections(lab)
    book = AddressBook()
    for finding in [
        *reserved_names(lab),
        *merge_findings,
        *resolve_targets(lab),
        *sandbox_vms(lab),
        *view_findings(real_view(lab), "on a real node", book),
        *(view_findings(merged, "with --sandbox", book) if _views_differ(lab) else ()),
        *check_sources(lab),
    ]:
        findings.setdefault(finding.path, finding)
    return list(findings.values())


def _views_differ(lab: Lab) -> bool:
    """Without a sandbox section or a host namespace both views hold the same links, and
    judging a big lab twice for nothing costs a noticeable part of `validate`."""
    return bool(lab.sandbox.namespaces) or HOST in lab.namespaces


def real_view(lab: Lab) -> dict[str, DeclaredNamespace]:
    view: dict[str, DeclaredNamespace] = {}
    for name, ns in lab.namespaces.items():
        external = name == HOST or ns.resolve is not None
        _add_namespace(view, name, ns, ("namespaces", name), external=external)
    return view


def merge_sections(lab: Lab) -> tuple[dict[str, DeclaredNamespace], list[Finding]]:
    """The sandbox view: both sections in one; a link or sysctl set in both is an error."""
    view: dict[str, DeclaredNamespace] = {}
    for name, ns in lab.namespaces.items():
        _add_namespace(view, name, ns, ("namespaces", name), external=ns.resolve is not None)
    findings = []
    for name, ns in lab.sandbox.namespaces.items():
        path: DataPath = ("sandbox", "namespaces", name)
        main = lab.namespaces.get(name)
        if main is not None:
            for link in sorted(ns.links.keys() & main.links.keys()):
                findings.append(
                    Finding(
                        (*path, "links", link),
                        f"link {link!r} is already declared in namespaces.{name}.links; "
                        "declare it in one section only",
                        at_key=True,
                    )
                )
            for key in sorted(ns.sysctls.keys() & main.sysctls.keys()):
                if ns.sysctls[key] != main.sysctls[key]:
                    findings.append(
                        Finding(
                            (*path, "sysctls", key),
                            f"{key} is already set to {main.sysctls[key]!r} in namespaces.{name}",
                            at_key=True,
                        )
                    )
        _add_namespace(view, name, ns, path, external=False, override=True)
    return view, findings


def _add_namespace(
    view: dict[str, DeclaredNamespace],
    name: str,
    ns: Namespace,
    path: DataPath,
    *,
    external: bool,
    override: bool = False,
) -> None:
    """Add a section's namespace to a view; with override its links replace same-named ones."""
    entry = view.setdefault(name, DeclaredNamespace(name, external))
    entry.external = entry.external and external
    entry.specs.append((ns, path))
    for link_name, link in ns.links.items():
        if override or link_name not in entry.links:
            entry.links[link_name] = DeclaredLink(
                name, link_name, link, (*path, "links", link_name)
            )


def reserved_names(lab: Lab) -> Iterator[Finding]:
    host = lab.namespaces.get(HOST)
    if host is not None and host.resolve is not None:
        yield Finding(
            ("namespaces", HOST, "resolve"),
            "host is this node's own namespace and is never looked up; remove resolve, or give "
            "the namespace another name",
            at_key=True,
        )
    for name, ns in lab.sandbox.namespaces.items():
        if ns.resolve is not None:
            yield Finding(
                ("sandbox", "namespaces", name, "resolve"),
                "sandbox namespaces are built from scratch, not looked up; remove resolve",
                at_key=True,
            )


def sandbox_vms(lab: Lab) -> Iterator[Finding]:
    for name in lab.sandbox.vms:
        if name not in lab.vms:
            yield Finding(
                ("sandbox", "vms", name),
                f"VM {name!r} is not declared under vms{_did_you_mean(name, lab.vms)}",
                at_key=True,
            )


def resolve_targets(lab: Lab) -> Iterator[Finding]:
    claimed: dict[str, str] = {}
    for name, ns in lab.namespaces.items():
        vm = ns.resolve.vm if ns.resolve else None
        if vm is None:
            continue
        path: DataPath = ("namespaces", name, "resolve", "vm")
        if vm not in lab.vms:
            yield Finding(path, f"VM {vm!r} is not declared under vms{_did_you_mean(vm, lab.vms)}")
        elif vm in claimed:
            yield Finding(path, f"namespace {claimed[vm]!r} already resolves to VM {vm!r}")
        else:
            claimed[vm] = name


def check_sources(lab: Lab) -> Iterator[Finding]:
    namespaces = lab.namespaces.keys() | lab.sandbox.namespaces.keys()
    for index, check in enumerate(lab.checks):
        source = check.source
        path: DataPath = ("checks", index, "from")
        if source.startswith(VM_PREFIX):
            vm = source.removeprefix(VM_PREFIX)
            if vm not in lab.vms:
                hint = _did_you_mean(vm, lab.vms)
                yield Finding(path, f"VM {vm!r} is not declared under vms{hint}")
        elif source not in namespaces:
            yield Finding(
                path,
                f"{source!r} is neither a namespace of the lab nor vm/NAME"
                f"{_did_you_mean(source, namespaces)}",
            )


def view_findings(
    view: dict[str, DeclaredNamespace], where: str, book: AddressBook | None = None
) -> Iterator[Finding]:
    book = book or AddressBook()
    for ns in view.values():
        for link in ns.links.values():
            yield from _link_findings(view, ns, link, where)
        for spec, path in ns.specs:
            yield from _route_findings(ns, spec, path, where, book)
        yield from _duplicate_addresses(ns, book)
    yield from _segment_duplicates(view, book)
    yield from _passthru_findings(view)


def _link_findings(
    view: dict[str, DeclaredNamespace], ns: DeclaredNamespace, link: DeclaredLink, where: str
) -> Iterator[Finding]:
    spec = link.link
    if spec.state == "absent":
        return
    if spec.kind is None and not ns.external and link.name != LOOPBACK:
        yield Finding(
            link.path,
            f"link {link.name!r} has no kind, and namespace {ns.name!r} is created by the lab "
            f"{where}, so nothing provides it; add kind: {ALL_KINDS}",
            at_key=True,
        )
    if spec.parent is not None:
        yield from _parent_findings(view, link, where)
    if spec.peer is not None:
        yield from _peer_findings(view, link, where)
    if spec.dev is not None:
        yield from _dev_findings(view, link, where)
    if spec.master is not None:
        target = _lookup(view, ns.name, spec.master, (*link.path, "master"), where)
        if isinstance(target, Finding):
            yield target
        elif target is not None and target.link.kind not in (None, "bridge"):
            yield Finding(
                (*link.path, "master"),
                f"master {spec.master!r} is a {target.link.kind}; a port's master must be a bridge",
            )


def _lookup(
    view: dict[str, DeclaredNamespace], namespace: str, name: str, path: DataPath, where: str
) -> DeclaredLink | Finding | None:
    """The declared link a reference names; None when it may exist outside the lab."""
    ns = view.get(namespace)
    if ns is None:
        return Finding(
            path,
            f"namespace {namespace!r} is not declared {where}{_did_you_mean(namespace, view)}; "
            f"add it under namespaces",
        )
    target = ns.links.get(name)
    if target is None:
        if ns.external or name == LOOPBACK:
            return None
        return Finding(
            path,
            f"link {name!r} is not declared in namespace {namespace!r} {where}"
            f"{_did_you_mean(name, ns.links)}",
        )
    if target.link.state == "absent":
        return Finding(path, f"link {namespace}/{name} is declared with state: absent")
    return target


def _parent_findings(
    view: dict[str, DeclaredNamespace], link: DeclaredLink, where: str
) -> Iterator[Finding]:
    path, (namespace, name) = _reference(link, "parent")
    if (namespace, name) == (link.namespace, link.name):
        yield Finding(path, f"a {link.link.kind} cannot be its own parent")
        return
    target = _lookup(view, namespace, name, path, where)
    if isinstance(target, Finding):
        yield target
    elif target is not None and target.link.kind in LOWER_DEVICE_KINDS:
        yield Finding(
            path,
            f"parent {link.link.parent} is itself a {target.link.kind}; put both on its parent "
            f"{target.link.parent}",
        )
    elif target is not None and target.link.master:
        yield Finding(
            path,
            f"parent {link.link.parent} is a port of bridge {target.link.master}, and the kernel "
            f"lets a device serve one of the two; put the {link.link.kind} on "
            f"{target.link.master} instead",
        )


def _dev_findings(
    view: dict[str, DeclaredNamespace], link: DeclaredLink, where: str
) -> Iterator[Finding]:
    """A vxlan's underlay: a link of its own namespace, which must be there first."""
    path: DataPath = (*link.path, "dev")
    dev = link.link.dev
    if dev == link.name:
        yield Finding(path, f"a {link.link.kind} cannot be its own dev; name its underlay link")
        return
    assert dev is not None
    target = _lookup(view, link.namespace, dev, path, where)
    if isinstance(target, Finding):
        yield target


def _reference(link: DeclaredLink, field: str) -> tuple[DataPath, tuple[str, str]]:
    """Where a link's `parent` or `peer` is written, and the (namespace, name) it names."""
    ref = getattr(link.link, field)
    if ref is None:
        raise BugError(f"{link.address} has no {field}")
    return (*link.path, field), split_ref(ref, link.namespace)


def _peer_findings(
    view: dict[str, DeclaredNamespace], link: DeclaredLink, where: str
) -> Iterator[Finding]:
    path, (namespace, name) = _reference(link, "peer")
    if (namespace, name) == (link.namespace, link.name):
        yield Finding(path, "a veth cannot be its own peer")
        return
    if namespace not in view:
        yield Finding(
            path,
            f"namespace {namespace!r} is not declared {where}{_did_you_mean(namespace, view)}; "
            "add it under namespaces",
        )
        return
    other = view[namespace].links.get(name)
    if other is None:
        return  # the other end is created with the pair, with default settings
    if other.link.kind != "veth":
        yield Finding(
            path,
            f"{namespace}/{name} is declared as {_describe(other.link)}, not as the other end "
            f"of this veth; give it kind: veth and peer: {link.namespace}/{link.name}",
        )
        return
    assert other.link.peer is not None
    if split_ref(other.link.peer, namespace) != (link.namespace, link.name):
        yield Finding(
            path,
            f"the veth ends disagree: this end names {namespace}/{name} as its peer, but that "
            f"end names {other.link.peer}",
        )


def _describe(link: Link) -> str:
    return f"a {link.kind}" if link.kind else "a link without kind"


def _route_findings(
    ns: DeclaredNamespace, spec: Namespace, path: DataPath, where: str, book: AddressBook
) -> Iterator[Finding]:
    seen: dict[tuple[str, int | None, int | None], int] = {}
    for index, route in enumerate(spec.routes):
        route_path: DataPath = (*path, "routes", index)
        key = (route_key(route), route.table, route.metric)
        if route.state == "present" and key in seen:
            yield Finding(
                route_path,
                f"route to {route.to} is declared twice in namespace {ns.name!r} (also "
                f"routes[{seen[key]}]); give one a different metric or table, or remove it",
            )
        seen.setdefault(key, index)
        if route.state == "absent":
            continue
        dev = None
        if route.dev is not None:
            dev = ns.links.get(route.dev)
            if dev is None and not ns.external and route.dev != LOOPBACK:
                yield Finding(
                    (*route_path, "dev"),
                    f"link {route.dev!r} is not declared in namespace {ns.name!r} {where}"
                    f"{_did_you_mean(route.dev, ns.links)}",
                )
                continue
            if dev is not None and dev.link.state == "absent":
                yield Finding(
                    (*route_path, "dev"), f"link {route.dev!r} is declared with state: absent"
                )
                continue
            if dev is not None and not dev.link.up:
                yield Finding(
                    (*route_path, "dev"),
                    f"link {route.dev!r} is declared up: false, and the kernel drops routes "
                    "through a link that is down; bring it up or remove the route",
                )
                continue
        if route.via is not None and not route.onlink:
            # A link the lab does not declare: its addresses are known only on the node.
            undeclared = route.dev is not None and dev is None
            subnets = None if undeclared else book.subnets(ns, dev)
            yield from _gateway_findings(ns, route.via, route.dev, subnets, (*route_path, "via"))


def route_key(route: Route) -> str:
    """What a route's destination means: `default` is 0.0.0.0/0 or ::/0 by the gateway's family.

    So an IPv4 and an IPv6 default live side by side, and `default via fd00::1` is `::/0`.
    """
    return DEFAULTS[route.family] if route.to == "default" else route.to


DEFAULTS = {4: "0.0.0.0/0", 6: "::/0"}


def _gateway_findings(
    ns: DeclaredNamespace, via: str, dev_name: str | None, subnets: Subnets | None, path: DataPath
) -> Iterator[Finding]:
    if subnets is None:
        return
    gateway = parse_ip(via)
    if ip_key(gateway) in subnets.ips:
        yield Finding(path, f"gateway {via} is an address of this namespace itself")
    elif subnets.covers(gateway):
        return
    elif subnets.addresses or not ns.external:
        on = f"on {dev_name}" if dev_name else f"in namespace {ns.name!r}"
        have = ", ".join(subnets.addresses) or "none"
        yield Finding(
            path,
            f"gateway {via} is not in the subnet of any address {on} ({have}); add an address "
            "in its subnet, correct the gateway, or set onlink: true",
        )


def _duplicate_addresses(ns: DeclaredNamespace, book: AddressBook) -> Iterator[Finding]:
    owner: dict[IpKey, str] = {}
    for link in ns.links.values():
        for index, address in enumerate(link.link.addresses):
            iface = book.parse(address)
            key = ip_key(iface)
            if key in owner:
                yield Finding(
                    (*link.path, "addresses", index),
                    f"address {iface.ip} is already on {owner[key]} in namespace {ns.name!r}",
                )
            else:
                owner[key] = link.name


LinkKey = tuple[str, str]  # (namespace, interface name)


class UnionFind:
    """Disjoint sets with path halving and union by size: near-linear over a whole lab."""

    def __init__(self) -> None:
        self.parent: dict[LinkKey, LinkKey] = {}
        self.size: dict[LinkKey, int] = {}

    def find(self, key: LinkKey) -> LinkKey:
        parent = self.parent.setdefault(key, key)
        while parent != key:
            grandparent = self.parent[parent]
            self.parent[key] = grandparent
            key, parent = parent, self.parent.setdefault(grandparent, grandparent)
        return key

    def union(self, a: LinkKey, b: LinkKey) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if self.size.get(a, 1) < self.size.get(b, 1):
            a, b = b, a
        self.parent[b] = a
        self.size[a] = self.size.get(a, 1) + self.size.get(b, 1)


def l2_segments(view: dict[str, DeclaredNamespace]) -> UnionFind:
    """The lab's L2 segments: a veth's two ends, a bridge and its ports, a macvlan or macvtap
    and its parent each share one."""
    segments = UnionFind()
    for ns in view.values():
        for link in ns.links.values():
            spec = link.link
            if spec.state == "absent":
                continue
            here = (ns.name, link.name)
            for ref in (spec.peer, spec.parent):
                if ref is not None:
                    segments.union(here, split_ref(ref, ns.name))
            if spec.master is not None:
                segments.union(here, (ns.name, spec.master))
    return segments


def _segment_duplicates(view: dict[str, DeclaredNamespace], book: AddressBook) -> Iterator[Finding]:
    """One address twice in an L2 segment: the two hosts answer ARP/ND for it in turn."""
    segments = l2_segments(view)
    owner: dict[tuple[LinkKey, IpKey], tuple[DeclaredLink, int]] = {}
    for ns in view.values():
        for link in ns.links.values():
            if link.link.state == "absent":
                continue
            segment = segments.find((ns.name, link.name))
            for index, address in enumerate(link.link.addresses):
                iface = book.parse(address)
                first = owner.setdefault((segment, ip_key(iface)), (link, index))
                if first[0].namespace == ns.name:
                    continue  # the same namespace: reported as a duplicate there
                other, other_index = first
                yield Finding(
                    (*link.path, "addresses", index),
                    f"address {iface.ip} is already on {other.namespace}/{other.name} "
                    f"({format_path((*other.path, 'addresses', other_index))}), and the two "
                    "links share an L2 segment (a veth pair, a bridge and its ports, or a "
                    "macvlan and its parent); give one of them another address",
                )


def _passthru_findings(view: dict[str, DeclaredNamespace]) -> Iterator[Finding]:
    users: dict[tuple[str, str], list[DeclaredLink]] = {}
    for ns in view.values():
        for link in ns.links.values():
            if link.link.parent is not None and link.link.state == "present":
                users.setdefault(split_ref(link.link.parent, ns.name), []).append(link)
    for (namespace, name), links in users.items():
        passthru = next((link for link in links if link.link.mode == "passthru"), None)
        if len(links) > 1 and passthru is not None:
            for link in links[1:]:
                yield Finding(
                    (*link.path, "mode"),
                    f"{namespace}/{name} has a passthru {passthru.link.kind}, which must be the "
                    "only macvlan or macvtap on it",
                )


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
