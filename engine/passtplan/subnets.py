"""Which addresses' subnets hold an IP, answered by lookup rather than by scanning every address:
for each prefix length in use, the IP's network at that length is a dictionary key. A lab has a
handful of prefix lengths, so a lookup costs a handful of dictionary probes whatever its size.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from functools import lru_cache
from typing import Generic, TypeVar

T = TypeVar("T")
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=65536)
def interface(cidr: str) -> IPInterface:
    """An address in CIDR form, parsed once however often it is asked for."""
    return ipaddress.ip_interface(cidr)


@lru_cache(maxsize=65536)
def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


class SubnetIndex(Generic[T]):
    """Values filed under (scope, subnet): which of them have a subnet holding a given IP."""

    def __init__(self) -> None:
        self._by_subnet: dict[tuple[str, IPNetwork], list[T]] = {}
        self._lengths: dict[tuple[str, int], set[int]] = {}

    def add(self, scope: str, cidr: str, value: T) -> None:
        network = interface(cidr).network
        self._by_subnet.setdefault((scope, network), []).append(value)
        self._lengths.setdefault((scope, network.version), set()).add(network.prefixlen)

    def holding(self, scope: str, address: str) -> Iterator[T]:
        """The values in `scope` whose subnet holds `address`, longest prefix first."""
        gateway = ip(address)
        for length in sorted(self._lengths.get((scope, gateway.version), ()), reverse=True):
            network = ipaddress.ip_network(f"{gateway}/{length}", strict=False)
            yield from self._by_subnet.get((scope, network), ())
