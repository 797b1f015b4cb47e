"""What each resource waits for: its family's depends_on, chosen by an exhaustive match over the
resource union. The action graph and the lab's cycle check both ask here, so the rules are
written once, in the families."""

from __future__ import annotations

from collections.abc import Iterator
from typing import assert_never

from passtplan import resources as res
from passtplan.desired import Desired
from passtplan.providers import ipconfig, link, netns, sysctl, vm


def dependencies(resource: res.Resource, desired: Desired) -> Iterator[str]:
    """Addresses of what must exist before `resource` can: each family's own rule."""
    match resource:
        case res.Namespace():
            return netns.depends_on(resource)
        case res.Link():
            return link.depends_on(resource)
        case res.Address():
            return ipconfig.address_depends_on(resource)
        case res.Route():
            return ipconfig.route_depends_on(resource, desired)
        case res.Sysctl():
            return sysctl.depends_on(resource)
        case res.Vm() | res.ClusterVm():
            return vm.depends_on(resource)
        case _:
            assert_never(resource)
