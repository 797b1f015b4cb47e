"""Field types of the plan language, each validated where it is declared.

Messages are written for the person holding the YAML: what is wrong and, where possible, the fix.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

IFNAME_MAX_BYTES = 15  # IFNAMSIZ - 1: the kernel's limit on an interface name
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
SYSCTL = re.compile(r"^[a-z0-9_]+(\.[a-zA-Z0-9_*-]+)+$")


def check_ifname(name: str) -> str:
    """The kernel's dev_valid_name(): 1-15 bytes, not . or .., no '/', ':' or whitespace."""
    size = len(name.encode())
    if size == 0:
        raise ValueError("an interface name cannot be empty")
    if size > IFNAME_MAX_BYTES:
        shorter = name.encode()[:IFNAME_MAX_BYTES].decode(errors="ignore")
        raise ValueError(
            f"interface name {name!r} is {size} bytes; the kernel allows at most "
            f"{IFNAME_MAX_BYTES} (shorten it, e.g. {shorter!r})"
        )
    if name in {".", ".."}:
        raise ValueError(f"{name!r} is not a valid interface name")
    bad = sorted({c for c in name if c in "/:" or c.isspace()})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ValueError(f"interface name {name!r} contains {shown}, which the kernel refuses")
    return name


def check_dns_label(name: str) -> str:
    if len(name) > 63 or not DNS_LABEL.match(name):
        raise ValueError(
            f"{name!r} must be 1-63 lowercase letters, digits or '-', starting and ending with "
            "a letter or digit"
        )
    return name


def check_link_ref(ref: str) -> str:
    """`NAMESPACE/IFNAME`, or a bare `IFNAME` meaning the namespace the reference is written in."""
    namespace, sep, ifname = ref.rpartition("/")
    if sep and not namespace:
        raise ValueError(f"{ref!r} has an empty namespace; write NAMESPACE/IFNAME")
    if namespace:
        check_dns_label(namespace)
    check_ifname(ifname)
    return ref


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
# Parsed values are kept for the lab-wide rules, which read every address again: ipaddress is
# slow enough that parsing a big lab's addresses twice costs a good part of a second.
PARSED_CACHE = 1 << 16


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# The usual spelling of an IPv4 CIDR, read without ipaddress's octet-by-octet parser (twice as
# fast); anything else, errors included, goes to ipaddress.
IPV4_CIDR = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}/(3[0-2]|[12]?[0-9])")


@functools.lru_cache(maxsize=PARSED_CACHE)
def parse_interface(value: str) -> Interface:
    match = IPV4_CIDR.fullmatch(value)
    if match is None:
        return ipaddress.ip_interface(value)
    a, b, c, d, prefix = (int(g) for g in match.groups())
    return ipaddress.IPv4Interface(((a << 24) | (b << 16) | (c << 8) | d, prefix))


@functools.lru_cache(maxsize=PARSED_CACHE)
def parse_ip(value: str) -> IPAddress:
    return ipaddress.ip_address(value)


def check_address(value: str) -> str:
    """An interface address in CIDR form: the host address and the prefix length of its subnet."""
    if "/" not in value:
        raise ValueError(f"{value!r} has no prefix length; write it as CIDR, e.g. {value}/24")
    try:
        iface = parse_interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address in CIDR form") from None
    network = iface.network
    if iface.version == 4 and network.prefixlen < 31:
        if iface.ip == network.network_address:
            raise ValueError(
                f"{value} is the network address of {network}; use a host address in it"
            )
        if iface.ip == network.broadcast_address:
            raise ValueError(
                f"{value} is the broadcast address of {network}; use a host address in it"
            )
    if iface.ip.is_multicast or iface.ip.is_unspecified:
        raise ValueError(f"{iface.ip} cannot be assigned to an interface")
    return value if iface.compressed == value else iface.compressed


@functools.lru_cache(maxsize=PARSED_CACHE)
def check_route_destination(value: str) -> str:
    if value == "default":
        return value
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is neither 'default' nor a network in CIDR form") from None
    raise ValueError(f"{value} has host bits set; the network is {loose}")


def check_gateway(value: str) -> str:
    try:
        ip = parse_ip(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None
    if ip.is_multicast or ip.is_unspecified:
        raise ValueError(f"{ip} cannot be a gateway")
    return str(ip)


def check_ip(value: str) -> str:
    try:
        return str(parse_ip(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


def check_endpoint(value: str) -> str:
    """`HOST:PORT`, with an IPv6 host in brackets: `[fd00::1]:22`."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} must be HOST:PORT, e.g. 10.0.0.1:22")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    check_ip(host)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} in {value!r} must be a number from 1 to 65535")
    return value


def check_mac(value: str) -> str:
    if not MAC.match(value):
        raise ValueError(f"{value!r} is not a MAC address like 02:00:00:00:00:01")
    if int(value[:2], 16) & 1:
        raise ValueError(f"{value} is a multicast MAC address; an interface needs a unicast one")
    return value.lower()


def check_sysctl_name(name: str) -> str:
    if not SYSCTL.match(name):
        raise ValueError(f"{name!r} is not a sysctl name like net.ipv4.ip_forward")
    if not name.startswith("net."):
        raise ValueError(
            f"{name!r} is not per network namespace; only net.* sysctls can be set in a lab"
        )
    return name


# A route's protocol (the RTM protocol byte): who added it. Named as iproute2 names them
# (/usr/share/iproute2/rt_protos, `ip route` prints `proto dhcp`); any other is its number.
ROUTE_PROTOCOLS = {
    "unspec": 0,
    "redirect": 1,
    "kernel": 2,
    "boot": 3,
    "static": 4,
    "gated": 8,
    "ra": 9,
    "mrt": 10,
    "zebra": 11,
    "bird": 12,
    "dnrouted": 13,
    "xorp": 14,
    "ntk": 15,
    "dhcp": 16,
    "keepalived": 18,
    "babel": 42,
    "openr": 99,
    "bgp": 186,
    "isis": 187,
    "ospf": 188,
    "rip": 189,
    "eigrp": 192,
}
ROUTE_PROTOCOL_NAMES = {number: name for name, number in ROUTE_PROTOCOLS.items()}


def route_protocol_name(number: int) -> str:
    """A protocol byte as the plan, the record and `ip route` write it: `dhcp`, or `200`."""
    return ROUTE_PROTOCOL_NAMES.get(number, str(number))


def route_protocol_number(name: str) -> int:
    """The protocol byte of a name `route_protocol_name` wrote (or the lab gave)."""
    return ROUTE_PROTOCOLS[name] if name in ROUTE_PROTOCOLS else int(name)


def check_route_protocol(value: object) -> str:
    """A name of ROUTE_PROTOCOLS or a number 0-255, kept as `route_protocol_name` writes it, so
    that `16` and `dhcp` are one protocol. `kernel` is refused: the kernel's own routes (a
    connected subnet's) are not read back, so a lab route marked so would never be found."""
    text = "" if isinstance(value, bool) else str(value).strip()
    if text.isascii() and text.isdigit() and int(text) <= 255:
        text = route_protocol_name(int(text))
    elif text not in ROUTE_PROTOCOLS:
        raise ValueError(
            f"{value!r} is not a route protocol; write a number 0-255 or a name as `ip route` "
            "writes it: boot, static, dhcp, ra, bird, zebra, bgp, ospf, ..."
        )
    if text == "kernel":
        raise ValueError(
            "protocol kernel marks the kernel's own routes, which passtplan does not read back; "
            "write static, or leave protocol out for boot (as `ip route add` does)"
        )
    return text


def scalar_to_str(value: object) -> object:
    """Sysctl values are strings to the kernel; accept YAML's `1` for `"1"`."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return value


IfName = Annotated[
    str,
    AfterValidator(check_ifname),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 15, "pattern": r"^[^/:\s]+$"}),
]
Name = Annotated[
    str,
    AfterValidator(check_dns_label),
    WithJsonSchema({"type": "string", "maxLength": 63, "pattern": DNS_LABEL.pattern}),
]
LinkRef = Annotated[
    str,
    AfterValidator(check_link_ref),
    WithJsonSchema(
        {"type": "string", "pattern": r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[^/:\s]{1,15}$"}
    ),
]
Address = Annotated[
    str, AfterValidator(check_address), WithJsonSchema({"type": "string", "format": "ip-cidr"})
]
RouteDestination = Annotated[
    str,
    AfterValidator(check_route_destination),
    WithJsonSchema({"type": "string", "description": "'default' or a network in CIDR form"}),
]
Gateway = Annotated[
    str, AfterValidator(check_gateway), WithJsonSchema({"type": "string", "format": "ip"})
]
IP = Annotated[str, AfterValidator(check_ip), WithJsonSchema({"type": "string", "format": "ip"})]
Endpoint = Annotated[
    str,
    AfterValidator(check_endpoint),
    WithJsonSchema({"type": "string", "description": "HOST:PORT, an IPv6 host in brackets"}),
]
Mac = Annotated[
    str,
    AfterValidator(check_mac),
    WithJsonSchema({"type": "string", "pattern": MAC.pattern}),
]
SysctlName = Annotated[
    str,
    AfterValidator(check_sysctl_name),
    WithJsonSchema({"type": "string", "pattern": r"^net\."}),
]
SysctlValue = Annotated[
    str, BeforeValidator(scalar_to_str), WithJsonSchema({"type": ["string", "integer"]})
]
RouteProtocol = Annotated[
    str,
    BeforeValidator(check_route_protocol),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": [name for name in ROUTE_PROTOCOLS if name != "kernel"]},
                {"type": "integer", "minimum": 0, "maximum": 255, "not": {"const": 2}},
            ]
        }
    ),
]
Mtu = Annotated[int, Field(ge=68, le=65535)]
Vni = Annotated[int, Field(ge=0, le=2**24 - 1)]
Port = Annotated[int, Field(ge=1, le=65535)]
Uid = Annotated[int, Field(ge=0, le=2**32 - 2)]  # (uid_t)-1 means "no one"
LinkKind = Literal["veth", "macvlan", "macvtap", "bridge", "vxlan", "tap"]
MacvlanMode = Literal["vepa", "bridge", "private", "passthru", "source"]
State = Literal["present", "absent"]


def check_pod_ref(value: str) -> str:
    namespace, sep, name = value.partition("/")
    if not sep or not name or "/" in name:
        raise ValueError(f"{value!r} must be NAMESPACE/NAME of a pod, e.g. default/virt-launcher-x")
    check_dns_label(namespace)
    if len(name) > 253 or not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", name):
        raise ValueError(f"{name!r} is not a valid pod name")
    return value


def check_absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path, e.g. /var/run/netns/NAME")
    return value


PodRef = Annotated[
    str,
    AfterValidator(check_pod_ref),
    WithJsonSchema({"type": "string", "pattern": r"^[a-z0-9-]+/[a-z0-9.-]+$"}),
]
AbsolutePath = Annotated[
    str, AfterValidator(check_absolute_path), WithJsonSchema({"type": "string", "pattern": "^/"})
]
