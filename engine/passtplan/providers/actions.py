"""Carry out one change on the kernel. Every action is idempotent: an object that is already as
wanted (made by a veth's other end, removed with its namespace) is not an error.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from passtplan import resources as res
from passtplan.changes import Action, Change
from passtplan.desired import Desired
from passtplan.errors import PasstplanError
from passtplan.providers import kernel, rtnl
from passtplan.providers.observe import read_sysctls, sysctl_path
from passtplan.providers.ownership import OwnershipStore
from passtplan.providers.resolve import attach, find_pod_netns
from passtplan.providers.session import OWN_NAMESPACE, Handle, Session, namespace_file
from passtplan.providers.vm_kubevirt import ClusterContext, vmi_address
from passtplan.providers.vm_local import LocalVmDriver


class ApplyError(PasstplanError):
    def __init__(self, address: str, message: str) -> None:
        self.address = address
        super().__init__(f"{address}: {message}")


class Applier:
    """Applies changes through one session; the apply walker calls it from worker threads."""

    def __init__(
        self,
        session: Session,
        desired: Desired,
        store: OwnershipStore,
        cluster: ClusterContext | None = None,
    ) -> None:
        self.session = session
        self.desired = desired
        self.store = store
        self.cluster = cluster
        self._indexes: dict[tuple[str, str], int] = {}

    def __call__(self, change: Change) -> str:
        if change.action is Action.NOOP:
            return "unchanged"
        if change.covered_by is not None:
            self._release(change)
            return f"removed with {change.covered_by}"
        kind = change.address.split(".", 1)[0]
        try:
            handler = getattr(self, f"_{kind}")
            return str(handler(change))
        except NetlinkError as exc:
            raise ApplyError(
                change.address, f"{os.strerror(exc.code)} (netlink error {exc.code})"
            ) from None
        except OSError as exc:
            raise ApplyError(change.address, exc.strerror or str(exc)) from None

    # --- sandbox VMs -------------------------------------------------------------------------

    def _vm(self, change: Change) -> str:
        if isinstance(change.resource, res.ClusterVm):
            return self._cluster_vm(change)
        driver = LocalVmDriver(self.store)
        if change.action in (Action.DELETE, Action.REPLACE):
            before = change.before
            assert isinstance(before, res.Vm)
            for handle in self.session.handles():
                if handle.namespace.netns == before.launcher:
                    self.session.forget(handle.namespace.name)  # an open fd keeps it alive
            note = driver.delete(before)
            if change.action is Action.DELETE:
                return note
        vm = change.after
        assert isinstance(vm, res.Vm)
        if change.action is Action.UPDATE:
            assert isinstance(change.before, res.Vm)
            return driver.repair(vm, change.before)
        node = self.desired.namespaces.get(vm.node) if vm.node else None
        return driver.create(vm, node.netns if node else None)

    def _cluster_vm(self, change: Change) -> str:
        if self.cluster is None:
            raise ApplyError(change.address, "a VM on a cluster needs a connection to it")
        vm = change.resource
        assert isinstance(vm, res.ClusterVm)
        cluster = self.cluster.cluster
        if change.action is Action.DELETE:
            cluster.delete_vm(vm.kube_namespace, vm.name)
            return f"deleted VirtualMachine {vm.kube_namespace}/{vm.name}"
        cluster.apply_vm(vm.kube_namespace, self.cluster.manifests[vm.name], self.desired.lab)
        vmi = cluster.wait_ready(
            vm.kube_namespace,
            vm.name,
            lambda text: print(f"  {change.address}: {text}", flush=True),
        )
        node = vmi.get("status", {}).get("nodeName")
        return f"applied; Running and Ready on {node}, IP {vmi_address(vmi)}"

    def _find_on_node(self, ns: res.Namespace) -> str:
        """A namespace of a pod: ask the cluster for the pod, find it on this node, attach it."""
        assert ns.resolve is not None and ns.netns is not None
        if self.cluster is None:
            raise ApplyError(ns.address, f"resolve: {{{ns.resolve[0]}: ...}} needs a cluster")
        pod = self.cluster.pod_of(ns.resolve)
        if pod.node is not None and pod.node != self.cluster.node:
            raise ApplyError(
                ns.address,
                f"pod {pod.namespace}/{pod.name} runs on node {pod.node}, not on this node "
                f"({self.cluster.node}): run passtplan on {pod.node}",
            )
        found = find_pod_netns(pod, self.cluster.paths)
        attach(ns.netns, found.path)
        return (
            f"found pod {pod.namespace}/{pod.name} by its {found.strategy}; attached as {ns.netns}"
        )

    # --- namespaces -------------------------------------------------------------------------

    def _netns(self, change: Change) -> str:
        ns = change.resource
        assert isinstance(ns, res.Namespace)
        if change.action is Action.CREATE:
            assert ns.netns is not None
            if kernel.exists(ns.netns):
                raise ApplyError(change.address, f"netns {ns.netns} already exists")
            kernel.create(ns.netns)
            self.store.claim("namespaces", ns.name)
            self.session.open(ns)
            return f"created netns {ns.netns}"
        if change.action is Action.DELETE:
            assert ns.netns is not None
            self.session.forget(ns.name)
            kernel.remove(ns.netns)
            self.store.release_namespace(ns.name)
            return f"deleted netns {ns.netns}"
        if change.action is Action.READ:
            note = "found"
            if namespace_file(ns) is None and ns.resolve and ns.resolve[0] in ("vm", "pod"):
                note = self._find_on_node(ns)
            if namespace_file(ns) is None or self.session.open(ns) is None:
                how = ":".join(ns.resolve or ())
                raise ApplyError(change.address, f"cannot find the namespace ({how})")
            return note
        raise ApplyError(change.address, f"cannot {change.action} a namespace")

    def _handle(self, namespace: str) -> Handle:
        ns = self.desired.namespaces.get(namespace) or res.Namespace(
            namespace, None, res.NamespaceRole.CREATED
        )
        handle = self.session.open(ns)
        if handle is None:
            raise ApplyError(f"netns.{namespace}", "the namespace does not exist")
        return handle

    @contextmanager
    def _netns_fd(self, handle: Handle) -> Iterator[int]:
        """A namespace fd to hand the kernel (IFLA_NET_NS_FD), also for our own namespace."""
        if handle.fd is not None:
            yield handle.fd
            return
        fd = os.open(OWN_NAMESPACE, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)

    # --- links ------------------------------------------------------------------------------

    def _index(self, handle: Handle, name: str) -> int | None:
        """The ifindex of a link, cached until a link is made or removed anywhere (removing one
        veth end or a macvlan's parent takes other links with it)."""
        key = (handle.namespace.name, name)
        index = self._indexes.get(key)
        if index is None:
            index = rtnl.link_index(handle.sock, name)
            if index is not None:
                self._indexes[key] = index
        return index

    def _link(self, change: Change) -> str:
        self._indexes.clear()
        try:
            return self._link_change(change)
        finally:
            self._indexes.clear()

    def _link_change(self, change: Change) -> str:
        if change.action is Action.DELETE:
            return self._delete_link(change)
        link = change.after
        assert isinstance(link, res.Link)
        if change.action is Action.REPLACE:
            self._delete_link(change)
            self._indexes.clear()
        if change.deferred and change.action is Action.CREATE and self._exists(link):
            # Planned before its namespace could be seen: re-checked now that it can.
            self._configure(
                link,
                tuple(f for f in ("up", "mtu", "mac", "master") if getattr(link, f) is not None),
                own=True,
            )
            return "already present when its namespace was found: configured"
        if change.action in (Action.CREATE, Action.REPLACE):
            made = self._create_link(link)
            self._configure(
                link,
                tuple(f for f in ("up", "mtu", "mac", "master") if getattr(link, f) is not None),
                own=True,
            )
            return made
        self._configure(link, change.changed, own=False)
        return f"set {', '.join(change.changed)}"

    def _exists(self, link: res.Link) -> bool:
        handle = self._handle(link.namespace)
        return handle.run(lambda: self._index(handle, link.name)) is not None

    def _delete_link(self, change: Change) -> str:
        link = change.before
        assert isinstance(link, res.Link)
        handle = self._handle(link.namespace)

        def delete() -> str:
            index = self._index(handle, link.name)
            if index is None:
                return "already gone"
            try:
                handle.ipr.link("del", index=index)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise
            return "deleted"

        return handle.run(delete)

    def _create_link(self, link: res.Link) -> str:
        handle = self._handle(link.namespace)
        if link.kind == "veth":
            return self._create_veth(handle, link)
        if link.kind == "macvlan":
            return self._create_macvlan(handle, link)
        handle.run(lambda: handle.ipr.link("add", ifname=link.name, kind=link.kind))
        return f"created {link.kind}"

    def _create_veth(self, handle: Handle, link: res.Link) -> str:
        """Both ends in one request; the graph runs the other end's action after this one."""
        assert link.peer is not None
        peer_ns, peer_name = link.peer
        peer = self._handle(peer_ns)

        def create(peer_fd: int) -> str:
            if self._index(handle, link.name) is not None:
                return "created with its peer"
            spec: dict[str, Any] = {"ifname": peer_name}
            if peer is not handle:
                spec["net_ns_fd"] = peer_fd
            handle.ipr.link("add", ifname=link.name, kind="veth", peer=spec)
            return f"created veth pair with {peer_ns}/{peer_name}"

        with self._netns_fd(peer) as peer_fd:
            return handle.run(lambda: create(peer_fd))

    def _create_macvlan(self, handle: Handle, link: res.Link) -> str:
        """Made on its parent's socket and placed in its own namespace in the same request."""
        assert link.parent is not None
        parent_ns, parent_name = link.parent
        parent = self._handle(parent_ns)

        def create(target_fd: int) -> None:
            parent_index = self._index(parent, parent_name)
            if parent_index is None:
                raise ApplyError(link.address, f"parent {parent_ns}/{parent_name} does not exist")
            args: dict[str, Any] = {"ifname": link.name, "kind": "macvlan", "link": parent_index}
            args["macvlan_mode"] = link.mode or "vepa"
            if parent is not handle:
                args["net_ns_fd"] = target_fd
            parent.ipr.link("add", **args)

        with self._netns_fd(handle) as target_fd:
            parent.run(lambda: create(target_fd))
        return f"created macvlan on {parent_ns}/{parent_name} ({link.mode})"

    def _configure(self, link: res.Link, fields: tuple[str, ...], *, own: bool) -> None:
        handle = self._handle(link.namespace)

        def configure() -> None:
            index = self._index(handle, link.name)
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
                master = self._index(handle, link.master) if link.master else 0
                if master is None:
                    raise ApplyError(link.address, f"master {link.master} does not exist")
                args["master"] = master
            if args:
                handle.ipr.link("set", index=index, **args)
            if "up" in fields and link.up is not None:
                handle.ipr.link("set", index=index, state="up" if link.up else "down")

        handle.run(configure)

    # --- addresses and routes: through the rtnl codec, many per write ----------------------

    def batch(self, changes: list[Change]) -> list[tuple[Change, str | None, str | None]]:
        """Apply address or route changes of one namespace together: (change, note, error)."""
        namespace = changes[0].resource.namespace  # type: ignore[union-attr]
        handle = self._handle(namespace)
        return handle.run(lambda: self._batch_on(handle, changes))

    def _batch_on(
        self, handle: Handle, changes: list[Change]
    ) -> list[tuple[Change, str | None, str | None]]:
        results: dict[int, tuple[str | None, str | None]] = {}
        requests: list[bytes] = []
        sent: list[int] = []
        for position, change in enumerate(changes):
            if change.covered_by is not None:
                self._release(change)
                results[position] = (f"removed with {change.covered_by}", None)
                continue
            try:
                request = self._request(handle, change)
            except ApplyError as exc:
                results[position] = (None, str(exc))
                continue
            if request is None:
                self._release(change)
                results[position] = ("already gone", None)
                continue
            requests.append(request)
            sent.append(position)
        for position, code in zip(sent, rtnl.transact(handle.sock, requests), strict=True):
            results[position] = self._settle(changes[position], code)
        return [(change, *results[i]) for i, change in enumerate(changes)]

    def _request(self, handle: Handle, change: Change) -> bytes | None:
        resource = change.resource
        deleting = change.action is Action.DELETE
        if isinstance(resource, res.Address):
            index = self._index(handle, resource.link)
            if index is None:
                if deleting:
                    return None
                raise ApplyError(change.address, f"link {resource.link} does not exist")
            return rtnl.address_request(not deleting, index, resource.cidr)
        assert isinstance(resource, res.Route)
        oif = 0
        if resource.dev is not None and not deleting:
            found = self._index(handle, resource.dev)
            if found is None:
                raise ApplyError(change.address, f"link {resource.dev} does not exist")
            oif = found
        dst, _, dst_len = resource.to.partition("/")
        spec = rtnl.RouteSpec(
            family=resource.family,
            dst=None if resource.to == "default" else dst,
            dst_len=int(dst_len or 0),
            table=resource.table,
            metric=resource.metric,
            gateway=resource.via,
            oif=oif,
            onlink=resource.onlink,
        )
        return rtnl.route_request(not deleting, spec)

    def _settle(self, change: Change, code: int) -> tuple[str | None, str | None]:
        kind = "addresses" if change.address.startswith("address.") else "routes"
        if change.action is Action.DELETE:
            if code and code not in rtnl.IGNORED_ON_DELETE:
                return None, f"{change.address}: {os.strerror(code)}"
            self.store.release(kind, change.address)
            return ("deleted" if code == 0 else "already gone"), None
        if code == errno.EEXIST and kind == "addresses":
            return "already present", None
        if code:
            return None, f"{change.address}: {os.strerror(code)} (netlink error {code})"
        if change.action is Action.CREATE:
            self.store.claim(kind, change.address)
        return ("replaced" if change.action is Action.UPDATE else "added"), None

    def _single(self, change: Change) -> str:
        ((_, note, error),) = self.batch([change])
        if error is not None:
            raise ApplyError(change.address, error.split(": ", 1)[-1])
        return note or ""

    _address = _single
    _route = _single

    # --- sysctls ----------------------------------------------------------------------------

    def _sysctl(self, change: Change) -> str:
        sysctl = change.after
        assert isinstance(sysctl, res.Sysctl)
        handle = self._handle(sysctl.namespace)
        ns = self.desired.namespaces.get(sysctl.namespace)
        if change.action is not Action.DELETE and (
            ns is None or ns.role is not res.NamespaceRole.CREATED
        ):
            before = read_sysctls(handle, [sysctl.name]).get(sysctl.name)
            if before is not None:
                self.store.remember_sysctl(sysctl.address, before)
        path = sysctl_path(sysctl.name)
        kernel.run_inside(handle.fd, lambda: path.write_text(sysctl.value + "\n"))
        if change.action is Action.DELETE:
            self.store.forget_sysctl(sysctl.address)
            return f"restored {sysctl.value}"
        return f"set {sysctl.value}"

    def _release(self, change: Change) -> None:
        kind = change.address.split(".", 1)[0]
        if kind == "address":
            self.store.release("addresses", change.address)
        elif kind == "route":
            self.store.release("routes", change.address)
