"""The newc writer, read back by a reader written from the kernel's format description
(Documentation/driver-api/early-userspace/buffer-format.rst) and by GNU cpio when installed."""

from __future__ import annotations

import gzip
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from passtplan.providers.sandbox.cpio import CpioEntry, newc


@dataclass(frozen=True)
class Member:
    name: str
    mode: int
    links: int
    content: bytes


def read_newc(data: bytes) -> list[list[Member]]:
    """Every archive laid end to end in `data` (NUL padding between them allowed, as the
    kernel allows), each as its members without the trailer."""
    archives: list[list[Member]] = []
    at = 0
    while at < len(data):
        if data[at] == 0:
            at += 1
            continue
        members: list[Member] = []
        while True:
            assert at % 4 == 0, f"header at {at} is not 4-aligned"
            assert data[at : at + 6] == b"070701", f"bad magic at {at}"
            fields = [int(data[at + 6 + 8 * i : at + 14 + 8 * i], 16) for i in range(13)]
            mode, links, size, namesize = fields[1], fields[4], fields[6], fields[11]
            assert fields[2] == fields[3] == fields[5] == fields[12] == 0  # uid gid mtime check
            name_end = at + 110 + namesize
            assert data[name_end - 1] == 0
            name = data[at + 110 : name_end - 1].decode()
            start = name_end + (-name_end % 4)
            content = data[start : start + size]
            at = start + size + (-(start + size) % 4)
            if name == "TRAILER!!!":
                break
            members.append(Member(name, mode, links, content))
        archives.append(members)
    return archives


def test_files_directories_and_symlinks_read_back() -> None:
    entries = [
        CpioEntry.directory("/root", 0o700),
        CpioEntry("/init", 0o755, b"#!/bin/sh\n"),
        CpioEntry("etc/passtplan/guest.env", 0o644, b"GUEST_HOSTNAME='vm'\n"),
        CpioEntry.symlink("bin/sh", "/bin/busybox"),
        CpioEntry("bin/ls", 0o777, target="busybox"),  # a target alone makes a symlink
    ]
    (members,) = read_newc(newc(entries))
    assert [(m.name, stat.S_IFMT(m.mode), m.mode & 0o7777, m.content) for m in members] == [
        ("root", stat.S_IFDIR, 0o700, b""),
        ("init", stat.S_IFREG, 0o755, b"#!/bin/sh\n"),
        ("etc", stat.S_IFDIR, 0o755, b""),
        ("etc/passtplan", stat.S_IFDIR, 0o755, b""),
        ("etc/passtplan/guest.env", stat.S_IFREG, 0o644, b"GUEST_HOSTNAME='vm'\n"),
        ("bin", stat.S_IFDIR, 0o755, b""),
        ("bin/sh", stat.S_IFLNK, 0o777, b"/bin/busybox"),
        ("bin/ls", stat.S_IFLNK, 0o777, b"busybox"),
    ]


def test_no_file_claims_a_hard_link() -> None:
    """The kernel links regular files with nlink > 1 to an earlier one of the same inode."""
    entries = [CpioEntry(f"f{i}", 0o644, bytes(i)) for i in range(5)]
    (members,) = read_newc(newc([CpioEntry.directory("d"), *entries]))
    assert [m.links for m in members] == [2, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("size", range(9))
def test_every_name_and_data_length_stays_aligned(size: int) -> None:
    entries = [CpioEntry("a" * (size + 1), 0o644, b"x" * size), CpioEntry("z", 0o644, b"end")]
    (members,) = read_newc(newc(entries))
    assert [m.content for m in members] == [b"x" * size, b"end"]


def test_gzip_archives_concatenated_read_as_base_then_overlay() -> None:
    base = gzip.compress(newc([CpioEntry("etc/passtplan/guest.env", 0o644, b"default\n")]))
    overlay = gzip.compress(newc([CpioEntry("etc/passtplan/guest.env", 0o600, b"vm\n")]))
    first, second = read_newc(gzip.decompress(base + overlay))
    assert first[-1].content == b"default\n"
    assert (second[-1].name, second[-1].mode & 0o777, second[-1].content) == (
        "etc/passtplan/guest.env",
        0o600,
        b"vm\n",
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (CpioEntry("/", 0o755), "names no file"),
        (CpioEntry("etc", stat.S_IFDIR | 0o755, b"data"), "cannot have data"),
        (CpioEntry("bin/sh", stat.S_IFLNK | 0o777), "has no target"),
    ],
)
def test_malformed_entries_are_refused(entry: CpioEntry, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        newc([entry])


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio is not installed")
def test_gnu_cpio_extracts_what_was_written(tmp_path: Path) -> None:
    archive = newc(
        [
            CpioEntry.directory("root", 0o700),
            CpioEntry("root/.ssh/authorized_keys", 0o600, b"ssh-ed25519 AAAA test\n"),
            CpioEntry.symlink("bin/sh", "busybox"),
            CpioEntry("bin/busybox", 0o755, bytes(range(256)) * 3),
        ]
    )
    listed = subprocess.run(
        ["cpio", "-t", "--quiet"], input=archive, capture_output=True, check=True
    )
    assert listed.stdout.decode().split() == [
        "root",
        "root/.ssh",
        "root/.ssh/authorized_keys",
        "bin",
        "bin/sh",
        "bin/busybox",
    ]
    subprocess.run(
        ["cpio", "-i", "-d", "--quiet", "--no-absolute-filenames"],
        input=archive,
        cwd=tmp_path,
        check=True,
    )
    assert (tmp_path / "root/.ssh/authorized_keys").read_bytes() == b"ssh-ed25519 AAAA test\n"
    assert stat.S_IMODE((tmp_path / "root/.ssh/authorized_keys").stat().st_mode) == 0o600
    assert (tmp_path / "bin/sh").readlink() == Path("busybox")
    assert (tmp_path / "bin/busybox").read_bytes() == bytes(range(256)) * 3
