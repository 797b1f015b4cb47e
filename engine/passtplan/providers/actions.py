"""Carry out one change on the kernel or the cluster, by handing it to its resource family.
Every action is idempotent: an object that is already as wanted (made by a veth's other end,
removed with its namespace) is not an error.
"""

from __future__ import annotations

import os
from typing import assert_never

from pyroute2.netlink.exceptions import NetlinkError

from passtplan import resources as res
from passtplan.changes import Action, Change
from passtplan.providers import ipconfig, link, netns, sysctl, vm
from passtplan.providers.context import ApplyContext, ApplyError


class Applier:
    """Applies changes through one session; the apply walker calls it from worker threads."""

    def __init__(self, ctx: ApplyContext) -> None:
        self.ctx = ctx

    def __call__(self, change: Change) -> str:
        if change.action is Action.NOOP:
            return "unchanged"
        if change.covered_by is not None:
            self._forget(change)
            return f"removed with {change.covered_by}"
        try:
            return self._dispatch(change)
        except NetlinkError as exc:
            raise ApplyError(
                change.address, f"{os.strerror(exc.code)} (netlink error {exc.code})"
            ) from None
        except OSError as exc:
            raise ApplyError(change.address, exc.strerror or str(exc)) from None

    def _dispatch(self, change: Change) -> str:
        resource = change.resource
        match resource:
            case res.Namespace():
                return netns.apply(self.ctx, change)
            case res.Link():
                return link.apply(self.ctx, change)
            case res.Address() | res.Route():
                return ipconfig.apply_one(self.ctx, change)
            case res.Sysctl():
                return sysctl.apply(self.ctx, change)
            case res.Vm() | res.ClusterVm():
                return vm.apply(self.ctx, change)
            case _:
                assert_never(resource)

    def _forget(self, change: Change) -> None:
        """What went with its namespace or veth peer is no longer the lab's."""
        if isinstance(change.resource, res.Link):
            self.ctx.store.release("links", change.address)
        else:
            ipconfig.release(self.ctx, change)

    def batch(self, changes: list[Change]) -> list[ipconfig.Result]:
        """Address or route changes of one namespace, applied together."""
        return ipconfig.apply_batch(self.ctx, changes)
