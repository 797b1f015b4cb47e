"""What every resource family's actions share during one apply: the session's namespace
handles, the desired state, the ownership record, the cluster, the VMs' manifests, and an
ifindex cache."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import msgspec

from passtplan import resources as res
from passtplan.desired import Desired
from passtplan.errors import PasstplanError
from passtplan.lang.manifest import VmManifest
from passtplan.providers import rtnl
from passtplan.providers.ownership import OwnershipStore
from passtplan.providers.session import OWN_NAMESPACE, Handle, Session

if TYPE_CHECKING:
    from passtplan.providers.vm_kubevirt import ClusterContext


class ApplyError(PasstplanError):
    def __init__(self, address: str, message: str) -> None:
        self.address = address
        super().__init__(f"{address}: {message}")


class ApplyContext(msgspec.Struct):
    session: Session
    desired: Desired
    store: OwnershipStore
    cluster: ClusterContext | None = None
    manifests: Mapping[str, VmManifest] = msgspec.field(
        default_factory=dict
    )  # a sandbox VM's guest
    _indexes: dict[tuple[str, str], int] = msgspec.field(default_factory=dict)

    def handle(self, namespace: str) -> Handle:
        ns = self.desired.namespaces.get(namespace) or res.Namespace(
            namespace, None, res.NamespaceRole.CREATED
        )
        handle = self.session.open(ns)
        if handle is None:
            raise ApplyError(f"netns.{namespace}", "the namespace does not exist")
        return handle

    def index(self, handle: Handle, name: str) -> int | None:
        """The ifindex of a link, cached until a link is made or removed anywhere (removing one
        veth end or a macvlan's parent takes other links with it)."""
        key = (handle.namespace.name, name)
        index = self._indexes.get(key)
        if index is None:
            index = rtnl.link_index(handle.sock, name)
            if index is not None:
                self._indexes[key] = index
        return index

    def links_changed(self) -> None:
        self._indexes.clear()

    @contextmanager
    def netns_fd(self, handle: Handle) -> Iterator[int]:
        """A namespace fd to hand the kernel (IFLA_NET_NS_FD), also for our own namespace."""
        if handle.fd is not None:
            yield handle.fd
            return
        fd = os.open(OWN_NAMESPACE, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)
