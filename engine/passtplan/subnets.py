"""Which addresses' subnets hold an IP, answered by lookup rather than by scanning every address:
for each prefix length in use, the IP's network at that length is a dictionary key. A lab has a
handful of prefix lengths, so a lookup costs a handful of dictionary probes whatever its size.

Addresses are parsed once, to integers, with inet_pton: ipaddress objects cost fifty times more
to make, and a big lab has tens of thousands of addresses.
"""

from __future__ import annotations

import socket
from functools import lru_cache
from typing import Generic, TypeVar

T = TypeVar("T")
BITS = {4: 32, 6: 128}


@lru_cache(maxsize=1 << 16)
def parse_ip(text: str) -> tuple[int, int]:
    """(IP version, the address as an integer)."""
    if ":" in text:
        return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")


def parse_cidr(cidr: str) -> tuple[int, int, int]:
    """(IP version, the address as an integer, prefix length) of `ADDRESS/LENGTH`."""
    address, _, length = cidr.partition("/")
    version, value = parse_ip(address)
    return version, value, int(length) if length else BITS[version]


def network_of(version: int, value: int, length: int) -> int:
    host_bits = BITS[version] - length
    return value >> host_bits << host_bits


class SubnetIndex(Generic[T]):
    """Values filed under (scope, subnet): which of them have a subnet holding a given IP."""

    def __init__(self) -> None:
        self._by_subnet: dict[tuple[str, int, int, int], list[T]] = {}
        self._lengths: dict[tuple[str, int], list[int]] = {}

    def add(self, scope: str, cidr: str, value: T) -> None:
        version, address, length = parse_cidr(cidr)
        key = (scope, version, length, network_of(version, address, length))
        self._by_subnet.setdefault(key, []).append(value)
        lengths = self._lengths.setdefault((scope, version), [])
        if length not in lengths:
            lengths.append(length)
            lengths.sort(reverse=True)

    def holding(self, scope: str, address: str) -> list[T]:
        """The values in `scope` whose subnet holds `address`, longest prefix first."""
        version, value = parse_ip(address)
        found: list[T] = []
        for length in self._lengths.get((scope, version), ()):
            key = (scope, version, length, network_of(version, value, length))
            found += self._by_subnet.get(key, ())
        return found
