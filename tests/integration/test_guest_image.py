"""The QEMU guest's image: built from Debian's packages into its cache once, then booted on the
real passt in a namespace this test makes, as the sandbox's driver boots it (the image plus a
VM's overlay archive), and reached on its exec channel and over ssh."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from passtplan.providers.ownership import RUN_DIR
from passtplan.providers.sandbox import accel
from passtplan.providers.sandbox.cpio import CpioEntry, newc
from passtplan.providers.sandbox.image import (
    GuestImage,
    ImageError,
    build_image,
    cached_image,
    installed_versions,
)
from tests.integration.conftest import cleanup, ip, unique_pod_ip
from tests.test_cpio import read_newc

if shutil.which(accel.QEMU) is None:
    pytest.skip(
        "qemu-system-x86 is not installed (scripts/setup installs it)", allow_module_level=True
    )

BOOT_DEADLINE = 300.0  # TCG on a busy two-CPU machine; an idle one is ready in 10-20 s
NOBODY = 65534
GATEWAY = "169.254.1.1"
PASST_MTU = 65520


@pytest.fixture(scope="module")
def image() -> GuestImage:
    try:
        installed_versions()
    except ImageError as error:
        pytest.skip(str(error))
    return build_image()


def test_the_image_holds_the_guest(image: GuestImage) -> None:
    (members,) = read_newc(gzip.decompress(image.initramfs.read_bytes()))
    by_name = {m.name: m for m in members}
    assert stat.S_IMODE(by_name["init"].mode) == 0o755
    assert by_name["sbin/udhcpc"].content == b"/bin/busybox"
    for needed in ("usr/sbin/dropbear", "usr/bin/tcpdump", "lib64/ld-linux-x86-64.so.2"):
        assert stat.S_ISREG(by_name[needed].mode), needed
    order = by_name["etc/passtplan/modules"].content.decode().split()
    names = [Path(p).stem for p in order]
    assert names.index("virtio_ring") < names.index("virtio") < names.index("virtio_net")
    assert names.index("failover") < names.index("net_failover") < names.index("virtio_net")
    assert all(f"lib/modules/{p}" in by_name for p in order)


def test_a_second_build_is_a_cache_hit(image: GuestImage) -> None:
    built = image.initramfs.stat().st_mtime_ns
    assert build_image() == image
    assert cached_image() == image
    assert image.initramfs.stat().st_mtime_ns == built
    assert not list(image.manifest.parent.parent.glob(".build-*"))


def test_a_cached_build_needs_no_apt(
    image: GuestImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline: this machine's programs without apt-get and apt-cache."""
    for directory in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for program in Path(directory).iterdir():
            link = tmp_path / program.name
            if not program.name.startswith("apt") and not link.exists():
                link.symlink_to(program)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("apt-cache") is None
    assert build_image() == image


def test_the_accelerator_probe_tells_a_boot(image: GuestImage) -> None:
    assert accel.boots(image, accel.TCG, deadline=BOOT_DEADLINE)
    picked = accel.pick_accelerator()
    assert picked in (accel.KVM, accel.TCG)
    if accel.kvm_usable():  # probed once, and the answer kept for this machine
        assert json.loads(accel.CHOICE.read_text())["accel"] == picked
    else:
        assert picked == accel.TCG
    assert accel.pick_accelerator() == picked


# --- a booted guest --------------------------------------------------------------------------


@dataclass(frozen=True)
class Guest:
    name: str
    netns: str
    address: str
    directory: Path
    key: Path

    @property
    def console(self) -> str:
        return (self.directory / "console.log").read_text(errors="replace")

    def exec(self, command: str, timeout: float = 60.0) -> tuple[int, str]:
        """A command on the exec channel (ttyS1), as the contract describes it."""
        marker = f"__PASSTPLAN_END_{secrets.token_hex(4)}"
        ending = re.compile(rf"{marker} (\d+)\n".encode())
        with socket.socket(socket.AF_UNIX) as channel:
            channel.connect(str(self.directory / "exec.sock"))
            channel.settimeout(timeout)
            channel.sendall(f'{command}; echo "{marker} $?"\n'.encode())
            received = b""
            while not (found := ending.search(received)):
                chunk = channel.recv(65536)
                assert chunk, f"exec channel closed after {received!r}"
                received += chunk
        return int(found[1]), received[: found.start()].decode()


def _pod_namespace(netns: str, address: str) -> None:
    """A launcher pod as the CNI leaves it: eth0 with a /32 and a default route via
    169.254.1.1 on the link (its peer stays inside: nothing routes beyond the pod here)."""
    ip("netns", "add", netns)
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0", netns=netns)
    for link in ("lo", "eth0", "peer0"):
        ip("link", "set", link, "up", netns=netns)
    ip("address", "add", f"{address}/32", "dev", "eth0", netns=netns)
    ip("route", "add", GATEWAY, "dev", "eth0", "scope", "link", netns=netns)
    ip("route", "add", "default", "via", GATEWAY, "dev", "eth0", netns=netns)
    subprocess.run(
        ["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"],
        check=True,
    )


def _start_passt(netns: str, sockets: Path) -> int:
    """passt as libvirt starts it; its socket directory is nobody's, whom passt becomes."""
    sockets.mkdir(mode=0o700)
    os.chown(sockets, NOBODY, NOBODY)
    command = ["ip", "netns", "exec", netns, "passt", "--one-off", "-t", "22"]
    command += ["--socket", str(sockets / "passt.socket"), "--pid", str(sockets / "passt.pid")]
    subprocess.run(command, check=True, capture_output=True)  # returns once passt is bound
    return int((sockets / "passt.pid").read_text())


def _overlay(name: str, public_key: str) -> bytes:
    return gzip.compress(
        newc(
            [
                CpioEntry(
                    "etc/passtplan/guest.env",
                    0o644,
                    f"GUEST_HOSTNAME='{name}'\nGUEST_SSH_PORTS='22'\nGUEST_MTU_FROM_DHCP=1\n".encode(),
                ),
                CpioEntry("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n"),
                CpioEntry.directory("root", 0o700),
                CpioEntry.directory("root/.ssh", 0o700),
                CpioEntry("root/.ssh/authorized_keys", 0o600, public_key.encode()),
            ]
        )
    )


def _qemu_command(image: GuestImage, directory: Path, initrd: Path) -> list[str]:
    serial = "socket,server=on,wait=off,path="
    return [
        accel.QEMU,
        "-accel",
        accel.pick_accelerator(),
        "-m",
        "256",
        "-nographic",
        "-nodefaults",
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(initrd),
        "-append",
        "console=ttyS0 quiet",
        "-chardev",
        f"{serial}{directory / 'console.sock'},id=console,logfile={directory / 'console.log'}",
        "-serial",
        "chardev:console",
        "-chardev",
        f"{serial}{directory / 'exec.sock'},id=exec",
        "-serial",
        "chardev:exec",
        "-netdev",
        f"stream,id=n0,server=off,addr.type=unix,addr.path={directory / 'passt' / 'passt.socket'}",
        "-device",
        "virtio-net-pci,netdev=n0,mac=52:54:00:5a:17:01,romfile=",
    ]


def _wait_ready(guest: Guest, qemu: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + BOOT_DEADLINE
    while time.monotonic() < deadline:
        log = guest.directory / "console.log"
        if log.exists() and "PASSTPLAN-GUEST-READY" in guest.console:
            return
        assert qemu.poll() is None, f"QEMU exited: {(guest.directory / 'qemu.log').read_text()}"
        time.sleep(0.2)  # polling the console log of a boot, bounded by the deadline
    raise AssertionError(f"no PASSTPLAN-GUEST-READY in {BOOT_DEADLINE:.0f} s:\n{guest.console}")


@pytest.fixture(scope="module")
def guest(image: GuestImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    name = f"pt{secrets.token_hex(3)}"
    keys = tmp_path_factory.mktemp("key")
    key = keys / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    booted = Guest(name, f"{name}-pod", unique_pod_ip(), RUN_DIR / f"{name}-guest", key)
    qemu: subprocess.Popen[bytes] | None = None
    passt = 0
    try:
        booted.directory.mkdir(parents=True)
        _pod_namespace(booted.netns, booted.address)
        passt = _start_passt(booted.netns, booted.directory / "passt")
        initrd = booted.directory / "initrd"
        initrd.write_bytes(
            image.initramfs.read_bytes() + _overlay(name, key.with_suffix(".pub").read_text())
        )
        with (booted.directory / "qemu.log").open("wb") as log:
            qemu = subprocess.Popen(
                _qemu_command(image, booted.directory, initrd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_ready(booted, qemu)
        yield booted
    finally:
        if qemu is not None:
            qemu.kill()
            qemu.wait()
        if passt:
            with contextlib.suppress(ProcessLookupError):
                os.kill(passt, signal.SIGKILL)
        cleanup(name)


def test_the_guest_takes_passts_lease_and_mtu(guest: Guest) -> None:
    assert f"PASSTPLAN-GUEST-READY {guest.address}/32 mtu {PASST_MTU}" in guest.console
    code, shown = guest.exec("ip -4 addr show eth0")
    assert code == 0
    assert f"mtu {PASST_MTU}" in shown
    assert f"inet {guest.address}/32" in shown
    code, routes = guest.exec("ip route")
    assert f"default via {GATEWAY} dev eth0" in routes
    assert f"{GATEWAY} dev eth0 scope link" in routes


def test_the_exec_channel_returns_output_and_status(guest: Guest) -> None:
    assert guest.exec("hostname") == (0, f"{guest.name}\n")
    assert guest.exec("echo out; echo err >&2; (exit 3)") == (3, "out\nerr\n")
    assert guest.exec("cat") == (0, "")  # stdin is /dev/null, not the channel


def test_tcpdump_captures_in_the_guest(guest: Guest) -> None:
    """With the overlay's own /etc/passwd, which lacks the user Debian's tcpdump drops to."""
    _, shown = guest.exec(
        "timeout 20 tcpdump -l -n -i lo -c 1 icmp & sleep 2; ping -c 3 127.0.0.1 >/dev/null; wait"
    )
    assert "ICMP echo request" in shown, shown


def test_the_console_has_a_root_shell(guest: Guest) -> None:
    with socket.socket(socket.AF_UNIX) as console:
        console.connect(str(guest.directory / "console.sock"))
        console.settimeout(60)
        console.sendall(b"echo $((6 * 7))-$(id -u)\n")
        received = b""
        while b"42-0" not in received:
            chunk = console.recv(4096)
            assert chunk, f"console closed after {received!r}"
            received += chunk


@pytest.mark.skipif(shutil.which("ssh") is None, reason="openssh-client is not installed")
def test_ssh_with_the_overlays_key_lands_in_the_guest(guest: Guest) -> None:
    command = [
        "ip",
        "netns",
        "exec",
        guest.netns,
        "ssh",
        "-i",
        str(guest.key),
        "-o",
        "BatchMode=yes",
    ]
    command += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    command += ["-o", "ConnectTimeout=60", f"root@{guest.address}", "hostname; id -u"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout) == (0, f"{guest.name}\n0\n"), done.stderr
