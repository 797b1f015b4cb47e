from __future__ import annotations

import ipaddress
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from passtplan.cycles import find_cycles
from passtplan.lang.models import KIND_FIELDS, Lab
from passtplan.lang.semantics import check_lab
from passtplan.lang.types import (
    LinkKind,
    parse_interface,
    route_protocol_name,
    route_protocol_number,
)


def lab(namespaces: dict[str, Any], **extra: Any) -> Lab:
    return Lab.model_validate(
        {
            "apiVersion": "passtplan/v1alpha1",
            "kind": "Lab",
            "metadata": {"name": "t"},
            "namespaces": namespaces,
            **extra,
        }
    )


def messages(value: Lab) -> list[str]:
    return [f.message for f in check_lab(value)]


def test_cycles_are_deterministic_and_start_at_the_smallest_node() -> None:
    graph = {"c": ["a"], "a": ["b"], "b": ["c"], "x": ["x"], "y": ["z"]}
    assert find_cycles(graph) == [["a", "b", "c"], ["x"]]
    assert find_cycles(dict(reversed(graph.items()))) == [["a", "b", "c"], ["x"]]


def test_cycle_search_handles_long_chains_without_recursion() -> None:
    chain = {f"n{i:05}": [f"n{i + 1:05}"] for i in range(20_000)}
    chain["n20000"] = ["n00000"]
    (cycle,) = find_cycles(chain)
    assert len(cycle) == 20_001


def test_one_veth_end_may_be_implied() -> None:
    assert messages(lab({"a": {"links": {"v0": {"kind": "veth", "peer": "b/v0"}}}, "b": {}})) == []


def test_onlink_gateway_is_accepted() -> None:
    calico = {
        "links": {"eth0": {"kind": "veth", "peer": "n/p", "addresses": ["10.233.70.4/32"]}},
        "routes": [{"to": "default", "via": "169.254.1.1", "dev": "eth0", "onlink": True}],
    }
    assert messages(lab({"pod": calico, "n": {}})) == []
    del calico["routes"][0]["onlink"]
    assert "not in the subnet" in messages(lab({"pod": calico, "n": {}}))[0]


def test_links_of_the_node_need_no_declaration_on_a_real_node_only() -> None:
    value = lab(
        {
            "host": {},
            "pod": {"links": {"mv": {"kind": "macvlan", "parent": "host/eth9"}}},
        }
    )
    # On a node, host/eth9 may exist; with --sandbox, host is built and eth9 would not.
    assert messages(value) == ["link 'eth9' is not declared in namespace 'host' with --sandbox"]


def test_resolved_namespace_routes_through_undeclared_links() -> None:
    value = lab(
        {
            "pod": {
                "resolve": {"pid": 1},
                "routes": [{"to": "default", "via": "10.0.0.1", "dev": "eth0"}],
            }
        }
    )
    assert messages(value) == []


@pytest.mark.parametrize("source", ["vm/x", "nowhere"])
def test_check_sources_must_exist(source: str) -> None:
    value = lab({"a": {}}, checks=[{"from": source, "ping": "10.0.0.1"}])
    assert len(messages(value)) == 1


def test_check_from_sandbox_namespace_is_fine() -> None:
    value = lab(
        {"a": {}},
        checks=[{"from": "office", "ping": "10.0.0.1"}],
        sandbox={"namespaces": {"office": {}}},
    )
    assert messages(value) == []


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1/24",
        "255.255.255.255/32",
        "0.0.0.0/0",
        "192.168.001.1/24",
        "10.0.0.1/08",
        "10.0.0.256/24",
        "10.0.0.1/33",
        "10.0.0.1/255.255.0.0",
        "fd00::1/64",
        "1.2.3.4/7",
    ],
)
def test_the_fast_ipv4_reader_agrees_with_ipaddress(address: str) -> None:
    try:
        expected: object = ipaddress.ip_interface(address)
    except ValueError:
        expected = ValueError
    try:
        got: object = parse_interface(address)
    except ValueError:
        got = ValueError
    assert got == expected
    assert type(got) is type(expected)


def _routes(*routes: dict[str, Any]) -> Lab:
    links = {"eth0": {"kind": "veth", "peer": "n/p", "addresses": ["10.0.0.2/24", "fd00::2/64"]}}
    return lab({"a": {"links": links, "routes": list(routes)}, "n": {}})


def test_an_ipv4_and_an_ipv6_default_live_side_by_side() -> None:
    v4 = {"to": "default", "via": "10.0.0.1"}
    assert messages(_routes(v4, {"to": "default", "via": "fd00::1"})) == []
    assert messages(_routes(v4, {"to": "::/0", "via": "fd00::1"})) == []


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"to": "default", "via": "10.0.0.1"}, {"to": "default", "via": "10.0.0.3"}),
        ({"to": "default", "via": "10.0.0.1"}, {"to": "0.0.0.0/0", "via": "10.0.0.3"}),
        ({"to": "default", "via": "fd00::1"}, {"to": "::/0", "via": "fd00::3"}),
    ],
)
def test_two_defaults_of_one_family_are_one_route(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    (message,) = messages(_routes(first, second))
    assert message.startswith("route to ")
    assert "declared twice" in message


def test_defaults_of_one_family_differ_by_metric_or_table() -> None:
    first = {"to": "default", "via": "10.0.0.1"}
    assert messages(_routes(first, {**first, "metric": 100})) == []
    assert messages(_routes(first, {**first, "table": 100})) == []


@pytest.mark.parametrize(
    ("given", "kept"),
    [(16, "dhcp"), ("16", "dhcp"), ("static", "static"), (0, "unspec"), (200, "200")],
)
def test_a_route_protocol_is_kept_as_ip_route_writes_it(given: object, kept: str) -> None:
    route = {"to": "10.8.0.0/16", "via": "10.0.0.1", "protocol": given}
    assert _routes(route).namespaces["a"].routes[0].protocol == kept


def test_every_route_protocol_byte_has_one_name_and_back() -> None:
    names = [route_protocol_name(number) for number in range(256)]
    assert len(set(names)) == 256
    assert [route_protocol_number(name) for name in names] == list(range(256))


def test_one_address_in_two_segments_is_fine_and_in_one_is_not() -> None:
    pair = {
        "a": {"links": {"v": {"kind": "veth", "peer": "b/v", "addresses": ["10.0.0.1/24"]}}},
        "b": {"links": {"v": {"kind": "veth", "peer": "a/v", "addresses": ["10.0.0.9/24"]}}},
        "c": {"links": {"v": {"kind": "veth", "peer": "d/v", "addresses": ["10.0.0.1/24"]}}},
        "d": {},
    }
    assert messages(lab(pair)) == []
    pair["b"]["links"]["v"]["addresses"] = ["10.0.0.1/24"]
    (message,) = messages(lab(pair))
    assert message.startswith("address 10.0.0.1 is already on a/v (namespaces.a.links.v.addresses")


def test_a_tap_and_a_vxlan_need_no_peer_or_parent() -> None:
    links = {
        "tap0": {"kind": "tap", "owner": 1000, "addresses": ["10.1.0.1/24"]},
        "vx0": {"kind": "vxlan", "id": 0, "remote": "2001:db8::2", "local": "2001:db8::1"},
    }
    value = lab({"a": {"links": links}})
    assert messages(value) == []
    vx0 = value.namespaces["a"].links["vx0"]
    assert (vx0.id, vx0.dstport, vx0.dev, vx0.group) == (0, 4789, None, None)


def test_a_multicast_vxlan_on_its_underlay_and_a_macvtap() -> None:
    links = {
        "eth0": {"kind": "veth", "peer": "b/eth0", "addresses": ["192.0.2.1/24"]},
        "vx0": {"kind": "vxlan", "id": 5, "group": "239.1.1.1", "dev": "eth0", "dstport": 8472},
        "mvt0": {"kind": "macvtap", "parent": "eth0"},
    }
    value = lab({"a": {"links": links}, "b": {}})
    assert messages(value) == []
    assert value.namespaces["a"].links["mvt0"].mode == "vepa"


def test_vxlan_dev_on_the_node_needs_no_declaration_on_a_real_node_only() -> None:
    vxlan = {"kind": "vxlan", "id": 5, "remote": "192.0.2.2", "dev": "ens192"}
    assert messages(lab({"host": {"links": {"vx0": vxlan}}})) == [
        "link 'ens192' is not declared in namespace 'host' with --sandbox"
    ]


KIND_SPECIFIC_VALUES = {
    "peer": "b/v0",
    "parent": "b/v0",
    "mode": "bridge",
    "id": 1,
    "remote": "192.0.2.2",
    "group": "239.1.1.1",
    "local": "192.0.2.1",
    "dstport": 4789,
    "dev": "eth0",
    "owner": 0,
}


FOREIGN_FIELDS = [
    (kind, field)
    for kind in [*KIND_FIELDS, None]
    for field in sorted(KIND_SPECIFIC_VALUES)
    if kind is None or field not in KIND_FIELDS[kind]
]


@pytest.mark.parametrize(("kind", "field"), FOREIGN_FIELDS)
def test_a_kind_specific_field_is_refused_on_other_kinds(kind: str | None, field: str) -> None:
    link: dict[str, Any] = {field: KIND_SPECIFIC_VALUES[field]}
    if kind is not None:
        link["kind"] = kind
    with pytest.raises(ValidationError) as caught:
        lab({"a": {"links": {"x": link}}})
    owners = " or ".join(k for k, fields in KIND_FIELDS.items() if field in fields)
    what = f"kind: {kind}" if kind else "a link without kind"
    assert f"{field} is only for kind: {owners}, not {what}" in str(caught.value)


def test_every_kind_specific_field_has_a_sample_value() -> None:
    assert set(KIND_SPECIFIC_VALUES) == set().union(*KIND_FIELDS.values())


def test_an_address_twice_on_one_link_is_reported() -> None:
    links = {"br0": {"kind": "bridge", "addresses": ["10.0.0.1/24", "10.0.0.1/16"]}}
    assert messages(lab({"a": {"links": links}})) == [
        "address 10.0.0.1 is already on br0 in namespace 'a'"
    ]


def test_every_kind_has_its_row_in_the_field_table() -> None:
    assert set(KIND_FIELDS) == set(get_args(LinkKind))
