"""Read the live state of a lab's namespaces: one dump per object type per namespace.

Reading is here; translating messages into resources is each family's (`link.to_links`,
`ipconfig.to_address`, `ipconfig.to_route`), tested on captured messages without root.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

from passtplan import resources as res
from passtplan.desired import Desired, netns_name
from passtplan.providers import rtnl
from passtplan.providers.ipconfig import to_address, to_route
from passtplan.providers.link import to_links
from passtplan.providers.ownership import OwnershipStore
from passtplan.providers.sandbox import launcher
from passtplan.providers.session import Handle, Session
from passtplan.providers.sysctl import read_sysctls

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
    neighbours = _neighbours(desired)
    nsids = {}
    for name, handle in handles.items():
        wanted = {link.link_netnsid for link in raw.get(name, ()) if link.link_netnsid is not None}
        if handle is not None and wanted:
            nsids[name] = session.nsid_map(handle, wanted, sorted(neighbours.get(name, ())))
    links = to_links(raw, nsids)
    _own_intended(links, owned, desired.owner)
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
        state.vms.update(launcher.observe(desired.vms.keys() | owned.vms, store))
    return state


def _own_intended(links: dict[str, dict[str, res.Link]], owned: res.Ownership, owner: str) -> None:
    """A link the record says the lab was making, found without the lab's mark (a kill came
    between its creation and its mark), is the lab's: the next apply marks it."""
    for address in owned.links:
        namespace, _, name = address.removeprefix("link.").partition("/")
        link = links.get(namespace, {}).get(name)
        if link is not None and link.owner is None:
            links[namespace][name] = msgspec.structs.replace(link, owner=owner)


def _neighbours(desired: Desired) -> dict[str, set[str]]:
    """The namespaces a namespace's links reach into (veth peers, parents), both ways: where
    the ids of its links' other ends most likely point."""
    found: dict[str, set[str]] = {}
    for link in desired.links.values():
        for other in (link.peer, link.parent):
            if other is not None and other[0] != link.namespace:
                found.setdefault(link.namespace, set()).add(other[0])
                found.setdefault(other[0], set()).add(link.namespace)
    return found


def _sysctls_by_namespace(desired: Desired, owned: res.Ownership) -> dict[str, set[str]]:
    wanted: dict[str, set[str]] = {}
    for sysctl in desired.sysctls.values():
        wanted.setdefault(sysctl.namespace, set()).add(sysctl.name)
    for address in owned.sysctls:
        namespace, name = res.parse_sysctl_address(address)
        wanted.setdefault(namespace, set()).add(name)
    return wanted
