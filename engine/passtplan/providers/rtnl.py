"""A lean rtnetlink codec for the messages that come by the thousand: link, address and route
dumps, and address and route changes sent pipelined.

pyroute2 builds a Python object tree for every message, about 250 us each here; a lab of 1000
addresses and 1000 routes would spend half a second encoding alone. This module packs and
unpacks only the fields passtplan uses with struct, and sends many requests in one write.
pyroute2 remains the client for everything else (links with nested link info, netns ids).
"""

from __future__ import annotations

import errno
import os
import queue
import select
import socket
import struct
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count
from typing import cast

import msgspec

from passtplan.log import traced

NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port
IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, proto, scope, type, flags
RTATTR = struct.Struct("=HH")
_unpack_rtattr = RTATTR.unpack_from
U32 = struct.Struct("=I")

NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_GETLINK, RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 18, 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_DUMP, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x300, 0x100, 0x200, 0x400

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_EXT_MASK, IFLA_LINK_NETNSID = 18, 20, 29, 37
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_MACVLAN_MODE = 1, 2, 1
IFLA_VXLAN_ID, IFLA_VXLAN_GROUP, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL = 1, 2, 3, 4
IFLA_VXLAN_PORT, IFLA_VXLAN_GROUP6, IFLA_VXLAN_LOCAL6 = 15, 16, 17
IFLA_TUN_OWNER, IFLA_TUN_TYPE, IFLA_TUN_PI, IFLA_TUN_VNET_HDR, IFLA_TUN_MULTI_QUEUE = 1, 3, 4, 5, 7
IFF_TUN, IFF_TAP, IFF_MULTI_QUEUE, IFF_NO_PI, IFF_VNET_HDR = 0x1, 0x2, 0x100, 0x1000, 0x4000
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15
IFA_F_NODAD = 0x02
RTNH_F_ONLINK = 0x4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255
# route scopes by the names `ip route` writes (iproute2's rt_scopes)
ROUTE_SCOPES = {"global": RT_SCOPE_UNIVERSE, "site": 200, "link": RT_SCOPE_LINK, "host": 254}
ROUTE_SCOPE_NAMES = {number: name for name, number in ROUTE_SCOPES.items()}
RTPROT_KERNEL, RTPROT_BOOT, RTN_UNICAST, RT_TABLE_LOCAL = 2, 3, 1, 255
MACVLAN_MODES = {1: "private", 2: "vepa", 4: "bridge", 8: "passthru", 16: "source"}
AF = {4: socket.AF_INET, 6: socket.AF_INET6}
CHUNK = 256  # requests per write; their acks fit the receive buffer with room to spare
RECV_SIZE = 1 << 20

_sequence = count(1 << 20)


class _Buffers:
    """Receive buffers lent to whichever thread reads: allocating 1 MiB per read costs 25 us,
    and one per thread would cost 1 MiB of memory for each of a big lab's namespace threads.
    As many exist as reads ever ran at once (a handful: the walker's workers)."""

    def __init__(self) -> None:
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()

    @contextmanager
    def lent(self) -> Iterator[bytearray]:
        try:
            buffer = self._free.get_nowait()
        except queue.Empty:
            buffer = bytearray(RECV_SIZE)
        try:
            yield buffer
        finally:
            self._free.put(buffer)


_buffers = _Buffers()


def _align(length: int) -> int:
    return (length + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    length = RTATTR.size + len(payload)
    return RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def message(kind: int, flags: int, body: bytes, seq: int) -> bytes:
    return NLMSG.pack(NLMSG.size + len(body), kind, flags, seq, 0) + body


def attributes(data: memoryview, offset: int) -> dict[int, memoryview]:
    """Attribute type -> payload; the hottest loop in observation, hence written tight."""
    found: dict[int, memoryview] = {}
    end = len(data) - 4
    unpack = _unpack_rtattr
    while offset <= end:
        length, kind = unpack(data, offset)
        if length < 4:
            break
        found[kind & 0x3FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def _string(value: memoryview | None) -> str | None:
    return None if value is None else bytes(value).split(b"\0", 1)[0].decode(errors="replace")


def _u32(value: memoryview | None, default: int = 0) -> int:
    return default if value is None else int(U32.unpack_from(value)[0])


def _u8(value: memoryview | None, default: int = 0) -> int:
    return default if value is None or not len(value) else int(value[0])


def _ip(value: memoryview | None) -> str | None:
    """inet_ntop gives the same canonical text as Python's ipaddress, at a fraction of the cost."""
    if value is None:
        return None
    return socket.inet_ntop(socket.AF_INET if len(value) == 4 else socket.AF_INET6, bytes(value))


def _wait_readable(sock: socket.socket, timeout: float = 30.0) -> None:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(timeout * 1000):
        raise TimeoutError("no answer from the kernel on netlink")


def _receive(sock: socket.socket) -> Iterator[tuple[int, int, int, memoryview]]:
    """(type, flags, sequence, payload) for each message of one read."""
    with _buffers.lent() as buffer:
        while True:
            try:
                size = sock.recv_into(buffer)
                break
            except BlockingIOError:  # pyroute2 may have made the socket non-blocking
                _wait_readable(sock)
        # A copy of just what arrived: callers keep payloads while the buffer is lent again.
        data = memoryview(bytes(memoryview(buffer)[:size]))
    offset = 0
    while offset + NLMSG.size <= len(data):
        length, kind, flags, seq, _ = NLMSG.unpack_from(data, offset)
        if length < NLMSG.size:
            break
        yield kind, flags, seq, data[offset + NLMSG.size : offset + length]
        offset += _align(length)


# The namespace each socket talks to, for --verbose (sockets that were given no name are shown
# by their file descriptor).
_socket_names: weakref.WeakKeyDictionary[socket.socket, str] = weakref.WeakKeyDictionary()


def name_socket(sock: socket.socket, namespace: str) -> None:
    _socket_names[sock] = namespace


def _where(sock: socket.socket) -> str:
    return f"in {_socket_names.get(sock) or f'socket {sock.fileno()}'}"


def _message_name(kind: int) -> str:
    return MESSAGE_NAMES.get(kind, str(kind))


def _describe_requests(sock: socket.socket, requests: list[bytes]) -> str:
    kinds = Counter(_message_name(NLMSG.unpack_from(r)[1]) for r in requests)
    listed = ", ".join(f"{n} {k}" for k, n in kinds.items())
    plural = "" if len(requests) == 1 else "s"
    return f"netlink {_where(sock)}: {len(requests)} request{plural} ({listed})"


@traced(lambda sock, kind, family=0: f"netlink {_where(sock)}: dump {_message_name(kind)}")
def dump(sock: socket.socket, kind: int, family: int = 0) -> list[memoryview]:
    """Every message of one dump request (RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE)."""
    seq = next(_sequence)
    if kind == RTM_GETLINK:
        # Without statistics, as `ip link show` asks: a third of the bytes to read and parse.
        body = IFINFO.pack(family, 0, 0, 0, 0) + attr(
            IFLA_EXT_MASK, U32.pack(RTEXT_FILTER_SKIP_STATS)
        )
    else:
        body = bytes([family]) + b"\0" * 11
    sock.send(message(kind, NLM_F_REQUEST | NLM_F_DUMP, body, seq))
    found: list[memoryview] = []
    while True:
        for msg_kind, _, msg_seq, payload in _receive(sock):
            if msg_seq != seq:
                continue  # a reply to someone else's request on this socket
            if msg_kind == NLMSG_DONE:
                return found
            if msg_kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", payload)[0]
                raise OSError(code, os.strerror(code))
            found.append(payload)


@traced(_describe_requests)
def transact(sock: socket.socket, requests: list[bytes]) -> list[int]:
    """Send requests (built with seq 0) pipelined, CHUNK per write: one errno each, 0 for ok."""
    results = [0] * len(requests)
    for start in range(0, len(requests), CHUNK):
        chunk = requests[start : start + CHUNK]
        seqs = {}
        buffer = bytearray()
        for index, request in enumerate(chunk, start):
            seq = next(_sequence)
            seqs[seq] = index
            buffer += request[:8] + U32.pack(seq) + request[12:]
        sock.send(bytes(buffer))
        while seqs:
            for msg_kind, _, seq, payload in _receive(sock):
                if msg_kind == NLMSG_ERROR and seq in seqs:
                    results[seqs.pop(seq)] = -struct.unpack_from("=i", payload)[0]
    return results


# --- decoding ------------------------------------------------------------------------------


class LinkInfo(msgspec.Struct, frozen=True):
    index: int
    name: str
    kind: str | None
    up: bool
    mtu: int
    mac: str | None
    master: int
    link: int
    link_netnsid: int | None
    alias: str | None
    data: dict[str, object]  # the kind's own settings (IFLA_INFO_DATA), as res.Link fields


def _macvlan_data(data: dict[int, memoryview]) -> dict[str, object]:
    return {"mode": MACVLAN_MODES.get(_u32(data.get(IFLA_MACVLAN_MODE)))}


def _is_multicast(packed: memoryview) -> bool:
    return packed[0] == 0xFF if len(packed) == 16 else packed[0] & 0xF0 == 0xE0


def _vxlan_data(data: dict[int, memoryview]) -> dict[str, object]:
    """The far end is one attribute, GROUP or GROUP6: a multicast address is a group. The port
    is in network byte order; dev is an ifindex here (to_links names it)."""
    far = data.get(IFLA_VXLAN_GROUP) or data.get(IFLA_VXLAN_GROUP6)
    group = far is not None and _is_multicast(far)
    port = data.get(IFLA_VXLAN_PORT)
    return {
        "vni": _u32(data.get(IFLA_VXLAN_ID)),
        "remote": None if group else _ip(far),
        "group": _ip(far) if group else None,
        "local": _ip(data.get(IFLA_VXLAN_LOCAL) or data.get(IFLA_VXLAN_LOCAL6)),
        "dstport": None if port is None else int(struct.unpack_from("!H", port)[0]),
        "dev": _u32(data.get(IFLA_VXLAN_LINK)),
    }


def _tun_data(data: dict[int, memoryview]) -> dict[str, object]:
    """The kernel's kind is tun for both; a tap is reported as kind tap, so that a lab's tap is
    compared with a tap. The owner is there only when one was set."""
    if _u8(data.get(IFLA_TUN_TYPE)) != IFF_TAP:
        return {"kind": "tun"}
    owner = data.get(IFLA_TUN_OWNER)
    return {"kind": "tap", "tap_owner": None if owner is None else _u32(owner)}


def tun_flags(data: dict[int, memoryview]) -> int:
    """The TUNSETIFF flags that attach to a tun or tap as it is: attaching sets them again."""
    flags = IFF_TAP if _u8(data.get(IFLA_TUN_TYPE)) == IFF_TAP else IFF_TUN
    if not _u8(data.get(IFLA_TUN_PI)):
        flags |= IFF_NO_PI
    if _u8(data.get(IFLA_TUN_VNET_HDR)):
        flags |= IFF_VNET_HDR
    if _u8(data.get(IFLA_TUN_MULTI_QUEUE)):
        flags |= IFF_MULTI_QUEUE
    return flags


# IFLA_INFO_DATA decoders by kind: each returns res.Link fields ("kind" replaces the kernel's).
KIND_DATA: dict[str, Callable[[dict[int, memoryview]], dict[str, object]]] = {
    "macvlan": _macvlan_data,
    "macvtap": _macvlan_data,
    "vxlan": _vxlan_data,
    "tun": _tun_data,
}


def info_data(payload: memoryview) -> tuple[str | None, dict[int, memoryview]]:
    """A link message's kind, as the kernel names it, and its IFLA_INFO_DATA attributes."""
    info = attributes(payload, IFINFO.size).get(IFLA_LINKINFO)
    if info is None:
        return None, {}
    nested = attributes(info, 0)
    raw = nested.get(IFLA_INFO_DATA)
    return _string(nested.get(IFLA_INFO_KIND)), attributes(raw, 0) if raw is not None else {}


def decode_link(payload: memoryview) -> LinkInfo:
    _, _, index, flags, _ = IFINFO.unpack_from(payload)
    found = attributes(payload, IFINFO.size)
    kind = None
    data: dict[str, object] = {}
    info = found.get(IFLA_LINKINFO)
    if info is not None:
        nested = attributes(info, 0)
        kind = _string(nested.get(IFLA_INFO_KIND))
        decoder = KIND_DATA.get(kind or "")
        if decoder is not None:
            raw = nested.get(IFLA_INFO_DATA)
            data = decoder(attributes(raw, 0) if raw is not None else {})
            kind = cast(str, data.pop("kind", kind))
    mac = found.get(IFLA_ADDRESS)
    netnsid = found.get(IFLA_LINK_NETNSID)
    return LinkInfo(
        index=index,
        name=_string(found.get(IFLA_IFNAME)) or f"if{index}",
        kind=kind,
        up=bool(flags & 1),
        mtu=_u32(found.get(IFLA_MTU)),
        mac=":".join(f"{b:02x}" for b in bytes(mac)) if mac is not None and len(mac) == 6 else None,
        master=_u32(found.get(IFLA_MASTER)),
        link=_u32(found.get(IFLA_LINK)),
        link_netnsid=None if netnsid is None else struct.unpack_from("=i", netnsid)[0],
        alias=_string(found.get(IFLA_IFALIAS)),
        data=data,
    )


class AddressInfo(msgspec.Struct, frozen=True):
    index: int
    cidr: str


def decode_address(payload: memoryview) -> AddressInfo | None:
    _, prefixlen, _, _, index = IFADDR.unpack_from(payload)
    found = attributes(payload, IFADDR.size)
    local = _ip(found.get(IFA_LOCAL) or found.get(IFA_ADDRESS))
    return None if local is None else AddressInfo(index, f"{local}/{prefixlen}")


class RouteInfo(msgspec.Struct, frozen=True):
    family: int
    dst: str | None
    dst_len: int
    table: int
    proto: int
    scope: int
    kind: int
    flags: int
    gateway: str | None
    oif: int
    priority: int


def decode_route(payload: memoryview) -> RouteInfo | None:
    """A route someone added; None for the kernel's own (local table, connected subnets,
    multicast), told apart by the fixed header before any attribute is parsed."""
    family, dst_len, _, _, table, proto, scope, kind, flags = RTMSG.unpack_from(payload)
    if table == RT_TABLE_LOCAL or proto == RTPROT_KERNEL or kind != RTN_UNICAST:
        return None
    found = attributes(payload, RTMSG.size)
    return RouteInfo(
        family=6 if family == socket.AF_INET6 else 4,
        dst=_ip(found.get(RTA_DST)),
        dst_len=dst_len,
        table=_u32(found.get(RTA_TABLE), table),
        proto=proto,
        scope=scope,
        kind=kind,
        flags=flags,
        gateway=_ip(found.get(RTA_GATEWAY)),
        oif=_u32(found.get(RTA_OIF)),
        priority=_u32(found.get(RTA_PRIORITY)),
    )


# --- encoding ------------------------------------------------------------------------------


def packed_ip(text: str) -> tuple[int, bytes]:
    """(address family, network-order bytes) of an address the models already validated."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    return family, socket.inet_pton(family, text)


def address_request(add: bool, index: int, cidr: str) -> bytes:
    ip, _, prefix = cidr.partition("/")
    family, packed = packed_ip(ip)
    body = IFADDR.pack(family, int(prefix), 0, RT_SCOPE_UNIVERSE, index)
    body += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
    if add and family == socket.AF_INET6:
        body += attr(IFA_FLAGS, U32.pack(IFA_F_NODAD))  # usable at once, no duplicate detection
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if add else 0)
    return message(RTM_NEWADDR if add else RTM_DELADDR, flags, body, 0)


class RouteSpec(msgspec.Struct, frozen=True):
    family: int
    dst: str | None  # None: default
    dst_len: int
    table: int
    metric: int
    gateway: str | None = None
    oif: int = 0
    onlink: bool = False
    protocol: int = RTPROT_BOOT
    scope: int | None = None  # None: as `ip route` works it out (universe with a gateway)


def route_scope_name(number: int) -> str:
    """A scope byte as the plan, the record and `ip route` write it: `link`, or `100`."""
    return ROUTE_SCOPE_NAMES.get(number, str(number))


def route_scope_number(name: str) -> int:
    """The scope byte of a name `route_scope_name` wrote."""
    return ROUTE_SCOPES[name] if name in ROUTE_SCOPES else int(name)


def route_request(replace: bool, route: RouteSpec) -> bytes:
    """`ip route replace` or `ip route del`, as iproute2 builds them."""
    table_byte = route.table if route.table < 256 else 0
    if replace:
        scope = route.scope
        if scope is None:
            scope = RT_SCOPE_UNIVERSE if route.gateway else RT_SCOPE_LINK
        head = RTMSG.pack(
            AF[route.family],
            route.dst_len,
            0,
            0,
            table_byte,
            route.protocol,
            scope,
            RTN_UNICAST,
            RTNH_F_ONLINK if route.onlink else 0,
        )
    else:  # delete: match whatever the scope and protocol
        head = RTMSG.pack(
            AF[route.family], route.dst_len, 0, 0, table_byte, 0, RT_SCOPE_NOWHERE, 0, 0
        )
    body = (
        head + attr(RTA_TABLE, U32.pack(route.table)) + attr(RTA_PRIORITY, U32.pack(route.metric))
    )
    if route.dst is not None:
        body += attr(RTA_DST, packed_ip(route.dst)[1])
    if replace and route.gateway is not None:
        body += attr(RTA_GATEWAY, packed_ip(route.gateway)[1])
    if replace and route.oif:
        body += attr(RTA_OIF, U32.pack(route.oif))
    if replace:
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        return message(RTM_NEWROUTE, flags, body, 0)
    return message(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, body, 0)


IGNORED_ON_DELETE = {errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENODEV}


@traced(lambda sock, kind, body, absent=(): f"netlink {_where(sock)}: {_message_name(kind)}")
def _ask(
    sock: socket.socket, kind: int, body: bytes, absent: tuple[int, ...] = ()
) -> memoryview | None:
    """One request and its one answer; None when the kernel answers with an errno in `absent`."""
    seq = next(_sequence)
    sock.send(message(kind, NLM_F_REQUEST, body, seq))
    while True:
        for msg_kind, _, msg_seq, payload in _receive(sock):
            if msg_seq != seq:
                continue
            if msg_kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", payload)[0]
                if code in absent:
                    return None
                raise OSError(code, os.strerror(code))
            return payload


def get_link(sock: socket.socket, name: str) -> memoryview | None:
    """`ip link show NAME`: the link's message, or None when there is no such link."""
    body = IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, name.encode() + b"\0")
    return _ask(sock, RTM_GETLINK, body, (errno.ENODEV, errno.ENOENT))


def link_index(sock: socket.socket, name: str) -> int | None:
    """The ifindex of link NAME, or None when there is no such link."""
    payload = get_link(sock, name)
    return None if payload is None else int(IFINFO.unpack_from(payload)[2])


RTM_NEWNSID, RTM_GETNSID = 88, 90
NETNSA_NSID, NETNSA_FD = 1, 3


def netnsid(sock: socket.socket, fd: int) -> int | None:
    """`ip netns identify`'s counterpart: the id this socket's namespace gives the namespace
    open at `fd` (what IFLA_LINK_NETNSID refers to), or None when it gave it none."""
    body = b"\0" * 4 + attr(NETNSA_FD, U32.pack(fd))  # rtgenmsg: family, padded
    payload = _ask(sock, RTM_GETNSID, body)
    found = None if payload is None else attributes(payload, 4).get(NETNSA_NSID)
    nsid = None if found is None else int(struct.unpack_from("=i", found)[0])
    return nsid if nsid is not None and nsid >= 0 else None


RTM_NEWLINK = 16
IFF_UP = 0x1


class LinkSettings(msgspec.Struct, frozen=True):
    """What `ip link set` changes on an existing link; None leaves a setting as it is."""

    alias: str | None = None
    mtu: int | None = None
    mac: str | None = None
    master: int | None = None  # an ifindex; 0 takes the link off its master


def link_set_requests(index: int, settings: LinkSettings, up: bool | None) -> list[bytes]:
    """The settings, then the up/down state in a request of its own (a link takes some settings,
    its MAC address among them, only while down), both for `transact`."""
    attrs = b""
    if settings.alias is not None:
        attrs += attr(IFLA_IFALIAS, settings.alias.encode() + b"\0")
    if settings.mtu is not None:
        attrs += attr(IFLA_MTU, U32.pack(settings.mtu))
    if settings.mac is not None:
        attrs += attr(IFLA_ADDRESS, bytes.fromhex(settings.mac.replace(":", "")))
    if settings.master is not None:
        attrs += attr(IFLA_MASTER, U32.pack(settings.master))
    requests = []
    if attrs:
        body = IFINFO.pack(0, 0, index, 0, 0) + attrs
        requests.append(message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, body, 0))
    if up is not None:
        body = IFINFO.pack(0, 0, index, IFF_UP if up else 0, IFF_UP)
        requests.append(message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, body, 0))
    return requests


RTM_DELLINK = 17


def link_delete_request(index: int) -> bytes:
    return message(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, IFINFO.pack(0, 0, index, 0, 0), 0)


# Message types by name, for --verbose: every RTM_ constant of this module.
MESSAGE_NAMES = {
    kind: name
    for name, kind in globals().items()
    if name.startswith("RTM_") and isinstance(kind, int)
}
