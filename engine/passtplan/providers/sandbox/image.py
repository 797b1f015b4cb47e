"""The QEMU guest's image: Debian's cloud kernel and an initramfs made from Debian packages.

The initramfs holds busybox (static, with its applet links), dropbear and tcpdump with the
libraries ldd names, virtio_net and the modules it needs, taken from the kernel package, and the
guest's own scripts (guest/: /init, the udhcpc hook, the exec channel, inittab). It is built once
per set of inputs (package versions, the files taken from this machine, the scripts, the
builder's own source) into IMAGE_ROOT/<digest>/ with a manifest.json; a later build with the same
inputs reuses it, and needs no apt once the kernel's .deb is kept in IMAGE_ROOT/debs/.

`python -m passtplan.providers.sandbox.image build|show`: what scripts/setup runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import msgspec

from passtplan.errors import PasstplanError
from passtplan.providers.sandbox import cpio
from passtplan.providers.sandbox.cpio import CpioEntry, newc

IMAGE_ROOT = Path("/var/cache/passtplan/guest")
PIN = IMAGE_ROOT / "kernel.json"  # the kernel package of the last build
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
APT_LISTS = Path("/var/lib/apt/lists")
STALE_AFTER = 7 * 24 * 3600.0  # seconds an image of other inputs is kept
GUEST_PACKAGES = ("busybox-static", "dropbear-bin", "tcpdump")
BUSYBOX = Path("/bin/busybox")
PROGRAMS = (Path("/usr/sbin/dropbear"), Path("/usr/bin/dropbearkey"), Path("/usr/bin/tcpdump"))
MODULES = ("virtio_pci", "virtio_net")  # the cloud kernel builds both as modules
MODULE = "python -m passtplan.providers.sandbox.image"
BUILD = f"{MODULE} build"
INSTALL = (
    "apt-get install --no-install-recommends qemu-system-x86 busybox-static dropbear-bin tcpdump"
    " (or run scripts/setup)"
)
# The guest's scripts (package data in guest/) and where they go in the image, with their modes.
SCRIPTS = {
    "init": ("init", 0o755),
    "udhcpc.script": ("etc/passtplan/udhcpc.script", 0o755),
    "exec-channel": ("etc/passtplan/exec-channel", 0o755),
    "inittab": ("etc/inittab", 0o644),
}
# Accounts of a busybox guest: root logs in with a key (a `*` password takes none; dropbear
# refuses every method to a `!` locked account). An overlay may replace these files.
ACCOUNT_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\ntty:x:5:\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\n",
    "etc/shells": "/bin/sh\n/bin/ash\n",
    "etc/passtplan/guest.env": (
        "GUEST_HOSTNAME='guest'\nGUEST_SSH_PORTS='22'\nGUEST_MTU_FROM_DHCP=1\n"
    ),
}
DIRECTORIES = {".": 0o755, "root": 0o700, "tmp": 0o1777, "proc": 0o555, "sys": 0o555, "dev": 0o755}


class ImageError(PasstplanError):
    pass


class GuestImage(msgspec.Struct, frozen=True):
    kernel: Path
    initramfs: Path
    digest: str
    manifest: Path


class KernelPackage(msgspec.Struct, frozen=True):
    """The kernel package the metapackage depends on, e.g. linux-image-6.1.0-56-cloud-amd64."""

    name: str
    version: str

    @property
    def deb(self) -> Path:
        return IMAGE_ROOT / "debs" / f"{self.name}_{self.version.replace(':', '%3a')}_amd64.deb"


class Inputs(msgspec.Struct, frozen=True):
    """Everything the image is made of, by name and version or content hash."""

    kernel: KernelPackage
    builder: str  # sha256 of this module and the cpio writer: what the image is laid out by
    packages: dict[str, str]  # package -> installed version
    host_files: dict[str, str]  # path on this machine -> sha256
    scripts: dict[str, str]  # script -> sha256

    @property
    def digest(self) -> str:
        return _sha256(json.dumps(msgspec.to_builtins(self), sort_keys=True).encode())[:16]


# --- the inputs ----------------------------------------------------------------------------


def kernel_candidate() -> KernelPackage | None:
    """What apt would install for the metapackage now (apt's local lists: no network)."""
    try:
        shown = _run(["apt-cache", "show", "--no-all-versions", KERNEL_METAPACKAGE])
    except ImageError:
        return None
    found = re.search(r"^Depends:.*?(linux-image-\S+) \(= ([^)\s]+)\)", shown, re.MULTILINE)
    return KernelPackage(found[1], found[2]) if found else None


def pinned_kernel() -> KernelPackage | None:
    """The kernel of the last build, kept so a cached image is found without apt."""
    record = _pin_record()
    try:
        return KernelPackage(str(record["name"]), str(record["version"]))
    except KeyError:
        return None


def build_kernel() -> KernelPackage | None:
    """The kernel a build takes: the last build's while apt's lists are those it was chosen
    from, else apt's candidate now (or the last build's when apt knows none: lists gone)."""
    pinned = pinned_kernel()
    if pinned is not None and _pin_record().get("apt_lists") == _apt_lists_stamp():
        return pinned
    return kernel_candidate() or pinned


def _pin_record() -> dict[str, object]:
    try:
        record = json.loads(PIN.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _apt_lists_stamp() -> str:
    """When apt's package lists last changed (apt-get update rewrites what changed)."""
    try:
        newest = max((p.stat().st_mtime_ns for p in APT_LISTS.glob("*_Packages*")), default=0)
    except OSError:
        newest = 0
    return str(newest)


def installed_versions() -> dict[str, str]:
    try:
        shown = "${Package} ${db:Status-Abbrev} ${Version}\n"
        listed = _run(["dpkg-query", "-W", "-f", shown, *GUEST_PACKAGES])
    except ImageError:
        listed = ""
    versions = {}
    for line in listed.splitlines():
        name, status, version = line.split(maxsplit=2)
        if status.startswith("ii"):
            versions[name] = version
    missing = [p for p in GUEST_PACKAGES if p not in versions]
    if missing:
        raise ImageError(f"guest image: {', '.join(missing)} not installed: {INSTALL}")
    return versions


def host_files() -> list[Path]:
    """busybox, the dynamic programs and every library ldd finds for them."""
    found = {BUSYBOX, *PROGRAMS}
    for program in PROGRAMS:
        found.update(_libraries(program))
    return sorted(found)


def _libraries(program: Path) -> list[Path]:
    listed = _run(["ldd", str(program)])
    libraries = []
    for line in listed.splitlines():
        if "not found" in line:
            raise ImageError(
                f"guest image: {program} needs {line.split()[0]}, not found: {INSTALL}"
            )
        path = re.search(r"(/\S+) \(0x", line)
        if path:
            libraries.append(Path(path[1]))
    return libraries


def script_text(name: str) -> bytes:
    return resources.files("passtplan.providers.sandbox").joinpath("guest", name).read_bytes()


def inputs(kernel: KernelPackage) -> Inputs:
    return Inputs(
        kernel=kernel,
        builder=_sha256(_read(Path(__file__)) + _read(Path(cpio.__file__))),
        packages=installed_versions(),
        host_files={str(p): _sha256(_read(p)) for p in host_files()},
        scripts={name: _sha256(script_text(name)) for name in SCRIPTS},
    )


# --- the cache -----------------------------------------------------------------------------


def cached_image() -> GuestImage | None:
    """The image of this machine's inputs when it is built; never builds, never calls apt."""
    kernel = pinned_kernel()
    if kernel is None:
        return None
    try:
        return _complete(inputs(kernel).digest)
    except ImageError:
        return None


def _complete(digest: str) -> GuestImage | None:
    image = GuestImage(
        kernel=IMAGE_ROOT / digest / "vmlinuz",
        initramfs=IMAGE_ROOT / digest / "initramfs.gz",
        digest=digest,
        manifest=IMAGE_ROOT / digest / "manifest.json",
    )
    if all(p.is_file() for p in (image.kernel, image.initramfs, image.manifest)):
        return image
    return None


def build_image() -> GuestImage:
    """The image of this machine's inputs, built when it is not cached. The kernel is apt's
    candidate (see build_kernel)."""
    kernel = build_kernel()
    if kernel is None:
        raise ImageError(
            f"guest image: apt knows no {KERNEL_METAPACKAGE}: run apt-get update (Debian 12's "
            "main and security sources)"
        )
    wanted = inputs(kernel)
    try:
        IMAGE_ROOT.mkdir(parents=True, exist_ok=True)
        with _build_lock():  # two labs applied at once build it once
            image = _complete(wanted.digest) or _build(wanted)
            _pin(kernel)
            _prune(keep=image.digest, deb=kernel.deb)
    except OSError as error:
        denied = error.errno in (errno.EACCES, errno.EPERM)
        fix = "run it as root (scripts/setup does)" if denied else "it must be a writable directory"
        raise ImageError(f"guest image: {error.filename}: {error.strerror}: {fix}") from None
    return image


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    with (IMAGE_ROOT / ".build.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build(wanted: Inputs) -> GuestImage:
    started = time.monotonic()
    deb = _kernel_deb(wanted.kernel)
    with tempfile.TemporaryDirectory(dir=IMAGE_ROOT, prefix=".build-") as scratch:
        work = Path(scratch)
        _run(["dpkg-deb", "-x", str(deb), str(work / "kernel")])
        release, vmlinuz, modules = _kernel_parts(work / "kernel")
        entries = [*_base_entries(wanted.host_files), *modules, _module_list(modules)]
        out = work / "image"
        out.mkdir()
        shutil.copyfile(vmlinuz, out / "vmlinuz")
        (out / "initramfs.gz").write_bytes(gzip.compress(newc(entries), 9, mtime=0))
        manifest = {
            "builder": wanted.builder,
            "digest": wanted.digest,
            "kernel": {**msgspec.structs.asdict(wanted.kernel), "release": release},
            "packages": wanted.packages,
            "host_files": wanted.host_files,
            "scripts": wanted.scripts,
            "modules": [e.name for e in modules],
            "files": {
                "vmlinuz": _sha256((out / "vmlinuz").read_bytes()),
                "initramfs.gz": _sha256((out / "initramfs.gz").read_bytes()),
            },
            "initramfs_bytes": (out / "initramfs.gz").stat().st_size,
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        target = IMAGE_ROOT / wanted.digest
        shutil.rmtree(target, ignore_errors=True)  # what a build cut short left
        out.rename(target)
    image = _complete(wanted.digest)
    assert image is not None
    return image


def _kernel_deb(kernel: KernelPackage) -> Path:
    """The kernel's .deb, kept in IMAGE_ROOT/debs/: downloaded by apt the first time only."""
    if kernel.deb.is_file():
        return kernel.deb
    kernel.deb.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=kernel.deb.parent, prefix=".download-") as scratch:
        try:
            _run(["apt-get", "download", "-q", f"{kernel.name}={kernel.version}"], cwd=scratch)
        except ImageError as error:
            raise ImageError(
                f"guest image: downloading {kernel.name} {kernel.version} failed ({error}): "
                "check the network and apt's sources, then run apt-get update"
            ) from None
        (downloaded,) = Path(scratch).glob("*.deb")
        downloaded.rename(kernel.deb)
    return kernel.deb


def _pin(kernel: KernelPackage) -> None:
    record = {**msgspec.structs.asdict(kernel), "apt_lists": _apt_lists_stamp()}
    if _pin_record() != record:
        tmp = PIN.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record) + "\n")
        tmp.replace(PIN)


def _prune(keep: str, deb: Path) -> None:
    """Images and kernels of other inputs go once they are a week old: until then another
    checkout of passtplan on this machine (another version of this module) may still use them."""
    stale = time.time() - STALE_AFTER
    for path in IMAGE_ROOT.iterdir():
        old = path.name != keep and path.stat().st_mtime < stale
        if old and re.fullmatch(r"[0-9a-f]{16}", path.name):
            shutil.rmtree(path, ignore_errors=True)
    for kernel in deb.parent.glob("*.deb"):
        if kernel != deb and kernel.stat().st_mtime < stale:
            kernel.unlink()


# --- the initramfs -------------------------------------------------------------------------


def _base_entries(files: dict[str, str]) -> Iterator[CpioEntry]:
    for directory, mode in DIRECTORIES.items():
        yield CpioEntry.directory(directory, mode)
    for script, (path, mode) in SCRIPTS.items():
        yield CpioEntry(path, mode, script_text(script))
    for path, text in ACCOUNT_FILES.items():
        yield CpioEntry(path, 0o640 if path == "etc/shadow" else 0o644, text.encode())
    for path in files:
        yield CpioEntry(path, 0o755, _read(Path(path)))
    taken = set(files)
    for applet in _run([str(BUSYBOX), "--list-full"]).split():
        if f"/{applet}" not in taken and "/" in applet:
            yield CpioEntry.symlink(applet, str(BUSYBOX))


def _kernel_parts(root: Path) -> tuple[str, Path, list[CpioEntry]]:
    """The release, vmlinuz, and the modules MODULES need, dependencies first."""
    (release_dir,) = (root / "lib" / "modules").iterdir()
    release = release_dir.name
    vmlinuz = root / "boot" / f"vmlinuz-{release}"
    files = {_module_name(p): p for p in release_dir.rglob("*.ko")}
    builtin = {
        _module_name(Path(line)) for line in (release_dir / "modules.builtin").read_text().split()
    }
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered or name in builtin:
            return
        if name not in files:
            raise ImageError(f"guest image: module {name} is not in the kernel package {release}")
        for needed in _depends(files[name].read_bytes()):
            visit(needed)
        ordered.append(name)

    for name in MODULES:
        visit(name)
    modules = [
        CpioEntry(
            f"lib/modules/{files[n].relative_to(release_dir.parent)}", 0o644, files[n].read_bytes()
        )
        for n in ordered
    ]
    return release, vmlinuz, modules


def _module_list(modules: list[CpioEntry]) -> CpioEntry:
    """/etc/passtplan/modules: what /init loads, in order, relative to /lib/modules."""
    lines = "".join(f"{m.name.removeprefix('lib/modules/')}\n" for m in modules)
    return CpioEntry("etc/passtplan/modules", 0o644, lines.encode())


def _module_name(path: Path) -> str:
    return path.name.removesuffix(".ko").replace("-", "_")


def _depends(module: bytes) -> list[str]:
    """The modules a .ko needs, from its .modinfo section's `depends=` string."""
    found = re.search(rb"(?:^|\0)depends=([^\0]*)\0", module)
    names = found[1].decode().split(",") if found else []
    return [n.replace("-", "_") for n in names if n]  # as _module_name spells them


# --- helpers -------------------------------------------------------------------------------


def _run(command: list[str], cwd: str | None = None) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
    except FileNotFoundError:
        raise ImageError(f"guest image: {command[0]} not found: {INSTALL}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ImageError(f"{' '.join(command[:3])}: {last}")
    return done.stdout


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ImageError(f"guest image: cannot read {path} ({error.strerror}): {INSTALL}") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- command line --------------------------------------------------------------------------


def _summary(image: GuestImage) -> str:
    manifest = json.loads(image.manifest.read_text())
    kernel = manifest["kernel"]
    size = manifest["initramfs_bytes"] / 1e6
    return (
        f"{image.digest}: kernel {kernel['release']} ({kernel['version']}), initramfs {size:.1f} MB"
        f", in {image.manifest.parent}"
    )


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "show"
    try:
        if command == "build":
            started = time.time()
            image = build_image()
            built = image.manifest.stat().st_mtime >= started
            how = f"built in {time.time() - started:.1f} s" if built else "cached"
            print(f"guest image {how}: {_summary(image)}")
        elif command == "show":
            found = cached_image()
            if found is None:
                print(
                    f"guest image: none for this machine's packages: run {BUILD}", file=sys.stderr
                )
                return 1
            print(f"guest image: {_summary(found)}")
        else:
            print(f"usage: {MODULE} build|show", file=sys.stderr)
            return 2
    except PasstplanError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
