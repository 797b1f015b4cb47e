"""One netlink socket per namespace per run, opened lazily and shared by observe and apply.

An action that spans two namespaces (a veth pair, a macvlan on a parent elsewhere) is one request
on one namespace's socket that names the other namespace by a file descriptor.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from passtplan import log
from passtplan import resources as res
from passtplan.errors import PasstplanError
from passtplan.providers import kernel, rtnl

if TYPE_CHECKING:
    from pyroute2 import IPRoute

OWN_NAMESPACE = Path("/proc/self/ns/net")
T = TypeVar("T")


class ObserveError(PasstplanError):
    """The live state could not be read."""


def namespace_file(ns: res.Namespace) -> Path | None:
    """Where the namespace can be opened now, or None when it does not exist (yet)."""
    if ns.role is res.NamespaceRole.HOST:
        return OWN_NAMESPACE
    if ns.role is res.NamespaceRole.RESOLVED and ns.resolve is not None:
        way, value = ns.resolve
        if way == "pid":
            path = Path(f"/proc/{value}/ns/net")
            return path if path.exists() else None
        if way == "path":
            return Path(value) if Path(value).exists() else None
    assert ns.netns is not None
    path = kernel.netns_path(ns.netns)
    return path if kernel.is_namespace(path) else None


class Handle:
    """A namespace's netlink socket, confined to a thread of its own.

    pyroute2 0.9 keeps its event loop and transport per thread, so an IPRoute must be used from
    the thread that made it; every call for this namespace runs on that thread, which also
    serializes them without locks. Different namespaces work in parallel.
    """

    def __init__(self, namespace: res.Namespace, fd: int | None) -> None:
        self.namespace = namespace
        self.fd = fd  # None: this process's own namespace
        self.nsids: dict[int, str] | None = None  # netnsid as seen from here -> lab namespace
        self._ident: int | None = None  # the handle's thread, started on first use
        self._thread = ThreadPoolExecutor(
            1, thread_name_prefix=f"netns-{namespace.name}", initializer=self._started
        )
        # The namespace's one netlink socket: the rtnl codec uses it directly, and pyroute2,
        # when an action needs it, drives the same socket (no multicast groups: no events).
        self.sock = kernel.netlink_socket(fd)
        rtnl.name_socket(self.sock, namespace.name)
        self._ipr: IPRoute | None = None

    @property
    def ipr(self) -> IPRoute:
        if self._ipr is None:
            from pyroute2 import IPRoute

            ipr = self.run(lambda: IPRoute(use_socket=self.sock, groups=0))
            traced = log.TracedCalls(ipr, f"pyroute2 in {self.namespace.name}:")
            self._ipr = cast("IPRoute", traced) if log.is_on() else ipr
        return self._ipr

    def _started(self) -> None:
        self._ident = threading.get_ident()

    def run(self, work: Callable[[], T]) -> T:
        """Run `work` on this namespace's thread and return what it returns (or raise)."""
        if threading.get_ident() == self._ident:
            return work()
        return self._thread.submit(work).result()

    def close(self) -> None:
        try:
            if self._ipr is not None:
                self.run(self._ipr.close)
            self.sock.close()
        finally:
            self._thread.shutdown(wait=True)
            if self.fd is not None:
                os.close(self.fd)


class Session:
    def __init__(self) -> None:
        self._handles: dict[str, Handle] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, ns: res.Namespace) -> Handle | None:
        """The handle of a namespace, opened on first use; None if it does not exist."""
        with self._lock:
            handle = self._handles.get(ns.name)
            if handle is not None:
                return handle
            path = namespace_file(ns)
            if path is None:
                return None
            fd = None if path == OWN_NAMESPACE else kernel.open_netns(path)
            try:
                handle = Handle(ns, fd)
            except OSError as exc:
                if fd is not None:
                    os.close(fd)
                raise ObserveError(f"cannot open namespace {ns.name} ({path}): {exc}") from None
            self._handles[ns.name] = handle
            return handle

    def handles(self) -> list[Handle]:
        return list(self._handles.values())

    def forget(self, name: str) -> None:
        """Close a namespace's handle (before deleting it: an open fd keeps it alive)."""
        with self._lock:
            handle = self._handles.pop(name, None)
        if handle is not None:
            handle.close()
        for other in self._handles.values():
            other.nsids = None

    def close(self) -> None:
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            handle.close()

    def nsid_map(
        self, handle: Handle, wanted: set[int], likely: Iterable[str] = ()
    ) -> dict[int, str]:
        """How `handle`'s namespace numbers the others (IFLA_LINK_NETNSID), by lab name: the
        `wanted` ids are looked up among the open namespaces, the `likely` ones first, until
        all are found (a spoke's one peer costs one question, not one per namespace)."""
        known = handle.nsids if handle.nsids is not None else {}
        handle.nsids = known
        missing = wanted - known.keys()
        if not missing:
            return known
        by_name = {other.namespace.name: other for other in self.handles() if other is not handle}
        first = [name for name in dict.fromkeys(likely) if name in by_name]
        order = first + sorted(by_name.keys() - set(first) - set(known.values()))
        for name in order:
            if not missing:
                break
            nsid = self._netnsid(handle, by_name[name])
            if nsid is not None:
                known[nsid] = name
                missing.discard(nsid)
        return known

    @staticmethod
    def _netnsid(handle: Handle, other: Handle) -> int | None:
        if other.fd is not None:
            return rtnl.netnsid(handle.sock, other.fd)
        own = os.open(OWN_NAMESPACE, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return rtnl.netnsid(handle.sock, own)
        finally:
            os.close(own)
