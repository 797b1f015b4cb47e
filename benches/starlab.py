"""The star lab of the scale benchmark, as a lab file and as the `ip -batch` lines that build it.

A hub namespace holds a bridge; each of N spokes is joined to it by a veth (hub end a port of the
bridge), and holds 20 /32 addresses and 20 routes via the hub. At N=400 that is about 17,600
resources: what a user who scripts a big lab writes.
"""

from __future__ import annotations

import ipaddress
from typing import Any

ADDRESSES_PER_SPOKE = 20
ROUTES_PER_SPOKE = 20
HUB_ADDRESS = "10.100.0.1"
PREFIX = 16
HOST_BASE = int(ipaddress.IPv4Address("172.16.0.0"))


def spoke_address(i: int) -> str:
    """The spoke's own address on the hub's subnet (10.100.0.0/16)."""
    return f"10.100.{(i + 2) // 250}.{(i + 2) % 250 + 1}/{PREFIX}"


def host_addresses(i: int) -> list[str]:
    first = HOST_BASE + i * ADDRESSES_PER_SPOKE + 1
    return [f"{ipaddress.IPv4Address(first + j)}/32" for j in range(ADDRESSES_PER_SPOKE)]


def route_destinations() -> list[str]:
    return [f"198.18.{j}.0/24" for j in range(ROUTES_PER_SPOKE)]


def star_lab(name: str, n: int) -> dict[str, Any]:
    hub_links: dict[str, Any] = {
        "br0": {"kind": "bridge", "addresses": [f"{HUB_ADDRESS}/{PREFIX}"]}
    }
    namespaces: dict[str, Any] = {"hub": {"links": hub_links}}
    for i in range(n):
        spoke = f"s{i}"
        hub_links[f"p{i}"] = {"kind": "veth", "peer": f"{spoke}/eth0", "master": "br0"}
        namespaces[spoke] = {
            "links": {
                "eth0": {
                    "kind": "veth",
                    "peer": f"hub/p{i}",
                    "addresses": [spoke_address(i), *host_addresses(i)],
                }
            },
            "routes": [{"to": dest, "via": HUB_ADDRESS} for dest in route_destinations()],
        }
    return {
        "apiVersion": "passtplan/v1alpha1",
        "kind": "Lab",
        "metadata": {"name": name},
        "namespaces": namespaces,
    }


def resource_count(n: int) -> int:
    """Namespaces, links, addresses and routes of the star lab."""
    return (1 + n) + (1 + 2 * n) + (1 + n * (1 + ADDRESSES_PER_SPOKE)) + n * ROUTES_PER_SPOKE


def ip_batches(prefix: str, n: int) -> list[tuple[str | None, list[str]]]:
    """(namespace or None for a plain `ip -batch`, lines) that build the same lab by hand."""
    hub = f"{prefix}-hub"
    spokes = [f"{prefix}-s{i}" for i in range(n)]
    batches: list[tuple[str | None, list[str]]] = [
        (None, [f"netns add {ns}" for ns in [hub, *spokes]])
    ]
    hub_lines = [
        "link add br0 type bridge",
        f"address add {HUB_ADDRESS}/{PREFIX} dev br0",
        "link set br0 up",
    ]
    for i, spoke in enumerate(spokes):
        hub_lines += [
            f"link add p{i} type veth peer name eth0 netns {spoke}",
            f"link set p{i} master br0",
            f"link set p{i} up",
        ]
    batches.append((hub, hub_lines))
    for i, spoke in enumerate(spokes):
        lines = ["link set eth0 up", f"address add {spoke_address(i)} dev eth0"]
        lines += [f"address add {a} dev eth0" for a in host_addresses(i)]
        lines += [f"route add {d} via {HUB_ADDRESS}" for d in route_destinations()]
        batches.append((spoke, lines))
    return batches


def ip_delete_batch(prefix: str, n: int) -> list[str]:
    return [f"netns delete {prefix}-{ns}" for ns in ["hub", *(f"s{i}" for i in range(n))]]
