"""Every resource kind through every action: create, update in place, replace, delete,
state: absent, and drift repaired. Each scenario applies a lab, changes the lab or the live
state, checks the plan names the expected action, applies, and expects no further changes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.integration.conftest import Lab, ip, ip_json

BASE = """
apiVersion: passtplan/v1alpha1
kind: Lab
metadata: {name: LABNAME}
namespaces:
  a:
    sysctls: {net.ipv4.ip_forward: "1"}
    links:
      br0: {kind: bridge}
      v0: {kind: veth, peer: b/v0, master: br0, mtu: 1500}
      mv0: {kind: macvlan, parent: a/br0, mode: bridge, addresses: [10.1.0.2/24]}
  b:
    links:
      v0: {kind: veth, peer: a/v0, addresses: [10.0.0.2/24]}
    routes:
      - {to: 10.9.0.0/16, via: 10.0.0.1}
"""


def actions(lab: Lab) -> dict[str, list[str]]:
    result = lab.plan("--json")
    return {c["address"]: c["actions"] for c in json.loads(result.stdout)["changes"]}


def pending(lab: Lab) -> dict[str, list[str]]:
    return {a: act for a, act in actions(lab).items() if act != ["no-op"]}


@pytest.fixture
def lab(make_lab: Callable[[str], Lab]) -> Lab:
    lab = make_lab(BASE)
    lab.apply()
    lab.converged()
    return lab


def edit(lab: Lab, old: str, new: str) -> None:
    text = lab.path.read_text()
    assert old in text
    lab.path.write_text(text.replace(old, new))


def converge(lab: Lab, expected: dict[str, list[str]]) -> None:
    assert pending(lab) == expected
    lab.apply()
    lab.converged()


def test_link_update_in_place(lab: Lab) -> None:
    edit(lab, "master: br0, mtu: 1500", "master: br0, mtu: 1400")
    converge(lab, {"link.a/v0": ["update"]})
    assert ip_json("link", "show", "v0", netns=lab.netns("a"))[0]["mtu"] == 1400


def test_link_down_and_mac(lab: Lab) -> None:
    edit(
        lab,
        "addresses: [10.1.0.2/24]}",
        "addresses: [10.1.0.2/24], up: false, mac: '02:00:00:00:00:42'}",
    )
    converge(lab, {"link.a/mv0": ["update"]})
    link = ip_json("link", "show", "mv0", netns=lab.netns("a"))[0]
    assert link["address"] == "02:00:00:00:00:42"
    assert "UP" not in link["flags"]


def test_macvlan_mode_change_is_made_in_place(lab: Lab) -> None:
    index = ip_json("link", "show", "mv0", netns=lab.netns("a"))[0]["ifindex"]
    edit(lab, "mode: bridge", "mode: private")
    converge(lab, {"link.a/mv0": ["update"]})
    details = ip_json("-d", "link", "show", "mv0", netns=lab.netns("a"))[0]
    assert details["linkinfo"]["info_data"]["mode"] == "private"
    assert details["ifindex"] == index  # the same link: its address stayed on it


def test_macvlan_mode_change_to_passthru_replaces_it_and_its_address(lab: Lab) -> None:
    edit(lab, "mode: bridge", "mode: passthru")
    converge(lab, {"link.a/mv0": ["delete", "create"], "address.a/mv0[10.1.0.2/24]": ["create"]})
    details = ip_json("-d", "link", "show", "mv0", netns=lab.netns("a"))[0]
    assert details["linkinfo"]["info_data"]["mode"] == "passthru"


def test_veth_peer_change_replaces_both_ends(lab: Lab) -> None:
    edit(lab, "peer: b/v0, master", "peer: b/v1, master")
    edit(
        lab,
        "      v0: {kind: veth, peer: a/v0, addresses",
        "      v1: {kind: veth, peer: a/v0, addresses",
    )
    edit(lab, "via: 10.0.0.1}", "via: 10.0.0.1, dev: v1}")
    plan = pending(lab)
    assert plan["link.a/v0"] == ["delete", "create"]
    assert plan["link.b/v1"] == ["create"]
    assert plan["link.b/v0"] == ["delete"]
    lab.apply()
    lab.converged()
    assert [link["ifname"] for link in ip_json("link", "show", netns=lab.netns("b"))] == [
        "lo",
        "v1",
    ]


def test_removed_link_is_deleted(lab: Lab) -> None:
    edit(
        lab,
        "      mv0: {kind: macvlan, parent: a/br0, mode: bridge, addresses: [10.1.0.2/24]}\n",
        "",
    )
    converge(lab, {"link.a/mv0": ["delete"], "address.a/mv0[10.1.0.2/24]": ["delete"]})
    assert ip("link", "show", "mv0", netns=lab.netns("a"), check=False) == ""


def test_state_absent_removes_a_link_the_lab_did_not_make(lab: Lab) -> None:
    ip("link", "add", "stray", "type", "bridge", netns=lab.netns("b"))
    lab.converged()  # not declared: left alone
    edit(lab, "    routes:", "      stray: {state: absent}\n    routes:")
    converge(lab, {"link.b/stray": ["delete"]})


def test_addresses_added_and_removed(lab: Lab) -> None:
    edit(lab, "[10.0.0.2/24]", "[10.0.0.3/24, 'fd00::3/64']")
    converge(
        lab,
        {
            "address.b/v0[10.0.0.2/24]": ["delete"],
            "address.b/v0[10.0.0.3/24]": ["create"],
            "address.b/v0[fd00::3/64]": ["create"],
            # the kernel drops the route with the address whose subnet holds its gateway
            "route.b[10.9.0.0/16]": ["create"],
        },
    )


def test_route_update_delete_and_absent(lab: Lab) -> None:
    edit(lab, "via: 10.0.0.1}", "via: 10.0.0.9, metric: 0}")
    converge(lab, {"route.b[10.9.0.0/16]": ["update"]})
    routes = ip_json("route", "show", "10.9.0.0/16", netns=lab.netns("b"))
    assert routes[0]["gateway"] == "10.0.0.9"
    ip("route", "add", "10.77.0.0/16", "dev", "v0", netns=lab.netns("b"))
    edit(
        lab,
        "      - {to: 10.9.0.0/16, via: 10.0.0.9, metric: 0}",
        "      - {to: 10.77.0.0/16, dev: v0, state: absent}",
    )
    converge(lab, {"route.b[10.9.0.0/16]": ["delete"], "route.b[10.77.0.0/16]": ["delete"]})
    assert ip_json("route", "show", netns=lab.netns("b")) == [
        r for r in ip_json("route", "show", netns=lab.netns("b")) if r.get("protocol") == "kernel"
    ]


def test_sysctl_update(lab: Lab) -> None:
    edit(lab, 'ip_forward: "1"', 'ip_forward: "0"')
    converge(lab, {"sysctl.a[net.ipv4.ip_forward]": ["update"]})


def test_removed_namespace_is_deleted(lab: Lab) -> None:
    edit(
        lab,
        "      mv0: {kind: macvlan, parent: a/br0, mode: bridge, addresses: [10.1.0.2/24]}\n",
        "",
    )
    text = lab.path.read_text()
    lab.path.write_text(
        text[: text.index("  b:\n")].replace(
            "      v0: {kind: veth, peer: b/v0, master: br0, mtu: 1500}\n", ""
        )
    )
    plan = pending(lab)
    assert plan["netns.b"] == ["delete"]
    assert plan["link.a/v0"] == ["delete"]
    lab.apply()
    lab.converged()
    assert lab.netns("b") not in ip("netns", "list")


@pytest.mark.parametrize(
    ("drift", "address", "action"),
    [
        (("link", "set", "v0", "mtu", "1300"), "link.a/v0", ["update"]),
        (("link", "set", "v0", "nomaster"), "link.a/v0", ["update"]),
        (("link", "set", "br0", "down"), "link.a/br0", ["update"]),
        (("link", "del", "mv0"), "link.a/mv0", ["create"]),
        (("route", "add", "10.99.0.0/16", "dev", "br0"), None, None),
    ],
    ids=["mtu", "master", "down", "deleted", "foreign-route"],
)
def test_drift_is_repaired(
    lab: Lab, drift: tuple[str, ...], address: str | None, action: list[str] | None
) -> None:
    ip(*drift, netns=lab.netns("a"))
    plan = pending(lab)
    if address is None:
        assert plan == {}  # a foreign route is not the lab's to repair
        return
    assert plan[address] == action
    lab.apply()
    lab.converged()


def test_drift_in_address_and_route(lab: Lab) -> None:
    ip("address", "del", "10.0.0.2/24", "dev", "v0", netns=lab.netns("b"))
    plan = pending(lab)
    assert plan["address.b/v0[10.0.0.2/24]"] == ["create"]
    assert plan["route.b[10.9.0.0/16]"] == ["create"]  # the kernel dropped it with the address
    lab.apply()
    lab.converged()


def test_a_port_dropped_from_the_lab_leaves_its_bridge(lab: Lab) -> None:
    edit(lab, "      v0: {kind: veth, peer: b/v0, master: br0, mtu: 1500}\n", "")
    converge(lab, {"link.a/v0": ["update"]})
    assert "master" not in ip_json("link", "show", "v0", netns=lab.netns("a"))[0]


IPV6_DEFAULT = """
apiVersion: passtplan/v1alpha1
kind: Lab
metadata: {name: LABNAME}
namespaces:
  a:
    sysctls: {net.ipv6.conf.all.disable_ipv6: "0"}
    links:
      v0: {kind: veth, peer: b/v0, addresses: ["fd00::1/64"]}
  b:
    links:
      v0: {kind: veth, peer: a/v0, addresses: ["fd00::2/64"]}
    routes:
      - {to: TO, via: "fd00::1"}
"""


@pytest.mark.parametrize("to", ["default", '"::/0"'])
def test_an_ipv6_default_route_converges(make_lab: Callable[[str], Lab], to: str) -> None:
    lab = make_lab(IPV6_DEFAULT.replace("TO", to))
    lab.apply()
    lab.converged()
    routes = ip_json("-6", "route", "show", "default", netns=lab.netns("b"))
    assert [r["gateway"] for r in routes] == ["fd00::1"]
    lab.destroy()
    assert lab.leftovers() == []
