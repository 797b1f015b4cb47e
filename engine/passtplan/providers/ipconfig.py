"""The ipconfig family: addresses and routes. Decoded from the namespace's dumps, applied many per
write through the rtnl codec, and ordered after the links they sit on or leave through.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from typing import Literal

from passtplan import resources as res
from passtplan.changes import Action, Change
from passtplan.desired import Desired
from passtplan.lang.types import route_protocol_name, route_protocol_number
from passtplan.providers import rtnl
from passtplan.providers.context import ApplyContext, ApplyError
from passtplan.providers.session import Handle

RTNH_F_ONLINK = 0x4
LOOPBACK_ADDRESSES = {"127.0.0.1/8", "::1/128"}
IPV6_LINK_LOCAL = ("fe8", "fe9", "fea", "feb")  # fe80::/10, as inet_ntop writes it
DEFAULT_DESTINATIONS = {4: "0.0.0.0/0", 6: "::/0"}


# --- observation ------------------------------------------------------------------------------


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
    # The kernel keeps route destinations as networks: no host bits to clear. A default route
    # has no destination in either family, and is written `default` in both, as the lab does.
    to = "default" if info.dst is None or info.dst_len == 0 else f"{info.dst}/{info.dst_len}"
    return res.Route(
        namespace=ns,
        to=to,
        family=family,
        via=info.gateway,
        dev=names.get(info.oif) if info.oif else None,
        metric=info.priority,
        table=info.table,
        onlink=bool(info.flags & RTNH_F_ONLINK),
        protocol=route_protocol_name(info.proto),
        scope=rtnl.route_scope_name(info.scope),
    )


# --- dependencies -----------------------------------------------------------------------------


def address_depends_on(address: res.Address) -> Iterator[str]:
    yield f"netns.{address.namespace}"
    yield f"link.{address.namespace}/{address.link}"


def route_depends_on(route: res.Route, desired: Desired) -> Iterator[str]:
    yield f"netns.{route.namespace}"
    dev = desired.route_dev(route)
    if dev is not None:
        yield f"link.{route.namespace}/{dev}"


# --- actions ----------------------------------------------------------------------------------


Result = tuple[Change, str | None, str | None]  # (change, note, error)


def apply_batch(ctx: ApplyContext, changes: list[Change]) -> list[Result]:
    """Apply address or route changes of one namespace together."""
    namespace = changes[0].resource.namespace  # type: ignore[union-attr]
    handle = ctx.handle(namespace)
    return handle.run(lambda: _batch_on(ctx, handle, changes))


def apply_one(ctx: ApplyContext, change: Change) -> str:
    ((_, note, error),) = apply_batch(ctx, [change])
    if error is not None:
        raise ApplyError(change.address, error.split(": ", 1)[-1])
    return note or ""


def release(ctx: ApplyContext, change: Change) -> None:
    """Forget an address or route that went with its link or namespace."""
    kind = _record_kind(change)
    if kind is not None:
        ctx.store.release(kind, change.address)


def _record_kind(change: Change) -> str | None:
    kind = change.address.split(".", 1)[0]
    return {"address": "addresses", "route": "routes"}.get(kind)


def _batch_on(ctx: ApplyContext, handle: Handle, changes: list[Change]) -> list[Result]:
    results: dict[int, tuple[str | None, str | None]] = {}
    requests: list[bytes] = []
    sent: list[int] = []
    for position, change in enumerate(changes):
        if change.covered_by is not None:
            release(ctx, change)
            results[position] = (f"removed with {change.covered_by}", None)
            continue
        try:
            _remember_foreign(ctx, change)
            request = _request(ctx, handle, change)
        except ApplyError as exc:
            results[position] = (None, str(exc))
            continue
        if request is None:
            release(ctx, change)
            results[position] = ("already gone", None)
            continue
        requests.append(request)
        sent.append(position)
    _claim_first(ctx, [changes[position] for position in sent])
    for position, code in zip(sent, rtnl.transact(handle.sock, requests), strict=True):
        results[position] = _settle(changes[position], code)
        if results[position][1] is None and _restoring(ctx, changes[position]):
            ctx.store.forget_foreign(changes[position].address)
            results[position] = ("restored", None)
    _release_after(ctx, [c for i, c in enumerate(changes) if results[i][1] is None])
    return [(change, *results[i]) for i, change in enumerate(changes)]


def _claim_first(ctx: ApplyContext, changes: list[Change]) -> None:
    """What the batch creates is the lab's from before it exists: a kill mid-batch leaves a
    record of it, never an address or route nobody knows to remove."""
    for kind in ("addresses", "routes"):
        made = [
            c.address
            for c in changes
            if c.action is Action.CREATE and _record_kind(c) == kind and not _restoring(ctx, c)
        ]
        ctx.store.claim_many(kind, made)


def _release_after(ctx: ApplyContext, changes: list[Change]) -> None:
    for kind in ("addresses", "routes"):
        gone = [c.address for c in changes if c.action is Action.DELETE and _record_kind(c) == kind]
        ctx.store.release_many(kind, gone)


def _remember_foreign(ctx: ApplyContext, change: Change) -> None:
    """A route the lab did not make, about to be replaced or removed by the lab: its value
    from before goes into the lab's record first, to be given back when the lab lets it go."""
    route = change.before
    if not isinstance(route, res.Route) or change.action not in (Action.UPDATE, Action.DELETE):
        return
    if change.address in ctx.store.owned.routes or _restoring(ctx, change):
        return
    if change.address in ctx.desired.routes or change.address in ctx.desired.absent_routes:
        ctx.store.remember_foreign(change.address, route)


def _restoring(ctx: ApplyContext, change: Change) -> bool:
    """A foreign route given back as the record holds it (when the lab lets it go, or by a
    rollback of the apply that changed it, the lab still declaring it): not the lab's, and no
    longer to remember."""
    was = ctx.store.owned.foreign.get(change.address)
    if was is None or not change.address.startswith("route.") or change.action is Action.DELETE:
        return False
    return res.route_from_record(change.address, was) == change.after


def _request(ctx: ApplyContext, handle: Handle, change: Change) -> bytes | None:
    resource = change.resource
    deleting = change.action is Action.DELETE
    if isinstance(resource, res.Address):
        index = ctx.index(handle, resource.link)
        if index is None:
            if deleting:
                return None
            raise ApplyError(change.address, f"link {resource.link} does not exist")
        return rtnl.address_request(not deleting, index, resource.cidr)
    assert isinstance(resource, res.Route)
    oif = 0
    if resource.dev is not None and not deleting:
        found = ctx.index(handle, resource.dev)
        if found is None:
            raise ApplyError(change.address, f"link {resource.dev} does not exist")
        oif = found
    to = DEFAULT_DESTINATIONS[resource.family] if resource.to == "default" else resource.to
    dst, _, dst_len = to.partition("/")
    spec = rtnl.RouteSpec(
        family=resource.family,
        dst=None if dst_len == "0" else dst,
        dst_len=int(dst_len),
        table=resource.table,
        metric=resource.metric,
        gateway=resource.via,
        oif=oif,
        onlink=resource.onlink,
        protocol=route_protocol_number(resource.protocol or res.DEFAULT_ROUTE_PROTOCOL),
        scope=None if resource.scope is None else rtnl.route_scope_number(resource.scope),
    )
    return rtnl.route_request(not deleting, spec)


def _settle(change: Change, code: int) -> tuple[str | None, str | None]:
    if change.action is Action.DELETE:
        if code and code not in rtnl.IGNORED_ON_DELETE:
            return None, f"{change.address}: {os.strerror(code)}"
        return ("deleted" if code == 0 else "already gone"), None
    if code == errno.EEXIST and _record_kind(change) == "addresses":
        return "already present", None
    if code:
        return None, f"{change.address}: {os.strerror(code)} (netlink error {code})"
    return ("replaced" if change.action is Action.UPDATE else "added"), None
