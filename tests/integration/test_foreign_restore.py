"""Foreign state given back: what the lab replaced, removed or changed but did not make (a route,
a sysctl, a link's attribute) is recorded before the change and restored exactly when the lab is
destroyed; a route, and a link's attributes or the link itself, also when the apply that
changed it is rolled back, and then left the machine's (not claimed by the lab)."""

from __future__ import annotations

import time
from collections.abc import Callable

from pyroute2 import NetNS

from tests.integration.conftest import Lab, ip, ip_json

LAB = """\
apiVersion: passtplan/v1alpha1
kind: Lab
metadata: {name: LABNAME}
namespaces:
  f:
    resolve: {path: /run/netns/FOREIGN}
    sysctls: {net.ipv4.ip_forward: "1"}
    links:
      lv0: {kind: veth, peer: f/lv1, addresses: [10.30.0.1/24]}
      lv1: {kind: veth, peer: f/lv0}
      d1: {mtu: 1400}
    routes:
      - {to: default, via: 10.30.0.254, dev: lv0}
      - {to: 10.99.0.0/16, state: absent}
"""


def snapshot(netns: str) -> dict[str, object]:
    return {
        "links": sorted(
            (link["ifname"], link["mtu"]) for link in ip_json("link", "show", netns=netns)
        ),
        "routes": ip_json("route", "show", "table", "all", netns=netns),
        "forward": ip("netns", "exec", netns, "cat", "/proc/sys/net/ipv4/ip_forward"),
    }


def link_local_settled(netns: str, *links: str, deadline: float = 10.0) -> None:
    """Polls until each link's IPv6 link-local address has its local route: the kernel adds it
    some time after the link comes up, and a snapshot taken before would miss it."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        local = ip_json("-6", "route", "show", "table", "local", netns=netns)
        have = {
            r["dev"] for r in local if r.get("type") == "local" and str(r["dst"]).startswith("fe80")
        }
        if have >= set(links):
            return
        time.sleep(0.05)
    raise AssertionError(f"no IPv6 link-local address on {', '.join(links)} in {netns}")


def test_destroy_gives_back_a_replaced_route_and_sysctl(
    make_lab: Callable[[str], Lab], foreign_netns: Callable[[str], str]
) -> None:
    netns = foreign_netns("f")
    ip("link", "add", "d0", "type", "veth", "peer", "name", "d1", netns=netns)
    ip("link", "set", "d0", "up", netns=netns)
    ip("link", "set", "d1", "up", netns=netns)
    ip("address", "add", "10.20.0.1/24", "dev", "d0", netns=netns)
    ip("route", "add", "default", "via", "10.20.0.254", "dev", "d0", netns=netns)
    ip("route", "add", "10.99.0.0/16", "via", "10.20.0.254", "metric", "0", netns=netns)
    link_local_settled(netns, "d0", "d1")
    before = snapshot(netns)
    assert before["forward"] == "0\n"

    lab = make_lab(LAB.replace("FOREIGN", netns))
    plan = lab.plan().stdout
    assert "route.f[default]" in plan
    lab.apply()
    routes = {r["dst"]: r for r in ip_json("route", "show", netns=netns)}
    assert routes["default"]["gateway"] == "10.30.0.254"
    assert "10.99.0.0/16" not in routes
    assert snapshot(netns)["forward"] == "1\n"
    assert ("d1", 1400) in snapshot(netns)["links"]  # type: ignore[operator]
    lab.converged()

    result = lab.destroy()
    plan_part = result.stdout.split("Destroy complete")[0]
    reasons = {
        "route.f[default]": "restored to via 10.20.0.254 dev d0",
        "route.f[10.99.0.0/16]": "restored to via 10.20.0.254 dev d0",
        "sysctl.f[net.ipv4.ip_forward]": "restored to 0",
        "link.f/d1": "restored to mtu 1500",
    }
    for address, reason in reasons.items():
        assert f"# {address} " in plan_part
        assert reason in plan_part.split(f"# {address} ", 1)[1].splitlines()[0]
    assert snapshot(netns) == before
    assert lab.leftovers() == []
    # nothing of it is remembered any more: a second destroy has nothing to do
    assert "No changes" in lab.destroy().stdout


PROTOCOL_LAB = """\
apiVersion: passtplan/v1alpha1
kind: Lab
metadata: {name: LABNAME}
namespaces:
  f:
    resolve: {path: /run/netns/FOREIGN}
    links:
      lv0: {kind: veth, peer: f/lv1, addresses: [10.30.0.1/24]}
      lv1: {kind: veth, peer: f/lv0}
    routes:
      - {to: default, via: 10.30.0.254, metric: 100}
      - {to: 10.99.0.0/16, metric: 50, state: absent}
      - {to: 10.88.0.0/16, state: absent}
      - {to: 10.77.0.0/16, via: 10.30.0.254, protocol: static}
"""
RTPROT_STATIC, RTPROT_DHCP = 4, 16
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254


def main_routes(netns: str) -> dict[str, dict[str, object]]:
    """The main table's routes by destination, as `ip -j route` writes them (boot left out)."""
    return {str(r["dst"]): r for r in ip_json("route", "show", netns=netns)}


def add_foreign_routes(netns: str) -> list[dict[str, object]]:
    """A link with a DHCP client's default route, a network manager's static link route and a
    host-scoped one (a scope neither with nor without a gateway gives), added by netlink as
    they add them; the namespace's routes (all tables) as they are then."""
    ip("link", "add", "d0", "type", "veth", "peer", "name", "d1", netns=netns)
    ip("link", "set", "d0", "up", netns=netns)
    ip("link", "set", "d1", "up", netns=netns)
    ip("address", "add", "10.20.0.1/24", "dev", "d0", netns=netns)
    link_local_settled(netns, "d0", "d1")
    with NetNS(netns) as ns:
        (d0,) = ns.link_lookup(ifname="d0")
        ns.route(
            "add",
            dst="0.0.0.0/0",
            gateway="10.20.0.254",
            oif=d0,
            priority=100,
            proto=RTPROT_DHCP,
            scope=RT_SCOPE_UNIVERSE,
        )
        ns.route(
            "add", dst="10.99.0.0/16", oif=d0, priority=50, proto=RTPROT_STATIC, scope=RT_SCOPE_LINK
        )
        ns.route("add", dst="10.88.0.0/16", oif=d0, proto=RTPROT_STATIC, scope=RT_SCOPE_HOST)
    foreign = main_routes(netns)
    assert (foreign["default"]["protocol"], foreign["default"]["metric"]) == ("dhcp", 100)
    assert "scope" not in foreign["default"]  # universe, which `ip` leaves out
    assert (foreign["10.99.0.0/16"]["protocol"], foreign["10.99.0.0/16"]["metric"]) == (
        "static",
        50,
    )
    assert foreign["10.99.0.0/16"]["scope"] == "link"
    assert foreign["10.88.0.0/16"]["scope"] == "host"
    return ip_json("route", "show", "table", "all", netns=netns)


def test_destroy_gives_back_routes_with_their_protocol_metric_and_scope(
    make_lab: Callable[[str], Lab], foreign_netns: Callable[[str], str]
) -> None:
    """The DHCP route the lab replaced and the static routes it removed come back as they were:
    proto dhcp and proto static, their metrics and scopes (host as host, not link), not proto
    boot."""
    netns = foreign_netns("f")
    before = add_foreign_routes(netns)
    foreign = main_routes(netns)

    lab = make_lab(PROTOCOL_LAB.replace("FOREIGN", netns))
    lab.apply()
    during = main_routes(netns)
    # the lab's own routes: boot unless the lab says otherwise
    assert during["default"]["gateway"] == "10.30.0.254"
    assert "protocol" not in during["default"]  # boot, which `ip` leaves out
    assert during["10.77.0.0/16"]["protocol"] == "static"
    assert "10.99.0.0/16" not in during and "10.88.0.0/16" not in during
    lab.converged()  # the protocol the lab leaves out is not drift, the one it says is there

    result = lab.destroy()
    plan_part = result.stdout.split("Destroy complete")[0]
    assert "restored to via 10.20.0.254 dev d0 proto dhcp" in plan_part
    assert "restored to dev d0 proto static)" in plan_part
    assert "restored to dev d0 proto static scope host)" in plan_part
    assert main_routes(netns) == foreign
    assert ip_json("route", "show", "table", "all", netns=netns) == before
    assert lab.leftovers() == []


def test_rollback_gives_back_routes_with_their_protocol(
    make_lab: Callable[[str], Lab], foreign_netns: Callable[[str], str]
) -> None:
    """Undoing the apply that replaced and removed them puts them back the same way, and the
    rollback's own check (the live state against the digest before the apply) agrees."""
    netns = foreign_netns("f")
    before = add_foreign_routes(netns)
    lab = make_lab(PROTOCOL_LAB.replace("FOREIGN", netns))
    lab.apply()
    result = lab.run("rollback", str(lab.path), "--auto-approve")
    assert "the live state is as before that apply" in result.output
    assert ip_json("route", "show", "table", "all", netns=netns) == before
    assert lab.leftovers() == []


LINK_LAB = """\
apiVersion: passtplan/v1alpha1
kind: Lab
metadata: {name: LABNAME}
namespaces:
  f:
    resolve: {path: /run/netns/FOREIGN}
    links:
      d0: {up: true}
      d1: {mtu: 1400, up: true}
      e0: {state: absent}
"""


def add_foreign_links(netns: str) -> None:
    """A veth pair d0/d1, down, as a network manager would leave one it had not brought up yet,
    and another, e0/e1, up with an MTU of its own: made by netlink as those tools make them."""
    with NetNS(netns) as ns:
        ns.link("add", ifname="d0", kind="veth", peer="d1")
        ns.link("add", ifname="e0", kind="veth", peer="e1")
        for name in ("e0", "e1"):
            (index,) = ns.link_lookup(ifname=name)
            ns.link("set", index=index, mtu=1300, state="up")


def links_by_name(netns: str) -> dict[str, dict[str, object]]:
    """What the lab may change of each link, as `ip -j link` writes it: its MTU, MAC address,
    alias (the lab's mark) and whether it is set up (not whether its carrier is: that follows)."""
    return {
        str(link["ifname"]): {
            "mtu": link["mtu"],
            "mac": link["address"],
            "alias": link.get("ifalias"),
            "up": "UP" in link["flags"],  # type: ignore[operator]
        }
        for link in ip_json("link", "show", netns=netns)
    }


def test_rollback_gives_back_foreign_links_and_leaves_them_foreign(
    make_lab: Callable[[str], Lab], foreign_netns: Callable[[str], str]
) -> None:
    """Undoing the apply that set a foreign link's MTU and up state and removed a foreign veth
    puts each back as it was, not as the lab's: the record forgets them, and a destroy after
    it neither deletes them nor changes them again."""
    netns = foreign_netns("f")
    add_foreign_links(netns)
    before = links_by_name(netns)
    assert (before["d1"]["mtu"], before["d1"]["up"]) == (1500, False)

    lab = make_lab(LINK_LAB.replace("FOREIGN", netns))
    lab.apply()
    during = links_by_name(netns)
    assert (during["d1"]["mtu"], during["d1"]["up"]) == (1400, True)
    assert "e0" not in during and "e1" not in during

    result = lab.run("rollback", str(lab.path), "--auto-approve")
    assert "the live state is as before that apply" in result.output
    assert links_by_name(netns) == before
    assert lab.leftovers() == []  # the record is gone: nothing claimed, nothing to give back

    result = lab.destroy()
    assert "No changes" in result.stdout, result.stdout
    assert links_by_name(netns) == before
    assert lab.leftovers() == []
