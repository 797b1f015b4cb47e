"""The guest image builder's own rules, on made-up kernel trees and caches (no root, no apt):
which modules go in and in what order, which kernel a build takes, what the cache keeps.
The real build and boot are in tests/integration/test_guest_image.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from passtplan.providers.sandbox import image
from passtplan.providers.sandbox.image import ImageError, KernelPackage

RELEASE = "6.1.0-99-cloud-amd64"


def kernel_tree(root: Path, modules: dict[str, str], builtin: tuple[str, ...] = ()) -> Path:
    """An extracted kernel package: module path -> its depends= list, and modules.builtin."""
    release = root / "lib" / "modules" / RELEASE
    for path, depends in modules.items():
        (release / path).parent.mkdir(parents=True, exist_ok=True)
        (release / path).write_bytes(
            b"\x7fELF...\0license=GPL\0depends=" + depends.encode() + b"\0"
        )
    (release / "modules.builtin").write_text("".join(f"{b}\n" for b in builtin))
    (root / "boot").mkdir()
    (root / "boot" / f"vmlinuz-{RELEASE}").write_bytes(b"kernel")
    return root


def test_modules_come_after_what_they_need(tmp_path: Path) -> None:
    tree = kernel_tree(
        tmp_path,
        {
            "kernel/drivers/net/virtio_net.ko": "virtio_ring,virtio,net_failover",
            "kernel/drivers/net/net_failover.ko": "failover",
            "kernel/net/core/failover.ko": "",
            "kernel/drivers/virtio/virtio.ko": "virtio_ring",
            "kernel/drivers/virtio/virtio_ring.ko": "",
            "kernel/drivers/virtio/virtio_pci.ko": "virtio_ring,virtio-pci-modern-dev,virtio",
            "kernel/drivers/virtio/virtio-pci-modern-dev.ko": "",
            "kernel/drivers/block/virtio_blk.ko": "virtio",  # not needed: left out
        },
    )
    release, vmlinuz, modules = image._kernel_parts(tree)
    assert (release, vmlinuz.read_bytes()) == (RELEASE, b"kernel")
    assert [Path(m.name).stem for m in modules] == [
        "virtio_ring",
        "virtio-pci-modern-dev",
        "virtio",
        "virtio_pci",
        "failover",
        "net_failover",
        "virtio_net",
    ]
    assert modules[0].name == f"lib/modules/{RELEASE}/kernel/drivers/virtio/virtio_ring.ko"
    listed = image._module_list(modules).data.decode().split()
    assert listed[-1] == f"{RELEASE}/kernel/drivers/net/virtio_net.ko"


def test_a_built_in_module_is_not_looked_for(tmp_path: Path) -> None:
    tree = kernel_tree(
        tmp_path,
        {"kernel/drivers/net/virtio_net.ko": "virtio"},
        builtin=("kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_pci.ko"),
    )
    _, _, modules = image._kernel_parts(tree)
    assert [Path(m.name).stem for m in modules] == ["virtio_net"]


def test_a_missing_module_is_named(tmp_path: Path) -> None:
    tree = kernel_tree(tmp_path, {"kernel/drivers/virtio/virtio_pci.ko": "virtio"})
    with pytest.raises(ImageError, match=f"module virtio is not in the kernel package {RELEASE}"):
        image._kernel_parts(tree)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "guest"
    (root / "debs").mkdir(parents=True)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4").write_text("")
    monkeypatch.setattr(image, "IMAGE_ROOT", root)
    monkeypatch.setattr(image, "PIN", root / "kernel.json")
    monkeypatch.setattr(image, "APT_LISTS", lists)
    return root


def test_a_build_asks_apt_only_when_its_lists_changed(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = KernelPackage("linux-image-6.1.0-1-cloud-amd64", "6.1.1-1")
    newer = KernelPackage("linux-image-6.1.0-2-cloud-amd64", "6.1.2-1")
    monkeypatch.setattr(image, "kernel_candidate", lambda: newer)
    image._pin(pinned)
    assert image.build_kernel() == pinned
    packages = next(image.APT_LISTS.iterdir())
    later = time.time() + 10
    os.utime(packages, (later, later))  # apt-get update brought new lists
    assert image.build_kernel() == newer
    monkeypatch.setattr(image, "kernel_candidate", lambda: None)  # lists gone: offline
    assert image.build_kernel() == pinned


def test_the_cache_keeps_other_images_for_a_week(cache: Path) -> None:
    current, recent, old = (cache / (digit * 16) for digit in "012")
    deb, old_deb = cache / "debs" / "new.deb", cache / "debs" / "old.deb"
    for path in (current, recent, old):
        path.mkdir()
    for path in (deb, old_deb):
        path.write_bytes(b"")
    week_ago = time.time() - image.STALE_AFTER - 60
    for path in (old, old_deb, current, deb):
        os.utime(path, (week_ago, week_ago))
    image._prune(keep=current.name, deb=deb)
    assert sorted(p.name for p in cache.rglob("*")) == sorted(
        [current.name, recent.name, "debs", "new.deb"]
    )
