"""The link family: decoding links from a namespace's dump, what a link waits for, and creating,
changing and deleting links of each kind.

Adding a kind: a row in `resources.LINK_KINDS` (which fields force a replace, which change in
place), its IFLA_INFO_DATA decoder in `rtnl.KIND_DATA`, and its case in `_create` and
`_kind_settings` below; mypy's exhaustiveness check over `CreatedKind` names each place.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, Mapping
from typing import Any, Literal, assert_never, cast, get_args

from passtplan import resources as res
from passtplan.changes import Action, Change
from passtplan.providers import rtnl
from passtplan.providers.context import ApplyContext, ApplyError
from passtplan.providers.session import Handle

CreatedKind = Literal["veth", "bridge", "macvlan", "macvtap", "vxlan", "tap"]
CREATED_KINDS: tuple[str, ...] = get_args(CreatedKind)
ON_PARENT = ("macvlan", "macvtap")  # made on their parent's socket, then placed here

# --- observation ------------------------------------------------------------------------------


def to_links(
    raw: Mapping[str, list[rtnl.LinkInfo]], nsids: Mapping[str, Mapping[int, str]]
) -> dict[str, dict[str, res.Link]]:
    """Name every cross-reference: peers and parents may live in another observed namespace."""
    names = {ns: {link.index: link.name for link in links} for ns, links in raw.items()}
    out: dict[str, dict[str, res.Link]] = {}
    for ns, links in raw.items():
        out[ns] = {}
        for link in links:
            other = _other_end(ns, link, names, nsids.get(ns, {}))
            owner = link.alias if link.alias and link.alias.startswith(res.OWNER_PREFIX) else None
            data = dict(link.data)
            if link.kind == "vxlan" and isinstance(data.get("dev"), int):
                data["dev"] = names[ns].get(cast(int, data["dev"])) if data["dev"] else None
            out[ns][link.name] = res.Link(
                namespace=ns,
                name=link.name,
                kind=link.kind,
                up=link.up,
                mtu=link.mtu,
                mac=link.mac,
                master=names[ns].get(link.master, "") if link.master else "",
                parent=other if link.kind in ON_PARENT else None,
                peer=other if link.kind == "veth" else None,
                owner=owner,
                ifindex=link.index,
                **data,  # type: ignore[arg-type]
            )
    return out


def _other_end(
    ns: str,
    link: rtnl.LinkInfo,
    names: Mapping[str, Mapping[int, str]],
    nsids: Mapping[int, str],
) -> res.Ref | None:
    if not link.link:
        return None
    where = ns if link.link_netnsid is None else nsids.get(link.link_netnsid)
    if where is None or where not in names:
        return ("?", f"if{link.link}")  # in a namespace the lab does not name
    return (where, names[where].get(link.link, f"if{link.link}"))


# --- dependencies -----------------------------------------------------------------------------


def depends_on(link: res.Link) -> Iterator[str]:
    yield f"netns.{link.namespace}"
    if link.master:
        yield f"link.{link.namespace}/{link.master}"
    if link.dev:
        yield f"link.{link.namespace}/{link.dev}"
    if link.parent is not None:
        yield f"netns.{link.parent[0]}"
        yield "link.{}/{}".format(*link.parent)
    if link.peer is not None:
        yield f"netns.{link.peer[0]}"
        peer = "link.{}/{}".format(*link.peer)
        if peer < link.address:
            yield peer  # the lower-named end makes the pair; the other waits for it


# --- actions ----------------------------------------------------------------------------------


def apply(ctx: ApplyContext, change: Change) -> str:
    ctx.links_changed()
    try:
        return _apply(ctx, change)
    finally:
        ctx.links_changed()


def _apply(ctx: ApplyContext, change: Change) -> str:
    if change.action is Action.DELETE:
        return _delete(ctx, change)
    link = change.after
    assert isinstance(link, res.Link)
    if change.action is Action.REPLACE:
        _delete(ctx, change)
        ctx.links_changed()
    declared = tuple(f for f in res.COMMON_UPDATE if getattr(link, f) is not None)
    if change.deferred and change.action is Action.CREATE and _exists(ctx, link):
        # Planned before its namespace could be seen: re-checked now that it can.
        _configure(ctx, link, declared, own=True)
        return "already present when its namespace was found: configured"
    if change.action in (Action.CREATE, Action.REPLACE):
        made = _create(ctx, link)
        _configure(ctx, link, declared, own=True)
        return made
    _configure(ctx, link, change.changed, own=False)
    return f"set {', '.join(change.changed)}"


def _exists(ctx: ApplyContext, link: res.Link) -> bool:
    handle = ctx.handle(link.namespace)
    return handle.run(lambda: ctx.index(handle, link.name)) is not None


def _delete(ctx: ApplyContext, change: Change) -> str:
    link = change.before
    assert isinstance(link, res.Link)
    handle = ctx.handle(link.namespace)

    def delete() -> str:
        from pyroute2.netlink.exceptions import NetlinkError

        index = ctx.index(handle, link.name)
        if index is None:
            return "already gone"
        try:
            handle.ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise
        return "deleted"

    return handle.run(delete)


def _create(ctx: ApplyContext, link: res.Link) -> str:
    handle = ctx.handle(link.namespace)
    kind = cast(CreatedKind, link.kind)
    match kind:
        case "veth":
            return _create_veth(ctx, handle, link)
        case "macvlan" | "macvtap":
            return _create_on_parent(ctx, handle, link)
        case "bridge" | "vxlan":
            args = {"ifname": link.name, "kind": kind, **_kind_settings(ctx, handle, link)}
            handle.run(lambda: handle.ipr.link("add", **args))
            return f"created {kind}"
        case "tap":
            raise ApplyError(link.address, "tap links are not supported yet")
        case _:
            assert_never(kind)


def _kind_settings(ctx: ApplyContext, handle: Handle, link: res.Link) -> dict[str, Any]:
    """The kind's own settings as pyroute2 link arguments, for create and in-place change."""
    kind = cast(CreatedKind, link.kind)
    match kind:
        case "macvlan":
            return {"macvlan_mode": link.mode or "vepa"}
        case "macvtap":
            return {"macvtap_mode": link.mode or "vepa"}
        case "vxlan":
            args: dict[str, Any] = {"vxlan_id": link.vni, "vxlan_port": link.dstport or 4789}
            if link.remote or link.group:
                key = "vxlan_group6" if ":" in (link.remote or link.group or "") else "vxlan_group"
                args[key] = link.remote or link.group
            if link.local:
                args["vxlan_local6" if ":" in link.local else "vxlan_local"] = link.local
            if link.dev:
                dev = ctx.index(handle, link.dev)
                if dev is None:
                    raise ApplyError(link.address, f"dev {link.dev} does not exist")
                args["vxlan_link"] = dev
            return args
        case "veth" | "bridge" | "tap":
            return {}
        case _:
            assert_never(kind)


def _create_veth(ctx: ApplyContext, handle: Handle, link: res.Link) -> str:
    """Both ends in one request; the graph runs the other end's action after this one."""
    assert link.peer is not None
    peer_ns, peer_name = link.peer
    peer = ctx.handle(peer_ns)

    def create(peer_fd: int) -> str:
        if ctx.index(handle, link.name) is not None:
            return "created with its peer"
        spec: dict[str, Any] = {"ifname": peer_name}
        if peer is not handle:
            spec["net_ns_fd"] = peer_fd
        handle.ipr.link("add", ifname=link.name, kind="veth", peer=spec)
        return f"created veth pair with {peer_ns}/{peer_name}"

    with ctx.netns_fd(peer) as peer_fd:
        return handle.run(lambda: create(peer_fd))


def _create_on_parent(ctx: ApplyContext, handle: Handle, link: res.Link) -> str:
    """Made on its parent's socket and placed in its own namespace in the same request."""
    assert link.parent is not None
    parent_ns, parent_name = link.parent
    parent = ctx.handle(parent_ns)

    def create(target_fd: int) -> None:
        parent_index = ctx.index(parent, parent_name)
        if parent_index is None:
            raise ApplyError(link.address, f"parent {parent_ns}/{parent_name} does not exist")
        args: dict[str, Any] = {"ifname": link.name, "kind": link.kind, "link": parent_index}
        args.update(_kind_settings(ctx, handle, link))
        if parent is not handle:
            args["net_ns_fd"] = target_fd
        parent.ipr.link("add", **args)

    with ctx.netns_fd(handle) as target_fd:
        parent.run(lambda: create(target_fd))
    return f"created {link.kind} on {parent_ns}/{parent_name} ({link.mode})"


def _configure(ctx: ApplyContext, link: res.Link, fields: tuple[str, ...], *, own: bool) -> None:
    handle = ctx.handle(link.namespace)
    kind = res.LINK_KINDS.get(link.kind or "")
    own_settings = kind is not None and any(f in kind.update for f in fields)

    def configure() -> None:
        index = ctx.index(handle, link.name)
        if index is None:
            raise ApplyError(link.address, "the link does not exist")
        args: dict[str, Any] = {}
        if own and link.owner:
            args["ifalias"] = link.owner
        if "mtu" in fields and link.mtu is not None:
            args["mtu"] = link.mtu
        if "mac" in fields and link.mac is not None:
            args["address"] = link.mac
        if "master" in fields and link.master is not None:
            master = ctx.index(handle, link.master) if link.master else 0
            if master is None:
                raise ApplyError(link.address, f"master {link.master} does not exist")
            args["master"] = master
        if own_settings:
            args.update(kind=link.kind, **_kind_settings(ctx, handle, link))
        if args:
            handle.ipr.link("set", index=index, **args)
        if "up" in fields and link.up is not None:
            handle.ipr.link("set", index=index, state="up" if link.up else "down")

    handle.run(configure)
