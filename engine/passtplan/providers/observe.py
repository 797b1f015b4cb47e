"""Read the live state of a lab's namespaces: one dump per object type per namespace.

Reading (`observe`) and translating (`raw_link`, `to_links`, `to_address`, `to_route`) are apart,
so translation is tested on captured messages without root.
"""

from __future__ import annotations

import errno
import gc
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from passtplan import resources as res
from passtplan.desired import Desired, netns_name
from passtplan.providers import kernel, rtnl, vm_local
from passtplan.providers.ownership import OwnershipStore
from passtplan.providers.session import Handle, Session

RTNH_F_ONLINK = 0x4
LOOPBACK_ADDRESSES = {"127.0.0.1/8", "::1/128"}
IPV6_LINK_LOCAL = ("fe8", "fe9", "fea", "feb")  # fe80::/10, as inet_ntop writes it


RawLink = rtnl.LinkInfo


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Decoding a dump makes many small objects; the cyclic GC only slows that down."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def to_links(
    raw: Mapping[str, list[RawLink]], nsids: Mapping[str, Mapping[int, str]]
) -> dict[str, dict[str, res.Link]]:
    """Name every cross-reference: peers and parents may live in another observed namespace."""
    names = {ns: {link.index: link.name for link in links} for ns, links in raw.items()}
    out: dict[str, dict[str, res.Link]] = {}
    for ns, links in raw.items():
        out[ns] = {}
        for link in links:
            other = _other_end(ns, link, names, nsids.get(ns, {}))
            owner = link.alias if link.alias and link.alias.startswith(res.OWNER_PREFIX) else None
            out[ns][link.name] = res.Link(
                namespace=ns,
                name=link.name,
                kind=link.kind,
                up=link.up,
                mtu=link.mtu,
                mac=link.mac,
                master=names[ns].get(link.master, "") if link.master else "",
                parent=other if link.kind == "macvlan" else None,
                mode=link.mode,
                peer=other if link.kind == "veth" else None,
                owner=owner,
                ifindex=link.index,
            )
    return out


def _other_end(
    ns: str, link: RawLink, names: Mapping[str, Mapping[int, str]], nsids: Mapping[int, str]
) -> res.Ref | None:
    if not link.link:
        return None
    where = ns if link.link_netnsid is None else nsids.get(link.link_netnsid)
    if where is None or where not in names:
        return ("?", f"if{link.link}")  # in a namespace the lab does not name
    return (where, names[where].get(link.link, f"if{link.link}"))


def to_address(ns: str, info: rtnl.AddressInfo, names: Mapping[int, str]) -> res.Address | None:
    if info.cidr.startswith(IPV6_LINK_LOCAL):
        return None  # the kernel makes these itself
    link = names.get(info.index, f"if{info.index}")
    if link == "lo" and info.cidr in LOOPBACK_ADDRESSES:
        return None
    return res.Address(ns, link, info.cidr)


def to_route(ns: str, info: rtnl.RouteInfo, names: Mapping[int, str]) -> res.Route | None:
    family: Literal[4, 6] = 6 if info.family == 6 else 4
    if family == 6 and info.dst is not None and info.dst.startswith("ff"):
        return None  # multicast, the kernel's
    # The kernel keeps route destinations as networks: no host bits to clear.
    to = "default" if info.dst is None else f"{info.dst}/{info.dst_len}"
    return res.Route(
        namespace=ns,
        to=to,
        family=family,
        via=info.gateway,
        dev=names.get(info.oif) if info.oif else None,
        metric=info.priority,
        table=info.table,
        onlink=bool(info.flags & RTNH_F_ONLINK),
    )


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls(handle: Handle, names: Iterable[str]) -> dict[str, str]:
    """Per-namespace sysctls, read from inside the namespace (they follow the thread's netns)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}

    def read() -> dict[str, str]:
        found = {}
        for name in wanted:
            try:
                found[name] = sysctl_path(name).read_text().strip()
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
        return found

    return kernel.run_inside(handle.fd, read)


Dump = tuple[list[RawLink], tuple[list[rtnl.AddressInfo], list[rtnl.RouteInfo]]]


def _dump(handle: Handle, *, links_only: bool) -> Dump:
    """One dump per object type, decoded as it arrives."""
    with _gc_paused():
        links = [rtnl.decode_link(m) for m in rtnl.dump(handle.sock, rtnl.RTM_GETLINK)]
        if links_only:
            return links, ([], [])
        addresses = [
            a for m in rtnl.dump(handle.sock, rtnl.RTM_GETADDR) if (a := rtnl.decode_address(m))
        ]
        routes = [
            r for m in rtnl.dump(handle.sock, rtnl.RTM_GETROUTE) if (r := rtnl.decode_route(m))
        ]
    return links, (addresses, routes)


def namespaces_to_observe(desired: Desired, owned: res.Ownership) -> list[res.Namespace]:
    found = dict(desired.namespaces)
    for name in owned.namespaces - found.keys():
        found[name] = res.Namespace(name, netns_name(desired.lab, name), res.NamespaceRole.CREATED)
    return [found[name] for name in sorted(found)]


def observe(
    desired: Desired,
    owned: res.Ownership,
    session: Session,
    store: OwnershipStore | None = None,
) -> res.State:
    """The live state of every namespace the lab names or made, and of its sandbox VMs."""
    namespaces = namespaces_to_observe(desired, owned)
    # A namespace the lab made and no longer wants goes whole: its links are read (a veth end
    # may live in a namespace that stays), its addresses and routes go with it unread.
    doomed = owned.namespaces - desired.namespaces.keys()
    handles = {ns.name: session.open(ns) for ns in namespaces}
    raw: dict[str, list[RawLink]] = {}
    dumps: dict[str, tuple[list[rtnl.AddressInfo], list[rtnl.RouteInfo]]] = {}
    for name, handle in handles.items():
        if handle is not None:
            # On this thread: observation never overlaps actions, and the raw socket needs no
            # event loop (only pyroute2 calls must run on the handle's own thread).
            raw[name], dumps[name] = _dump(handle, links_only=name in doomed)
    nsids = {
        name: session.nsid_map(handle)
        for name, handle in handles.items()
        if handle is not None and any(link.link_netnsid is not None for link in raw[name])
    }
    links = to_links(raw, nsids)
    state = res.State(owned=owned)
    wanted_sysctls = _sysctls_by_namespace(desired, owned)
    for ns in namespaces:
        handle = handles[ns.name]
        if handle is None:
            state.namespaces[ns.name] = None
            continue
        names = {link.ifindex: link.name for link in links[ns.name].values()}
        addresses, routes = dumps[ns.name]
        with _gc_paused():
            found = res.NamespaceState(
                namespace=ns,
                links=links[ns.name],
                addresses=[a for m in addresses if (a := to_address(ns.name, m, names))],
                routes=[r for m in routes if (r := to_route(ns.name, m, names))],
            )
        found.sysctls = read_sysctls(handle, wanted_sysctls.get(ns.name, ()))
        state.namespaces[ns.name] = found
    if desired.sandbox and store is not None:
        state.vms.update(vm_local.observe(desired.vms.keys() | owned.vms, store))
    return state


def _sysctls_by_namespace(desired: Desired, owned: res.Ownership) -> dict[str, set[str]]:
    wanted: dict[str, set[str]] = {}
    for sysctl in desired.sysctls.values():
        wanted.setdefault(sysctl.namespace, set()).add(sysctl.name)
    for address in owned.sysctls:
        namespace, name = res.parse_sysctl_address(address)
        wanted.setdefault(namespace, set()).add(name)
    return wanted
