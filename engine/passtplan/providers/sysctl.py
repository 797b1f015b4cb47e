"""The sysctl family: per-namespace kernel settings, read and written from inside the namespace
(they follow the thread's network namespace). A lab that sets one in a namespace it did not make
records the value from before, and gives it back when it no longer sets it."""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from pathlib import Path

from passtplan import resources as res
from passtplan.changes import Change
from passtplan.providers import kernel
from passtplan.providers.context import ApplyContext
from passtplan.providers.session import Handle


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls(handle: Handle, names: Iterable[str]) -> dict[str, str]:
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


def depends_on(sysctl: res.Sysctl) -> Iterator[str]:
    yield f"netns.{sysctl.namespace}"


def apply(ctx: ApplyContext, change: Change) -> str:
    sysctl = change.after
    assert isinstance(sysctl, res.Sysctl)
    handle = ctx.handle(sysctl.namespace)
    restoring = sysctl.address not in ctx.desired.sysctls
    ns = ctx.desired.namespaces.get(sysctl.namespace)
    if not restoring and (ns is None or ns.role is not res.NamespaceRole.CREATED):
        before = read_sysctls(handle, [sysctl.name]).get(sysctl.name)
        if before is not None:
            ctx.store.remember_sysctl(sysctl.address, before)
    path = sysctl_path(sysctl.name)
    kernel.run_inside(handle.fd, lambda: path.write_text(sysctl.value + "\n"))
    if restoring:
        ctx.store.forget_sysctl(sysctl.address)
        return f"restored {sysctl.value}"
    return f"set {sysctl.value}"
