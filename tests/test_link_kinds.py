"""Link kinds without root: the IFLA_INFO_DATA decoders on a link dump captured from the kernel
(fixtures/rtnl/links.json, made by fixtures/rtnl/capture.py), the replace/in-place table, and
`show` writing the kinds back."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import pytest

from passtplan import resources as res
from passtplan.commands.show import lab_document
from passtplan.providers import rtnl
from passtplan.providers.link import to_links
from tests.conftest import FIXTURES

CAPTURED = json.loads((FIXTURES / "rtnl" / "links.json").read_text())


@pytest.fixture(scope="module")
def captured() -> dict[str, res.Link]:
    raw = [rtnl.decode_link(memoryview(bytes.fromhex(m))) for m in CAPTURED["messages"]]
    return to_links({"x": raw}, {})["x"]


def kind_fields(link: res.Link) -> dict[str, object]:
    names = ("kind", "parent", "mode", "vni", "remote", "group", "local", "dstport", "dev")
    found = {n: getattr(link, n) for n in (*names, "tap_owner")}
    return {n: v for n, v in found.items() if v is not None}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "vx4",
            {
                "kind": "vxlan",
                "vni": 42,
                "remote": "10.0.0.2",
                "local": "10.0.0.1",
                "dstport": 4789,
                "dev": "br0",
            },
        ),
        (
            "vx6",
            {
                "kind": "vxlan",
                "vni": 4096,
                "remote": "fd00::2",
                "local": "fd00::1",
                "dstport": 8472,
            },
        ),
        ("vxm", {"kind": "vxlan", "vni": 7, "group": "239.1.1.1", "dstport": 4789, "dev": "br1"}),
        (
            "vxm6",
            {
                "kind": "vxlan",
                "vni": 8,
                "group": "ff05::1",
                "local": "fd00::9",
                "dstport": 4790,
                "dev": "br1",
            },
        ),
        ("vxb", {"kind": "vxlan", "vni": 16777215, "dstport": 4789}),
        ("tap0", {"kind": "tap", "tap_owner": 1000}),
        ("tap1", {"kind": "tap"}),
        ("tun0", {"kind": "tun"}),  # a tun is not a tap: a lab's tap of this name is replaced
        ("mvt0", {"kind": "macvtap", "parent": ("x", "br0"), "mode": "bridge"}),
        ("mvt1", {"kind": "macvtap", "parent": ("x", "br1"), "mode": "private"}),
    ],
)
def test_captured_links_decode(
    captured: dict[str, res.Link], name: str, expected: dict[str, object]
) -> None:
    assert kind_fields(captured[name]) == expected


def test_captured_fixture_says_how_it_was_made() -> None:
    assert CAPTURED["kernel"] and CAPTURED["built with"]


def tap_info(**data: bytes) -> dict[int, memoryview]:
    ids = {"owner": 1, "type": 3, "pi": 4, "vnet_hdr": 5, "multi_queue": 7}
    return {ids[k]: memoryview(v) for k, v in data.items()}


@pytest.mark.parametrize(
    ("data", "flags"),
    [
        ({"type": b"\x02", "pi": b"\0", "vnet_hdr": b"\0"}, rtnl.IFF_TAP | rtnl.IFF_NO_PI),
        ({"type": b"\x02", "pi": b"\x01", "vnet_hdr": b"\0"}, rtnl.IFF_TAP),
        (
            {"type": b"\x02", "pi": b"\0", "vnet_hdr": b"\x01", "multi_queue": b"\x01"},
            rtnl.IFF_TAP | rtnl.IFF_NO_PI | rtnl.IFF_VNET_HDR | rtnl.IFF_MULTI_QUEUE,
        ),
        ({"type": b"\x01", "pi": b"\x01"}, rtnl.IFF_TUN),
    ],
)
def test_tun_flags_reattach_as_the_device_is(data: dict[str, bytes], flags: int) -> None:
    """Attaching to a tap to change its owner sets its flags again: they are read first."""
    assert rtnl.tun_flags(tap_info(**data)) == flags


def test_captured_tap_flags(captured: dict[str, res.Link]) -> None:
    by_name = {
        rtnl.decode_link(memoryview(bytes.fromhex(m))).name: bytes.fromhex(m)
        for m in CAPTURED["messages"]
    }
    _, tap0 = rtnl.info_data(memoryview(by_name["tap0"]))
    _, tap1 = rtnl.info_data(memoryview(by_name["tap1"]))
    assert rtnl.tun_flags(tap0) == rtnl.IFF_TAP | rtnl.IFF_NO_PI
    assert rtnl.tun_flags(tap1) == rtnl.IFF_TAP | rtnl.IFF_NO_PI | rtnl.IFF_VNET_HDR


def vxlan_message(index: int, name: str, *data: bytes) -> memoryview:
    """A link message built with the codec, for cases the capture lacks."""
    info = rtnl.attr(rtnl.IFLA_INFO_KIND, b"vxlan\0") + rtnl.attr(
        rtnl.IFLA_INFO_DATA, b"".join(data)
    )
    body = rtnl.IFINFO.pack(0, 1, index, 0, 0)
    body += rtnl.attr(rtnl.IFLA_IFNAME, name.encode() + b"\0") + rtnl.attr(rtnl.IFLA_LINKINFO, info)
    return memoryview(body)


def test_vxlan_built_with_the_codec() -> None:
    message = vxlan_message(
        3,
        "vx",
        rtnl.attr(rtnl.IFLA_VXLAN_ID, struct.pack("=I", 9)),
        rtnl.attr(rtnl.IFLA_VXLAN_GROUP6, socket.inet_pton(socket.AF_INET6, "2001:db8::1")),
        rtnl.attr(rtnl.IFLA_VXLAN_LINK, struct.pack("=I", 77)),  # not in this dump
        rtnl.attr(rtnl.IFLA_VXLAN_PORT, struct.pack("!H", 4789)),
    )
    link = to_links({"x": [rtnl.decode_link(message)]}, {})["x"]["vx"]
    assert (link.vni, link.remote, link.group, link.dstport) == (9, "2001:db8::1", None, 4789)
    assert link.dev == "if77"


# --- what the kernel changes in place (found in tests/integration/test_link_kinds.py) --------


def vxlan(**fields: Any) -> res.Link:
    return res.Link("a", "vx0", "vxlan", **fields)


LIVE = vxlan(vni=42, remote="10.0.0.2", local="10.0.0.1", dstport=4789, dev="br0")


@pytest.mark.parametrize(
    ("want", "replace", "update"),
    [
        (vxlan(vni=42, remote="10.0.0.2"), (), ()),
        (vxlan(vni=43), ("vni",), ()),
        (vxlan(dstport=4790), ("dstport",), ()),
        (vxlan(remote="10.0.0.3"), (), ("remote",)),
        (vxlan(group="239.1.1.1", dev="br1"), (), ("group", "dev")),
        (vxlan(local="10.0.0.9"), (), ("local",)),
        (vxlan(dev="br1"), (), ("dev",)),
        (vxlan(remote="fd00::2"), ("remote",), ()),  # another family
        (vxlan(local="fd00::1"), ("local",), ()),
    ],
)
def test_vxlan_replace_or_update(
    want: res.Link, replace: tuple[str, ...], update: tuple[str, ...]
) -> None:
    assert res.replace_fields(want, LIVE) == replace
    if not replace:
        assert res.update_fields(want, LIVE) == update


def test_vxlan_without_addresses_is_ipv4() -> None:
    bare = vxlan(vni=1, dstport=4789)
    assert res.replace_fields(vxlan(remote="10.0.0.2"), bare) == ()
    assert res.replace_fields(vxlan(remote="fd00::2"), bare) == ("remote",)


@pytest.mark.parametrize(
    ("kind", "have", "want", "replace", "update"),
    [
        ("macvtap", "bridge", "private", (), ("mode",)),
        ("macvtap", "bridge", "passthru", ("mode",), ()),
        ("macvtap", "passthru", "vepa", ("mode",), ()),
        ("macvlan", "vepa", "passthru", ("mode",), ()),
    ],
)
def test_macv_modes(
    kind: str, have: str, want: str, replace: tuple[str, ...], update: tuple[str, ...]
) -> None:
    live = res.Link("a", "m0", kind, parent=("a", "br0"), mode=have)
    wanted = res.Link("a", "m0", kind, parent=("a", "br0"), mode=want)
    assert res.replace_fields(wanted, live) == replace
    if not replace:
        assert res.update_fields(wanted, live) == update


def test_tap_owner_in_place_and_tun_replaced() -> None:
    tap = res.Link("a", "t0", "tap", tap_owner=1000)
    assert res.update_fields(res.Link("a", "t0", "tap", tap_owner=1001), tap) == ("tap_owner",)
    assert res.replace_fields(tap, res.Link("a", "t0", "tun")) == ("kind",)


# --- show --------------------------------------------------------------------------------


def test_show_writes_the_kinds_back(captured: dict[str, res.Link]) -> None:
    ns = res.Namespace("x", "x", res.NamespaceRole.RESOLVED, ("path", "/run/netns/x"))
    addresses = [res.Address("x", "vx4", "10.5.0.1/24"), res.Address("x", "tap0", "10.6.0.1/24")]
    addresses.append(res.Address("x", "vx4", "fd05::1/64"))
    state = res.State({"x": res.NamespaceState(ns, captured, addresses)})
    links: Any = lab_document(state)["namespaces"]
    links = links["x"]["links"]
    assert links["vx4"] == {
        "kind": "vxlan",
        "id": 42,
        "remote": "10.0.0.2",
        "local": "10.0.0.1",
        "dstport": 4789,
        "dev": "br0",
        "up": False,
        "mtu": 1450,
        "mac": captured["vx4"].mac,
        "addresses": ["10.5.0.1/24", "fd05::1/64"],
    }
    assert links["vxm"]["group"] == "239.1.1.1"
    assert "remote" not in links["vxm"]
    assert {k: links["tap0"][k] for k in ("kind", "owner", "addresses")} == {
        "kind": "tap",
        "owner": 1000,
        "addresses": ["10.6.0.1/24"],
    }
    assert "owner" not in links["tap1"]
    assert "kind" not in links["tun0"]  # not a kind a lab creates: configured as found
    assert {k: links["mvt1"][k] for k in ("kind", "parent", "mode")} == {
        "kind": "macvtap",
        "parent": "x/br1",
        "mode": "private",
    }
