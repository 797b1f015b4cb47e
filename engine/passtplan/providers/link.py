"""The link family: decoding links from a namespace's dump, what a link waits for, and creating,
changing and deleting links of each kind.

Adding a kind: a row in `resources.LINK_KINDS` (which fields force a replace, which change in
place), its IFLA_INFO_DATA decoder in `rtnl.KIND_DATA`, and its case in `_create` and
`_kind_settings` below; mypy's exhaustiveness check over `CreatedKind` names each place. A kind
the kernel does not make through rtnetlink (tap: /dev/net/tun) has its own create and, in
`_configure`, its own in-place change.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from typing import Any, Literal, assert_never, cast, get_args

import msgspec

from passtplan import resources as res
from passtplan.changes import Action, Change
from passtplan.providers import kernel, rtnl
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
            owner = link.alias if link.alias and link.alias.startswith(res.MARKS) else None
            data = dict(link.data)
            dev = data.get("dev")
            if isinstance(dev, int):  # vxlan: the underlay's ifindex, in the same namespace
                data["dev"] = names[ns].get(dev, f"if{dev}") if dev else None
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
        note = _delete(ctx, change)
        ctx.store.release("links", change.address)
        return note
    link = change.after
    assert isinstance(link, res.Link)
    if change.action is Action.REPLACE:
        _delete(ctx, change)
        ctx.links_changed()
    declared = tuple(f for f in res.COMMON_UPDATE if getattr(link, f) is not None)
    if change.deferred and change.action is Action.CREATE and _exists(ctx, link):
        # Planned before its namespace could be seen: re-checked now that it can.
        _configure(ctx, link, declared, created=True)
        return "already present when its namespace was found: configured"
    if change.action in (Action.CREATE, Action.REPLACE):
        if link.owner != ctx.desired.owner:
            # A link the lab did not make, made again by a rollback of the apply that removed
            # it: given back as it was, mark (none, or another lab's) and all, not the lab's.
            made = _create(ctx, link)
            _configure(ctx, link, declared, created=True)
            return f"{made}: given back"
        # The lab's before it exists: a kill before its mark is set leaves it known.
        ctx.store.claim_many("links", made_with(link))
        made = _create(ctx, link)
        _configure(ctx, link, declared, created=True)
        return made
    before = change.before
    restoring = _restoring(ctx, link)
    if isinstance(before, res.Link) and before.owner != ctx.desired.owner and not restoring:
        # a link the lab did not make: what it was goes into the record first, to give back
        ctx.store.remember_foreign(change.address, before)
    _configure(ctx, link, change.changed, created=False)
    if restoring:
        ctx.store.forget_foreign(change.address)
        return f"restored {', '.join(change.changed)}"
    return f"set {', '.join(change.changed)}"


def _restoring(ctx: ApplyContext, link: res.Link) -> bool:
    """A foreign link's attributes set back as the lab's record holds them (when the lab lets
    it go, or by a rollback of the apply that changed them, the lab still declaring it): the
    record's entry is done with. Set back to anything else (a rollback of a later apply), the
    entry stays, to give back what was before the lab's first change."""
    was = ctx.store.owned.foreign.get(link.address)
    if was is None:
        return False
    previous = res.link_from_record(link.address, was)
    return not res.update_fields(msgspec.structs.replace(previous, kind=link.kind), link)


def made_with(link: res.Link) -> list[str]:
    """The links one create makes: the link, and a veth's other end."""
    if link.kind == "veth" and link.peer is not None:
        return [link.address, "link.{}/{}".format(*link.peer)]
    return [link.address]


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
            # On the namespace's thread, settings included: a vxlan's dev is looked up on the
            # namespace's socket, which only that thread reads.
            handle.run(
                lambda: handle.ipr.link(
                    "add", ifname=link.name, kind=kind, **_kind_settings(ctx, handle, link)
                )
            )
            return f"created {kind}"
        case "tap":
            handle.run(lambda: kernel.make_tap(handle.fd, link.name, link.tap_owner))
            owner = "" if link.tap_owner is None else f" owned by uid {link.tap_owner}"
            return f"created tap{owner}"
        case _:
            assert_never(kind)


VXLAN_PORT = 4789  # IANA's; the kernel's own default is 8472 (Linux's before the assignment)


def _kind_settings(
    ctx: ApplyContext, handle: Handle, link: res.Link, fields: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The kind's own settings as pyroute2 link arguments: all of them to create the link
    (`fields` None), or those of `fields` to change it in place."""
    kind = cast(CreatedKind, link.kind)

    def wanted(name: str) -> bool:
        return getattr(link, name) is not None and (fields is None or name in fields)

    match kind:
        case "macvlan":
            return {"macvlan_mode": link.mode or "vepa"}
        case "macvtap":
            return {"macvtap_mode": link.mode or "vepa"}
        case "vxlan":
            # The kernel refuses IFLA_VXLAN_PORT in a change even when it is the same port.
            args: dict[str, Any] = {}
            if fields is None:
                args = {"vxlan_id": link.vni, "vxlan_port": link.dstport or VXLAN_PORT}
            far = link.remote if wanted("remote") else link.group if wanted("group") else None
            if far is not None:
                args["vxlan_group6" if ":" in far else "vxlan_group"] = far
            if link.local is not None and wanted("local"):
                args["vxlan_local6" if ":" in link.local else "vxlan_local"] = link.local
            if link.dev is not None and wanted("dev"):
                dev = ctx.index(handle, link.dev)
                if dev is None:
                    raise ApplyError(link.address, f"dev {link.dev} does not exist")
                args["vxlan_link"] = dev
            if fields is None and link.group is not None and link.dev is None:
                # The kernel's answer would be EINVAL alone.
                raise ApplyError(link.address, "a vxlan with a multicast group needs a dev")
            return args
        case "veth" | "bridge" | "tap":
            return {}
        case _:
            assert_never(kind)


def _set_tap_owner(handle: Handle, link: res.Link) -> None:
    """On the tap's character device; the kernel refuses while a process holds it open."""
    assert link.tap_owner is not None
    payload = rtnl.get_link(handle.sock, link.name)
    if payload is None:
        raise ApplyError(link.address, "the link does not exist")
    _, data = rtnl.info_data(payload)
    try:
        kernel.set_tun_owner(handle.fd, link.name, rtnl.tun_flags(data), link.tap_owner)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        raise ApplyError(
            link.address,
            "a process holds the tap open; its owner can only be changed while none does",
        ) from None


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


def _configure(
    ctx: ApplyContext, link: res.Link, fields: tuple[str, ...], *, created: bool
) -> None:
    handle = ctx.handle(link.namespace)
    kind = res.LINK_KINDS.get(link.kind or "")
    own = tuple(f for f in fields if kind is not None and f in kind.update)

    def configure() -> None:
        index = ctx.index(handle, link.name)
        if index is None:
            raise ApplyError(link.address, "the link does not exist")
        master = None
        if "master" in fields and link.master is not None:
            master = ctx.index(handle, link.master) if link.master else 0
            if master is None:
                raise ApplyError(link.address, f"master {link.master} does not exist")
        settings = rtnl.LinkSettings(
            alias=link.owner if created and link.owner else None,
            mtu=link.mtu if "mtu" in fields else None,
            mac=link.mac if "mac" in fields else None,
            master=master,
        )
        if own and link.kind == "tap":
            _set_tap_owner(handle, link)
        elif own:
            handle.ipr.link(
                "set", index=index, kind=link.kind, **_kind_settings(ctx, handle, link, own)
            )
        up = link.up if "up" in fields else None
        for code in rtnl.transact(handle.sock, rtnl.link_set_requests(index, settings, up)):
            if code:
                raise OSError(code, os.strerror(code))

    handle.run(configure)
