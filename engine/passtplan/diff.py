"""Desired state against observed state: the changes, each with what it was, what it will be and
why. A pure function; nothing here touches the kernel.

Rules, in the spirit of nmstate and Terraform:
- what the lab declares is made to match; drift on any declared attribute is a change;
- what the lab made (marked links, recorded namespaces, addresses, routes) and no longer declares
  is removed; `state: absent` removes a thing whoever made it; nothing else is touched;
- recreating a link takes its addresses and routes with it (and the macvlans on it, and the other
  end of a veth), so those are planned again.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import Any

import msgspec

from passtplan import resources as res
from passtplan.changes import Action, Change, show_value
from passtplan.desired import Desired
from passtplan.errors import PasstplanError
from passtplan.subnets import SubnetIndex


class ConflictError(PasstplanError):
    """The plan would have to take over or destroy something the lab did not make."""

    def __init__(self, conflicts: list[str]) -> None:
        self.conflicts = conflicts
        super().__init__("\n".join(conflicts))


class _Diff(msgspec.Struct, dict=True):
    desired: Desired
    state: res.State
    changes: dict[str, Change] = msgspec.field(default_factory=dict)
    conflicts: list[str] = msgspec.field(default_factory=list)
    recreated: set[res.Ref] = msgspec.field(default_factory=set)  # links that will be (re)made
    removed: set[res.Ref] = msgspec.field(default_factory=set)  # links that will go
    dropped_namespaces: set[str] = msgspec.field(default_factory=set)

    def add(self, change: Change) -> None:
        self.changes[change.address] = change

    def observed(self, namespace: str) -> res.NamespaceState | None:
        return self.state.namespaces.get(namespace)

    @cached_property
    def observed_routes(self) -> dict[tuple[str, tuple[str, int, int, int]], res.Route]:
        return {
            (ns.namespace.name, route.key): route
            for ns in self.state.namespaces.values()
            if ns is not None
            for route in ns.routes
        }

    @cached_property
    def observed_addresses(self) -> set[res.Address]:
        return {a for ns in self.state.namespaces.values() if ns is not None for a in ns.addresses}

    @cached_property
    def deleted_subnets(self) -> SubnetIndex[str]:
        """Per namespace, the subnets of addresses this plan deletes (computed once routes are
        planned, after every address change is known)."""
        found: SubnetIndex[str] = SubnetIndex()
        for change in self.changes.values():
            if change.action is Action.DELETE and isinstance(change.before, res.Address):
                found.add(change.before.namespace, change.before.cidr, change.address)
        return found


def diff(desired: Desired, state: res.State) -> list[Change]:
    """Every resource the lab touches, with its action (no-ops included), in a stable order."""
    work = _Diff(desired, state)
    _vms(work)
    _forget_renewed_pods(work)
    _namespaces(work)
    _links(work)
    _addresses(work)
    _routes(work)
    _sysctls(work)
    if work.conflicts:
        raise ConflictError(sorted(work.conflicts))
    return sorted(work.changes.values(), key=sort_key)


KIND_ORDER = {"vm": 0, "netns": 1, "link": 2, "address": 3, "route": 4, "sysctl": 5}
VM_RUNTIME = ("passt", "guest_state")  # what runs, not how the VM is set up


def _vms(work: _Diff) -> None:
    for name, vm in sorted(work.desired.vms.items()):
        current = work.state.vms.get(name)
        if current is None:
            work.add(Change(vm.address, Action.CREATE, None, vm, "not running"))
            continue
        if isinstance(vm, res.ClusterVm):
            assert isinstance(current, res.ClusterVm)
            work.add(_cluster_vm_change(vm, current))
            continue
        setup = tuple(
            name
            for name in vm.__struct_fields__
            if name not in VM_RUNTIME and getattr(vm, name) != getattr(current, name)
        )
        if setup:
            work.add(
                Change(
                    vm.address, Action.REPLACE, current, vm, _describe(setup, vm, current), setup
                )
            )
            continue
        down = tuple(f for f in VM_RUNTIME if getattr(current, f) != "running")
        if down:
            reason = "repair: " + ", ".join(
                f"{f.replace('_state', '')} is {getattr(current, f)}" for f in down
            )
            work.add(Change(vm.address, Action.UPDATE, current, vm, reason, down))
        else:
            work.add(Change(vm.address, Action.NOOP, current, vm))
    for name, current in sorted(work.state.vms.items()):
        made = isinstance(current, res.ClusterVm) and current.owner == work.desired.lab
        if made and name not in work.desired.vms:
            _delete(work, current, "made by this lab, no longer in the plan")  # type: ignore[arg-type]
    for name in sorted(work.state.owned.vms - work.desired.vms.keys()):
        current = work.state.vms.get(name)
        if current is not None:
            _delete(work, current, "no longer in the plan")


def _forget_renewed_pods(work: _Diff) -> None:
    """A VM created or replaced gets a new pod, so what is seen in its pod's namespace now (left
    by a start cut short, or the old pod's) is not what apply will work in: the namespace is
    found at apply time, like one that does not exist yet."""
    renewed = {
        ns.name
        for ns in work.desired.namespaces.values()
        if ns.resolve is not None
        and ns.resolve[0] == "vm"
        and work.changes.get(f"vm.{ns.resolve[1]}") is not None
        and work.changes[f"vm.{ns.resolve[1]}"].action in (Action.CREATE, Action.REPLACE)
    }
    if renewed & work.state.namespaces.keys():
        namespaces = {
            name: None if name in renewed else found
            for name, found in work.state.namespaces.items()
        }
        work.state = msgspec.structs.replace(work.state, namespaces=namespaces)


def sort_key(change: Change) -> tuple[int, str]:
    return KIND_ORDER[change.address.split(".", 1)[0]], change.address


def _namespaces(work: _Diff) -> None:
    for ns in work.desired.namespaces.values():
        observed = work.observed(ns.name)
        if observed is not None and _adopted(work, ns):
            work.conflicts.append(
                f"{ns.address}: netns {ns.netns} already exists and this lab did not make it; "
                f"passtplan will not take it over: remove it (ip netns delete {ns.netns}) or "
                "rename the lab"
            )
        elif observed is not None:
            work.add(Change(ns.address, Action.NOOP, observed.namespace, ns))
        elif ns.role is res.NamespaceRole.CREATED:
            work.add(Change(ns.address, Action.CREATE, None, ns, "not present"))
        elif ns.role is res.NamespaceRole.RESOLVED and ns.name in _namespaces_in_use(work.desired):
            how = ":".join(ns.resolve or ())
            work.add(
                Change(
                    ns.address, Action.READ, None, ns, f"found at apply time ({how})", deferred=True
                )
            )
    for name in sorted(work.state.owned.namespaces - work.desired.namespaces.keys()):
        observed = work.observed(name)
        if observed is None:
            continue
        foreign = sorted(
            link.name for link in observed.links.values() if link.name != "lo" and not link.owner
        )
        if foreign:
            work.conflicts.append(
                f"{observed.namespace.address}: netns {observed.namespace.netns} holds "
                f"{', '.join(foreign)}, which this lab did not make; passtplan will not delete "
                "them with it: move or delete them, then run again"
            )
            continue
        work.dropped_namespaces.add(name)
        _delete(work, observed.namespace, "no longer in the plan")
        _cover_contents(work, observed)


def _adopted(work: _Diff, ns: res.Namespace) -> bool:
    """A namespace the lab would create that exists without the lab's record of making it."""
    return ns.role is res.NamespaceRole.CREATED and ns.name not in work.state.owned.namespaces


def _namespaces_in_use(desired: Desired) -> set[str]:
    """Namespaces something is planned in: only those must be found at apply time."""
    groups: list[Iterable[Any]] = [
        desired.links.values(),
        desired.addresses.values(),
        desired.routes.values(),
        desired.absent_routes.values(),
        desired.sysctls.values(),
    ]
    used = {resource.namespace for group in groups for resource in group}
    return used | {ns for ns, _ in desired.absent_links}


def _cover_contents(work: _Diff, observed: res.NamespaceState) -> None:
    """What goes with a deleted namespace: listed, so the plan shows it, but not acted on."""
    by = observed.namespace.address
    for link in observed.links.values():
        if link.name != "lo":
            _remove_link(work, link, "its namespace is deleted", covered_by=by)
            if link.peer and link.peer[0] not in work.dropped_namespaces:
                # Deleted explicitly: the kernel tears a namespace down asynchronously, and the
                # end in a namespace that stays would linger a moment after it is gone.
                _remove_veth_peer(work, link, "its veth peer's namespace is deleted")
    for address in observed.addresses:
        if address.address in work.state.owned.addresses:
            _delete(work, address, "its namespace is deleted", covered_by=by)


OWNED_REASON = "made by this lab, no longer in the plan"


def _delete(
    work: _Diff, resource: res.Resource, reason: str, *, covered_by: str | None = None
) -> None:
    work.add(Change(resource.address, Action.DELETE, resource, None, reason, covered_by=covered_by))


def _cluster_vm_change(vm: res.ClusterVm, current: res.ClusterVm) -> Change:
    if current.drift:
        reason = "the live VM differs in " + ", ".join(current.drift)
        return Change(vm.address, Action.UPDATE, current, vm, reason, ("drift",))
    if current.phase != "Running":
        reason = f"its VMI is {current.phase}: wait until Running and Ready"
        return Change(vm.address, Action.UPDATE, current, vm, reason, ("phase",))
    return Change(vm.address, Action.NOOP, current, vm)


def _deferred(work: _Diff, namespace: str) -> bool:
    ns = work.desired.namespaces.get(namespace)
    return (
        ns is not None
        and ns.role is res.NamespaceRole.RESOLVED
        and work.observed(namespace) is None
    )


def _links(work: _Diff) -> None:
    desired = work.desired
    for link in sorted(desired.links.values(), key=lambda link: link.address):
        observed_ns = work.observed(link.namespace)
        current = observed_ns.links.get(link.name) if observed_ns else None
        _link_change(work, link, current)
    _cascade_recreation(work)
    _restored_links(work)
    for ns, name in sorted(desired.absent_links):
        observed_ns = work.observed(ns)
        current = observed_ns.links.get(name) if observed_ns else None
        if current is not None:
            _remove_link(work, current, "declared state: absent")
            _remove_veth_peer(work, current, VETH_PEER_REASON, covered_by=current.address)
        elif _deferred(work, ns):
            before = res.Link(ns, name)
            work.add(
                Change(
                    before.address,
                    Action.DELETE,
                    before,
                    None,
                    "declared state: absent; if present at apply time",
                    deferred=True,
                )
            )
    for observed_ns in work.state.namespaces.values():
        if observed_ns is None or observed_ns.namespace.name in work.dropped_namespaces:
            continue
        for current in observed_ns.links.values():
            if (
                current.owner == desired.owner
                and current.address not in desired.links
                and current.address not in work.changes
            ):
                _remove_link(work, current, OWNED_REASON)
                _remove_veth_peer(work, current, VETH_PEER_REASON, covered_by=current.address)


def _remove_link(
    work: _Diff, link: res.Link, reason: str, *, covered_by: str | None = None
) -> None:
    """Delete a link, and remember it is gone: its addresses and routes go with it."""
    _delete(work, link, reason, covered_by=covered_by)
    work.removed.add((link.namespace, link.name))


VETH_PEER_REASON = "its veth peer is deleted"


def _remove_veth_peer(
    work: _Diff, link: res.Link, reason: str, *, covered_by: str | None = None
) -> None:
    """Deleting one end of a veth takes the other: show it (and do not try it twice), unless
    the plan keeps that end."""
    if link.kind != "veth" or link.peer is None:
        return
    peer_ns = work.observed(link.peer[0])
    other = peer_ns.links.get(link.peer[1]) if peer_ns else None
    if other is not None and other.address not in work.desired.links:
        _remove_link(work, other, reason, covered_by=covered_by)


def _link_change(work: _Diff, link: res.Link, current: res.Link | None) -> None:
    ref = (link.namespace, link.name)
    if current is None:
        if _deferred(work, link.namespace):
            work.add(
                Change(
                    link.address, Action.CREATE, None, link, "found at apply time", deferred=True
                )
            )
            work.recreated.add(ref)
        elif link.kind is None:
            work.conflicts.append(
                f"{link.address}: the lab configures this link but does not create it (no kind), "
                "and it does not exist"
            )
        else:
            work.add(Change(link.address, Action.CREATE, None, link, "not present"))
            work.recreated.add(ref)
        return
    replace = res.replace_fields(link, current)
    if replace:
        if current.owner != link.owner or link.owner is None:
            made = f"made by {current.owner}" if current.owner else "not made by this lab"
            work.conflicts.append(
                f"{link.address}: a {current.kind or 'device'} by this name exists ({made}); "
                f"it differs in {', '.join(replace)}, and passtplan will not replace what it did "
                "not make: remove it, or declare it with state: absent"
            )
            return
        work.add(
            Change(
                link.address,
                Action.REPLACE,
                current,
                link,
                _describe(replace, link, current),
                replace,
            )
        )
        work.recreated.add(ref)
        return
    update = res.update_fields(link, current)
    if update:
        work.add(
            Change(
                link.address, Action.UPDATE, current, link, _describe(update, link, current), update
            )
        )
    else:
        work.add(Change(link.address, Action.NOOP, current, link))


def _describe(names: tuple[str, ...], want: object, have: object) -> str:
    return ", ".join(
        f"{n}: {show_value(getattr(have, n))} -> {show_value(getattr(want, n))}" for n in names
    )


def _cascade_recreation(work: _Diff) -> None:
    """Recreating a link destroys what hangs on it: the links on it (macvlans, macvtaps, vxlans
    over it), the other end of its veth; and what hangs on those, followed link by link."""
    hanging: dict[res.Ref, list[tuple[res.Link, str]]] = {}
    for link in work.desired.links.values():
        if link.parent is not None:
            hanging.setdefault(link.parent, []).append((link, "its parent"))
        if link.dev is not None:
            hanging.setdefault((link.namespace, link.dev), []).append((link, "its dev"))
        if link.kind == "veth" and link.peer is not None:
            hanging.setdefault(link.peer, []).append((link, "its veth peer"))
    pending = sorted(work.recreated)
    while pending:
        for link, what in hanging.get(pending.pop(), ()):
            ref = (link.namespace, link.name)
            if ref in work.recreated:
                continue
            planned = work.changes.get(link.address)
            if planned is None:
                continue  # in conflict: reported, never planned
            current = planned.before
            work.add(
                Change(
                    link.address,
                    Action.CREATE if current is None else Action.REPLACE,
                    current,
                    link,
                    f"{what} is recreated",
                    deferred=planned.deferred,
                )
            )
            work.recreated.add(ref)
            pending.append(ref)


def _addresses(work: _Diff) -> None:
    for address in sorted(work.desired.addresses.values(), key=lambda a: a.address):
        ref = (address.namespace, address.link)
        observed_ns = work.observed(address.namespace)
        if ref in work.recreated:
            work.add(
                Change(
                    address.address,
                    Action.CREATE,
                    None,
                    address,
                    _link_reason(work, ref),
                    deferred=_deferred(work, address.namespace),
                )
            )
        elif observed_ns is not None and address in work.observed_addresses:
            work.add(Change(address.address, Action.NOOP, address, address))
        else:
            work.add(Change(address.address, Action.CREATE, None, address, "not present"))
    for observed_ns in work.state.namespaces.values():
        if observed_ns is None or observed_ns.namespace.name in work.dropped_namespaces:
            continue
        for address in observed_ns.addresses:
            owned = address.address in work.state.owned.addresses
            if owned and address.address not in work.desired.addresses:
                if (address.namespace, address.link) in work.removed:
                    link = f"link.{address.namespace}/{address.link}"
                    _delete(work, address, "its link is deleted", covered_by=link)
                else:
                    _delete(work, address, OWNED_REASON)


def _routes(work: _Diff) -> None:
    desired = work.desired
    for route in sorted(desired.routes.values(), key=lambda r: r.address):
        work.add(_route_change(work, route))
    for route in desired.absent_routes.values():
        current = _observed_route(work, route)
        if current is not None:
            _delete(work, current, "declared state: absent")
    for observed_ns in work.state.namespaces.values():
        if observed_ns is None or observed_ns.namespace.name in work.dropped_namespaces:
            continue
        for current in observed_ns.routes:
            if current.address in work.state.owned.routes and current.address not in desired.routes:
                if current.dev is not None and (current.namespace, current.dev) in work.removed:
                    link = f"link.{current.namespace}/{current.dev}"
                    _delete(work, current, "its link is deleted", covered_by=link)
                else:
                    _delete(work, current, OWNED_REASON)
    _restored_routes(work)


def _restored_links(work: _Diff) -> None:
    """Links the lab did not make but changed (mtu, mac, master, up), no longer declared: their
    attributes given back as they were before the lab (recorded when it changed them)."""
    for address, value in sorted(work.state.owned.foreign.items()):
        if not address.startswith("link.") or address in work.desired.links:
            continue
        previous = res.link_from_record(address, value)
        observed_ns = work.observed(previous.namespace)
        current = observed_ns.links.get(previous.name) if observed_ns else None
        if current is None or previous.namespace in work.dropped_namespaces:
            continue
        changed = res.update_fields(msgspec.structs.replace(previous, kind=current.kind), current)
        if changed:
            reason = "no longer in the plan: restored to " + _describe_values(changed, previous)
            work.add(Change(address, Action.UPDATE, current, previous, reason, changed))


def _describe_values(names: tuple[str, ...], resource: object) -> str:
    return ", ".join(f"{n} {show_value(getattr(resource, n))}" for n in names)


def _restored_routes(work: _Diff) -> None:
    """Routes the lab did not make but changed or removed, no longer declared: given back as
    they were before the lab (recorded in the lab's record when it changed them)."""
    desired = work.desired
    for address, value in sorted(work.state.owned.foreign.items()):
        if not address.startswith("route.") or address in desired.routes:
            continue
        if address in desired.absent_routes:
            continue
        previous = res.route_from_record(address, value)
        observed_ns = work.observed(previous.namespace)
        if observed_ns is None or previous.namespace in work.dropped_namespaces:
            continue
        current = _observed_route(work, previous)
        reason = f"no longer in the plan: restored to {route_text(previous)}"
        if current is None:
            work.add(Change(address, Action.CREATE, None, previous, reason))
        else:
            changed = _route_differs(previous, current)
            if not changed:  # still planned, so that apply drops its entry from the record
                reason = (
                    "no longer in the plan, and as it was before the lab: dropped from the record"
                )
            work.add(Change(address, Action.UPDATE, current, previous, reason, changed))


def route_text(route: res.Route) -> str:
    """A route as `ip route` writes it, less its destination: `via 10.0.0.1 dev eth0 proto dhcp`
    (`ip route` leaves out boot, the protocol of a route added by hand; this also leaves out the
    scope a route gets when none is said)."""
    parts = [f"via {route.via}"] if route.via else []
    parts += [f"dev {route.dev}"] if route.dev else []
    if route.protocol not in (None, res.DEFAULT_ROUTE_PROTOCOL):
        parts.append(f"proto {route.protocol}")
    if route.scope not in (None, route.natural_scope):
        parts.append(f"scope {route.scope}")
    parts += ["onlink"] if route.onlink else []
    return " ".join(parts) or "as it was"


def _observed_route(work: _Diff, route: res.Route) -> res.Route | None:
    return work.observed_routes.get((route.namespace, route.key))


def _route_change(work: _Diff, route: res.Route) -> Change:
    current = _observed_route(work, route)
    dev = work.desired.route_dev(route)
    deferred = _deferred(work, route.namespace)
    if dev is not None and (route.namespace, dev) in work.recreated:
        foreign = current is not None and current.address not in work.state.owned.routes
        # A route through a link the plan removes goes with that link: nothing to give back.
        going = current is not None and (route.namespace, current.dev) in work.removed
        if current is not None and foreign and current.dev != dev and not going:
            # the route leaves through another link today: the lab replaces a route it did
            # not make, which is given back when the lab lets it go. Shown with the link it
            # will leave through, said or found from its gateway's subnet.
            want = msgspec.structs.replace(route, dev=dev)
            differs = _route_differs(want, current)
            made = _link_reason(work, (route.namespace, dev))
            reason = f"{made}; {_describe(differs, want, current)}"
            return Change(route.address, Action.UPDATE, current, want, reason, differs)
        return Change(
            route.address,
            Action.CREATE,
            None,
            route,
            _link_reason(work, (route.namespace, dev)),
            deferred=deferred,
        )
    if current is None:
        return Change(route.address, Action.CREATE, None, route, "not present", deferred=deferred)
    if _gateway_lost(work, route):
        return Change(
            route.address,
            Action.CREATE,
            None,
            route,
            "the address that reaches its gateway is removed",
        )
    differs = _route_differs(route, current)
    if differs:
        return Change(
            route.address,
            Action.UPDATE,
            current,
            route,
            _describe(differs, route, current),
            differs,
        )
    return Change(route.address, Action.NOOP, current, route)


def _link_reason(work: _Diff, ref: res.Ref) -> str:
    change = work.changes.get("link.{}/{}".format(*ref))
    if change is not None and change.action is Action.REPLACE:
        return "its link is replaced"
    return "its link is created"


def _gateway_lost(work: _Diff, route: res.Route) -> bool:
    """The kernel drops a route when the address whose subnet holds its gateway goes."""
    if route.via is None:
        return False
    return bool(work.deleted_subnets.holding(route.namespace, route.via))


def _route_differs(want: res.Route, have: res.Route) -> tuple[str, ...]:
    names = ["via"] if want.via != have.via else []
    if want.dev is not None and want.dev != have.dev:
        names.append("dev")
    if want.onlink != have.onlink:
        names.append("onlink")
    if want.protocol is not None and want.protocol != have.protocol:
        names.append("protocol")
    if want.scope is not None and want.scope != have.scope:
        names.append("scope")
    return tuple(names)


def _sysctls(work: _Diff) -> None:
    for sysctl in sorted(work.desired.sysctls.values(), key=lambda s: s.address):
        observed_ns = work.observed(sysctl.namespace)
        have = observed_ns.sysctls.get(sysctl.name) if observed_ns else None
        if have is None:
            work.add(
                Change(
                    sysctl.address,
                    Action.CREATE if observed_ns is None else Action.UPDATE,
                    None,
                    sysctl,
                    "set",
                    deferred=_deferred(work, sysctl.namespace),
                )
            )
        elif _normal(have) != _normal(sysctl.value):
            before = res.Sysctl(sysctl.namespace, sysctl.name, have)
            work.add(
                Change(
                    sysctl.address,
                    Action.UPDATE,
                    before,
                    sysctl,
                    f"value: {have} -> {sysctl.value}",
                    ("value",),
                )
            )
        else:
            work.add(Change(sysctl.address, Action.NOOP, sysctl, sysctl))
    for address, original in sorted(work.state.owned.sysctls.items()):
        if address in work.desired.sysctls:
            continue
        namespace, name = res.parse_sysctl_address(address)
        observed_ns = work.observed(namespace)
        if observed_ns is None or namespace in work.dropped_namespaces:
            continue
        have = observed_ns.sysctls.get(name)
        before = res.Sysctl(namespace, name, have or "")
        after = res.Sysctl(namespace, name, original)
        work.add(
            Change(
                address,
                Action.UPDATE,
                before,
                after,
                f"no longer in the plan: restored to {original}",
                ("value",),
            )
        )


def _normal(value: str) -> str:
    return " ".join(value.split())
