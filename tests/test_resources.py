"""The resources' own rules: attributes read back from the journal and the lab's records, and
which vxlan address changes the kernel refuses in place."""

from __future__ import annotations

import json

import pytest

from passtplan import resources as res
from passtplan.errors import PasstplanError

EVERY_KIND: list[res.Resource] = [
    res.Namespace("pod", None, res.NamespaceRole.RESOLVED, ("vm", "v1")),
    res.Namespace("gw", "g-gw", res.NamespaceRole.CREATED),
    res.Namespace("old", None, res.NamespaceRole.RESOLVED, ("path", "/run/netns/a:b")),
    res.Link("a", "m0", "macvlan", up=True, mtu=1400, parent=("host", "eth0"), mode="bridge"),
    res.Link("a", "v0", "veth", peer=("b-1", "v0"), owner="passtplan:g", master=""),
    res.Address("a", "v0", "10.0.0.1/24"),
    res.Route("a", "default", 6, via="fe80::1", dev="v0", metric=100, protocol="static"),
    res.Sysctl("a", "net.ipv4.ip_forward", "1"),
    res.Vm("v1", "g.1", None, "10.8.0.5/32", "169.254.1.1", "22", "none", "ssh", node="host"),
    res.ClusterVm("v2", "default", "binding", node="n1", drift=("spec.memory", "spec.cpu")),
]


@pytest.mark.parametrize("resource", EVERY_KIND, ids=lambda r: r.address)
def test_attributes_read_back_from_the_journal_are_the_resource(resource: res.Resource) -> None:
    journal = json.loads(json.dumps(res.attributes(resource)))  # tuples come back as lists
    assert res.from_attributes(resource.address, journal) == resource


def test_a_link_read_back_leaves_out_what_was_only_observed() -> None:
    found = res.Link("a", "v0", "veth", peer=("b", "v0"), ifindex=7)
    journal = json.dumps(res.attributes(found))
    assert res.link_from_record(found.address, journal) == res.Link(
        "a", "v0", "veth", peer=("b", "v0")
    )


def test_a_record_of_another_link_is_refused() -> None:
    record = json.dumps(res.attributes(res.Link("a", "v1", "bridge")))
    with pytest.raises(PasstplanError, match=r"^link\.a/v0: the lab's record of this link"):
        res.link_from_record("link.a/v0", record)


ROUTE = res.Route("a", "10.8.0.0/16", 4, via="10.0.0.9")


def test_a_route_record_reads_back() -> None:
    record = json.dumps(res.attributes(ROUTE))
    assert res.route_from_record(ROUTE.address, record) == ROUTE


def test_a_malformed_route_record_says_how_to_recover() -> None:
    with pytest.raises(PasstplanError) as caught:
        res.route_from_record(ROUTE.address, "{not json")
    assert str(caught.value) == (
        "route.a[10.8.0.0/16]: the lab's record of this route before the lab is malformed; "
        "remove the lab's owned.json, then restore the route by hand"
    )


def test_a_record_of_another_route_says_which() -> None:
    other = res.Route("a", "10.9.0.0/16", 4)
    with pytest.raises(PasstplanError) as caught:
        res.route_from_record(ROUTE.address, json.dumps(res.attributes(other)))
    assert str(caught.value) == (
        "route.a[10.8.0.0/16]: the lab's record holds another route (route.a[10.9.0.0/16]); "
        "remove the lab's owned.json, then restore the route by hand"
    )


def _vxlan(
    remote: str | None = None, group: str | None = None, local: str | None = None
) -> res.Link:
    return res.Link("a", "vx0", "vxlan", vni=42, remote=remote, group=group, local=local)


@pytest.mark.parametrize(
    ("have", "want", "replaced"),
    [
        (_vxlan(remote="10.0.0.1"), _vxlan(remote="10.0.0.2"), ()),  # same family: in place
        (_vxlan(remote="10.0.0.1"), _vxlan(remote="fd00::2"), ("remote",)),
        (_vxlan(remote="fd00::1"), _vxlan(remote="10.0.0.2"), ("remote",)),
        (_vxlan(group="ff05::1"), _vxlan(group="ff05::2"), ()),
        (_vxlan(group="239.1.1.1"), _vxlan(group="ff05::2"), ("group",)),
        (_vxlan(local="10.0.0.1"), _vxlan(local="fd00::1"), ("local",)),
        (_vxlan(local="fd00::1"), _vxlan(local="fd00::2"), ()),
        (_vxlan(), _vxlan(remote="fd00::2"), ("remote",)),  # a vxlan with none is IPv4
        (_vxlan(), _vxlan(remote="10.0.0.2"), ()),
        (_vxlan(remote="fd00::1"), _vxlan(), ()),  # nothing written: nothing to change
        # the family is the link's, from whichever address it has, remote first
        (_vxlan(group="ff05::1", local="fd00::9"), _vxlan(local="fd00::1"), ()),
        (_vxlan(remote="fd00::1", local="fd00::9"), _vxlan(local="fd00::1"), ()),
    ],
)
def test_a_vxlan_address_of_another_family_replaces(
    have: res.Link, want: res.Link, replaced: tuple[str, ...]
) -> None:
    assert res.replace_fields(want, have) == replaced
    updated = tuple(n for n in ("remote", "group", "local") if n in res.update_fields(want, have))
    assert updated == tuple(n for n in ("remote", "group", "local") if getattr(want, n))
