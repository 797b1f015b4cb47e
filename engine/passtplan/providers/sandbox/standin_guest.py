"""The sandbox's guest: what a VM's virtio-net device and operating system do for passt.

Run as its own process (`python -m passtplan.providers.sandbox.standin_guest`), started by the
stand-in guest driver (standin.py) where a VM's QEMU would run. It
- enters the guest's network namespace and makes a tap device `eth0` with QEMU's default MAC;
- connects to passt's UNIX socket as QEMU does (`-netdev stream`): every Ethernet frame in
  either direction is preceded by its length as a 4-byte big-endian integer;
- asks passt's DHCP server for an address, as the VM's DHCP client would, speaking DHCP in raw
  frames over the socket, and configures eth0 with the address, mask, router and MTU offered
  (a real DHCP client here would rewrite the machine's own /etc/resolv.conf);
- relays frames between eth0 and passt, reconnecting when passt is restarted: like a VM, the
  guest keeps its lease across that;
- answers on the VM's TCP ports with a one-line banner, as sshd would greet an ssh client.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import msgspec

from passtplan.inet import checksum
from passtplan.providers import kernel

GUEST_MAC = "52:54:00:12:34:56"  # QEMU's default, the guest MAC in the seed lab
DHCP_COOKIE = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, ACK = 1, 2, 3, 5
FRAME_MAX = 65536 + 14


class Lease(msgspec.Struct, frozen=True):
    address: str
    prefixlen: int
    router: str | None
    mtu: int | None
    dns: list[str]
    server: str


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} guest: {message}", flush=True)


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


# --- the socket, with QEMU's stream framing ---------------------------------------------------


def connect(path: Path, deadline: float) -> socket.socket:
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # polling for passt's socket to appear, bounded by the deadline


def send_frame(sock: socket.socket, frame: bytes) -> None:
    sock.sendall(struct.pack("!I", len(frame)) + frame)


def read_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("passt closed the socket")
        data += chunk
    return bytes(data)


def recv_frame(sock: socket.socket) -> bytes:
    (length,) = struct.unpack("!I", read_exact(sock, 4))
    return read_exact(sock, length)


# --- DHCP, in raw frames --------------------------------------------------------------------


def dhcp_frame(mac: bytes, xid: int, kind: int, extra: bytes = b"") -> bytes:
    options = bytes([53, 1, kind]) + extra + bytes([55, 5, 1, 3, 6, 26, 15, 255])
    bootp = struct.pack("!BBBBIHH", 1, 1, 6, 0, xid, 0, 0x8000) + b"\0" * 16
    bootp += mac + b"\0" * 10 + b"\0" * 192 + DHCP_COOKIE + options
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\0" * 4, b"\xff" * 4
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return b"\xff" * 6 + mac + b"\x08\x00" + header + udp


def parse_dhcp(frame: bytes, xid: int) -> tuple[int, bytes, dict[int, bytes]] | None:
    """(message type, offered address, options) of a DHCP reply to us, or None."""
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ip_len = (frame[14] & 0x0F) * 4
    udp = 14 + ip_len
    if struct.unpack("!H", frame[udp + 2 : udp + 4])[0] != 68:
        return None
    bootp = frame[udp + 8 :]
    if bootp[0] != 2 or struct.unpack("!I", bootp[4:8])[0] != xid or bootp[236:240] != DHCP_COOKIE:
        return None
    options: dict[int, bytes] = {}
    index = 240
    while index < len(bootp) and bootp[index] != 255:
        if bootp[index] == 0:
            index += 1
            continue
        code, length = bootp[index], bootp[index + 1]
        options[code] = bootp[index + 2 : index + 2 + length]
        index += 2 + length
    kind = options.get(53, b"\0")[0]
    return kind, bootp[16:20], options


def dhcp(sock: socket.socket, mac: bytes, deadline: float) -> Lease:
    xid = random.getrandbits(32)
    send_frame(sock, dhcp_frame(mac, xid, DISCOVER))
    offer = _await(sock, xid, OFFER, deadline)
    address, options = offer
    server = options.get(54, b"\0\0\0\0")
    extra = bytes([50, 4]) + address + bytes([54, 4]) + server
    send_frame(sock, dhcp_frame(mac, xid, REQUEST, extra))
    address, options = _await(sock, xid, ACK, deadline)
    mask = options.get(1, b"\xff\xff\xff\xff")
    dns = options.get(6, b"")
    return Lease(
        address=socket.inet_ntoa(address),
        prefixlen=bin(int.from_bytes(mask, "big")).count("1"),
        router=socket.inet_ntoa(options[3][:4]) if 3 in options else None,
        mtu=struct.unpack("!H", options[26])[0] if 26 in options else None,
        dns=[socket.inet_ntoa(dns[i : i + 4]) for i in range(0, len(dns), 4)],
        server=socket.inet_ntoa(server),
    )


def _await(
    sock: socket.socket, xid: int, kind: int, deadline: float
) -> tuple[bytes, dict[int, bytes]]:
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        reply = parse_dhcp(recv_frame(sock), xid)
        if reply is not None and reply[0] == kind:
            return reply[1], reply[2]
    raise TimeoutError(f"no DHCP {'offer' if kind == OFFER else 'ack'} from passt")


def configure(lease: Lease, tap: str, mac: str) -> None:
    from pyroute2 import IPRoute  # noqa: PLC0415

    with IPRoute() as ipr:
        (lo,) = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=lo, state="up")
        (index,) = ipr.link_lookup(ifname=tap)
        ipr.link("set", index=index, address=mac)
        if lease.mtu:
            ipr.link("set", index=index, mtu=lease.mtu)
        ipr.link("set", index=index, state="up")
        ipr.addr("add", index=index, address=lease.address, prefixlen=lease.prefixlen)
        if lease.router:
            # The router of a /32 lease is outside any subnet: reach it on the link, as
            # a guest's DHCP client does for passt's and Calico's 169.254.1.1.
            ipr.route("add", dst="0.0.0.0/0", gateway=lease.router, oif=index, flags=4)


# --- relay and banner -----------------------------------------------------------------------


def announce(router: str | None) -> None:
    """One echo request to the router, as a VM's stack talks when its link comes back: passt
    learns the guest's address from the guest's own packets, and a restarted passt has seen
    none yet."""
    if router is None:
        return
    header = struct.pack("!BBHHH", 8, 0, 0, os.getpid() & 0xFFFF, 1)
    packet = struct.pack("!BBHHH", 8, 0, checksum(header), os.getpid() & 0xFFFF, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        try:
            sock.sendto(packet, (router, 0))
        except OSError as exc:
            log(f"could not announce to {router}: {exc}")


class Relay:
    def __init__(self, tap_fd: int, path: Path, router: str | None) -> None:
        self.tap_fd = tap_fd
        self.path = path
        self.router = router
        self.sock: socket.socket | None = None
        self.lock = threading.Lock()
        self.connected = threading.Event()

    def attach(self, sock: socket.socket) -> None:
        with self.lock:
            self.sock = sock
        self.connected.set()

    def tap_to_passt(self) -> None:
        while True:
            frame = os.read(self.tap_fd, FRAME_MAX)
            self.connected.wait()
            with self.lock:
                sock = self.sock
            try:
                if sock is not None:
                    send_frame(sock, frame)
            except OSError:
                pass  # passt is gone; the other direction reconnects

    def passt_to_tap(self) -> None:
        while True:
            with self.lock:
                sock = self.sock
            assert sock is not None
            try:
                while True:
                    os.write(self.tap_fd, recv_frame(sock))
            except (OSError, ConnectionError) as exc:
                log(f"lost passt ({exc}); waiting for it to come back")
                self.connected.clear()
                sock.close()
                self.attach(connect(self.path, deadline=float("inf")))
                log("reconnected to passt")
                announce(self.router)


def banner_service(port: int, text: str) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(16)
    while True:
        client, _ = server.accept()
        threading.Thread(target=greet, args=(client, text), daemon=True).start()


def greet(client: socket.socket, text: str) -> None:
    """As sshd: send the version line, read the client's, then close without a reset (closing
    with unread data would make the kernel answer with RST)."""
    with client:
        client.settimeout(5)
        try:
            client.sendall(text.encode() + b"\r\n")
            client.recv(4096)
            client.shutdown(socket.SHUT_WR)
            while client.recv(4096):
                pass
        except OSError:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--netns", type=Path, required=True, help="the guest's namespace file")
    parser.add_argument("--socket", type=Path, required=True, help="passt's UNIX socket")
    parser.add_argument("--lease", type=Path, required=True, help="where to write the lease")
    parser.add_argument("--name", required=True, help="the VM's name, for the banner")
    parser.add_argument("--port", type=int, action="append", default=[], help="a TCP port")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    kernel.enter(args.netns)  # before any thread: the whole process lives there
    tap_fd = kernel.attach_tun(None, "eth0", kernel.IFF_TAP | kernel.IFF_NO_PI)
    deadline = time.monotonic() + args.timeout
    sock = connect(args.socket, deadline)
    log(f"connected to passt at {args.socket}")
    lease = dhcp(sock, mac_bytes(GUEST_MAC), deadline)
    configure(lease, "eth0", GUEST_MAC)
    args.lease.write_text(json.dumps(msgspec.structs.asdict(lease)) + "\n")
    log(
        f"DHCP lease from passt: {lease.address}/{lease.prefixlen} "
        f"router {lease.router} mtu {lease.mtu}"
    )
    relay = Relay(tap_fd, args.socket, lease.router)
    relay.attach(sock)
    for port in args.port:
        text = f"SSH-2.0-passtplan_guest {args.name}"
        threading.Thread(target=banner_service, args=(port, text), daemon=True).start()
    threading.Thread(target=relay.tap_to_passt, daemon=True).start()
    relay.passt_to_tap()
    return 0


if __name__ == "__main__":
    sys.exit(main())
