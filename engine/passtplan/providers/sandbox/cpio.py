"""newc ("new ASCII", magic 070701) cpio archives, the format the kernel unpacks as initramfs.

Only what an initramfs needs: regular files, directories and symlinks, owned by root, dated 0 so
an archive depends on its entries alone. The kernel unpacks several archives laid end to end
(each possibly gzip'd on its own), later entries overwriting earlier ones: a VM's overlay is an
archive appended to the cached base image (Documentation/driver-api/early-userspace/
buffer-format.rst).
"""

from __future__ import annotations

import stat
from collections.abc import Iterable

import msgspec

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
HEADER_SIZE = 110  # the magic and 13 fields of 8 hex digits
DIRECTORY_MODE = 0o755


class CpioEntry(msgspec.Struct, frozen=True):
    """One file of an archive. `mode` is the permission bits, optionally with the file type bits;
    without them the entry is a symlink when it has a target, else a regular file (directories
    say stat.S_IFDIR, or use CpioEntry.directory). `path` is absolute or relative to the root."""

    path: str
    mode: int
    data: bytes = b""
    target: str | None = None

    @classmethod
    def directory(cls, path: str, mode: int = DIRECTORY_MODE) -> CpioEntry:
        return cls(path, stat.S_IFDIR | mode)

    @classmethod
    def symlink(cls, path: str, target: str) -> CpioEntry:
        return cls(path, stat.S_IFLNK | 0o777, target=target)

    @property
    def name(self) -> str:
        """The name as stored: relative, without a leading or trailing slash."""
        return self.path.strip("/")

    @property
    def full_mode(self) -> int:
        if stat.S_IFMT(self.mode):
            return self.mode
        return self.mode | (stat.S_IFLNK if self.target is not None else stat.S_IFREG)

    @property
    def content(self) -> bytes:
        """What follows the header: a symlink's target, a file's data, nothing for a directory."""
        if stat.S_ISLNK(self.full_mode):
            if self.target is None:
                raise ValueError(f"cpio: symlink {self.path} has no target")
            return self.target.encode()
        if stat.S_ISDIR(self.full_mode) and self.data:
            raise ValueError(f"cpio: directory {self.path} cannot have data")
        return self.data


def newc(entries: Iterable[CpioEntry]) -> bytes:
    """The archive of `entries` in their order, with the trailer. A directory missing before a
    file inside it is added (mode 755): the kernel makes no parent directories by itself."""
    out = bytearray()
    for inode, entry in enumerate(_with_parents(entries), start=1):
        out += _member(entry.name, entry.full_mode, entry.content, inode)
    out += _member(TRAILER, 0, b"", 0)
    return bytes(out)


def _with_parents(entries: Iterable[CpioEntry]) -> Iterable[CpioEntry]:
    present: set[str] = set()
    for entry in entries:
        if not entry.name:
            raise ValueError(f"cpio: {entry.path!r} names no file")
        parts = entry.name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent not in present:
                present.add(parent)
                yield CpioEntry.directory(parent)
        present.add(entry.name)
        yield entry


def _member(name: str, mode: int, content: bytes, inode: int) -> bytes:
    encoded = name.encode() + b"\0"
    links = 2 if stat.S_ISDIR(mode) else 1  # never >1 for a file: the kernel would hard-link it
    fields = (inode, mode, 0, 0, links, 0, len(content), 0, 0, 0, 0, len(encoded), 0)
    header = MAGIC + b"".join(b"%08x" % value for value in fields)
    return _padded(header + encoded) + _padded(content)


def _padded(chunk: bytes) -> bytes:
    """newc aligns the name's end and the data's end to 4 bytes from the archive's start."""
    return chunk + b"\0" * (-len(chunk) % 4)
