"""vxlan, tap and macvtap against the kernel, through the engine's Python API: desired resources
built directly (each field set as a test needs), then observe, diff, graph and apply as
`passtplan apply` does. Each kind is created, observed without drift (a second plan is
empty), changed in place, replaced and deleted; what the kernel allows in place is what
resources.LINK_KINDS says."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from passtplan import resources as res
from passtplan.apply import apply_plan
from passtplan.changes import Action, ApplyReport, Plan, fingerprint
from passtplan.desired import Desired, lab_id, netns_name
from passtplan.diff import diff
from passtplan.graph import batched_graph
from passtplan.lang.loader import load_lab
from passtplan.providers import kernel, rtnl
from passtplan.providers.observe import observe
from passtplan.providers.ownership import OwnershipStore
from passtplan.providers.session import Session
from passtplan.walk import Status
from tests.integration.conftest import ip, ip_json

pytestmark = pytest.mark.root


class EngineLab:
    """A lab of namespaces a and b whose links and addresses a test sets directly."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        # The lab file itself names only the lab: its links are set here, below the language.
        lab_file = directory / "lab.yaml"
        lab_file.write_text(
            f"apiVersion: passtplan/v1alpha1\nkind: Lab\nmetadata: {{name: {name}}}\n"
        )
        self.loaded = load_lab(lab_file)
        self.store = OwnershipStore(lab_id(name, sandbox=False))
        self.links: dict[str, res.Link] = {}
        self.addresses: list[res.Address] = []

    def netns(self, namespace: str) -> str:
        return netns_name(self.name, namespace)

    @property
    def owner(self) -> str:
        return res.OWNER_PREFIX + lab_id(self.name, sandbox=False)

    def link(self, namespace: str, name: str, kind: str, **fields: Any) -> res.Link:
        """Declare a link the lab creates: up and marked, as desired_link makes it."""
        link = res.Link(namespace, name, kind, up=True, owner=self.owner, **fields)
        self.links[link.address] = link
        return link

    def change(self, namespace: str, name: str, **fields: Any) -> None:
        address = f"link.{namespace}/{name}"
        self.links[address] = msgspec.structs.replace(self.links[address], **fields)

    def drop(self, namespace: str, name: str) -> None:
        del self.links[f"link.{namespace}/{name}"]
        self.addresses = [a for a in self.addresses if (a.namespace, a.link) != (namespace, name)]

    def desired(self) -> Desired:
        desired = Desired(self.name, sandbox=False)
        for ns in ("a", "b"):
            desired.namespaces[ns] = res.Namespace(ns, self.netns(ns), res.NamespaceRole.CREATED)
        desired.links = dict(self.links)
        desired.addresses = {a.address: a for a in self.addresses}
        return desired

    def plan(self, session: Session) -> Plan:
        desired = self.desired()
        state = observe(desired, self.store.owned, session, self.store)
        changes = diff(desired, state)
        graph = batched_graph(changes, desired)
        return Plan(self.loaded, desired, state, changes, fingerprint(state), graph)

    def pending(self) -> dict[str, Action]:
        with Session() as session:
            plan = self.plan(session)
        return {c.address: c.action for c in plan.pending}

    def apply(self) -> ApplyReport:
        with Session() as session:
            report = apply_plan(self.plan(session), session, self.store)
        failed = [
            f"{c.address}: {o.detail}" for c, o in report.outcomes if o.status is not Status.DONE
        ]
        assert report.ok, f"{failed} {report.verify_errors}"
        return report

    def converge(self, expected: dict[str, Action]) -> None:
        assert self.pending() == expected
        self.apply()
        assert self.pending() == {}, "a second plan is not empty"

    def details(self, namespace: str, name: str) -> dict[str, object]:
        return ip_json("-d", "link", "show", name, netns=self.netns(namespace))[0]

    def info(self, namespace: str, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.details(namespace, name)["linkinfo"])

    def data(self, namespace: str, name: str) -> dict[str, Any]:
        """The kind's own settings as `ip -d` reads them."""
        return cast(dict[str, Any], self.info(namespace, name)["info_data"])

    def index(self, namespace: str, name: str) -> int:
        return cast(int, self.details(namespace, name)["ifindex"])

    def sysfs(self, namespace: str, name: str, attribute: str) -> str:
        """/sys/class/net as the namespace sees it (ip netns exec mounts its own /sys)."""
        path = f"/sys/class/net/{name}/{attribute}"
        return subprocess.run(
            ["ip", "netns", "exec", self.netns(namespace), "cat", path],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()


@pytest.fixture
def lab(prefix: str, tmp_path: Path) -> EngineLab:
    return EngineLab(f"{prefix}-k", tmp_path)


def pings(lab: EngineLab, namespace: str, target: str, deadline: float = 10.0) -> bool:
    """Polls until a ping gets through or the deadline passes (a new vxlan learns nothing yet,
    neighbours are resolved on the first tries)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        proc = subprocess.run(
            ["ip", "netns", "exec", lab.netns(namespace), "ping", "-c1", "-W1", target],
            capture_output=True,
            check=False,
            timeout=30,
        )
        if proc.returncode == 0:
            return True
    return False


# --- vxlan ---------------------------------------------------------------------------------


def underlay(lab: EngineLab) -> None:
    """a/u0 - b/u0, 10.0.0.1-2/24, and a spare bridge in a."""
    lab.link("a", "u0", "veth", peer=("b", "u0"))
    lab.link("b", "u0", "veth", peer=("a", "u0"))
    lab.link("a", "br0", "bridge")
    lab.addresses += [res.Address("a", "u0", "10.0.0.1/24"), res.Address("b", "u0", "10.0.0.2/24")]


def test_vxlan_create_change_replace_delete(lab: EngineLab) -> None:
    underlay(lab)
    for ns, me, other in (("a", 1, 2), ("b", 2, 1)):
        far, near = f"10.0.0.{other}", f"10.0.0.{me}"
        lab.link(ns, "vx0", "vxlan", vni=42, remote=far, local=near, dstport=4789, dev="u0")
        lab.addresses.append(res.Address(ns, "vx0", f"10.10.0.{me}/24"))
    lab.link("b", "vxm", "vxlan", vni=7, group="239.1.1.1", dstport=4790, dev="u0")
    lab.apply()
    assert lab.pending() == {}  # observed as declared: no drift
    assert pings(lab, "a", "10.10.0.2"), "no traffic over the vxlan"
    data = lab.data("a", "vx0")
    found = (data["id"], data["remote"], data["local"], data["port"], data["link"])
    assert found == (42, "10.0.0.2", "10.0.0.1", 4789, "u0")
    assert lab.data("b", "vxm")["group"] == "239.1.1.1"

    # In place: remote, local and dev; the link (and its address) stays.
    index = lab.index("a", "vx0")
    lab.change("a", "vx0", remote="10.0.0.3", local="10.0.0.9", dev="br0")
    lab.converge({"link.a/vx0": Action.UPDATE})
    data = lab.data("a", "vx0")
    assert (data["remote"], data["local"], data["link"]) == ("10.0.0.3", "10.0.0.9", "br0")
    assert lab.index("a", "vx0") == index
    lab.change("b", "vxm", group="239.1.1.2")  # a group, also in place
    lab.converge({"link.b/vxm": Action.UPDATE})
    lab.change("b", "vxm", remote="10.0.0.1", group=None)  # from a group to a unicast remote
    lab.converge({"link.b/vxm": Action.UPDATE})
    assert lab.data("b", "vxm")["remote"] == "10.0.0.1"

    # Replaced: the VNI, the port, and an address of another family.
    lab.change("a", "vx0", vni=43)
    lab.converge({"link.a/vx0": Action.REPLACE, "address.a/vx0[10.10.0.1/24]": Action.CREATE})
    assert lab.data("a", "vx0")["id"] == 43
    assert lab.index("a", "vx0") != index
    lab.change("b", "vxm", dstport=4791)
    lab.converge({"link.b/vxm": Action.REPLACE})
    lab.change("b", "vxm", remote="fd00::1", local="fd00::2")
    lab.converge({"link.b/vxm": Action.REPLACE})
    data = lab.data("b", "vxm")
    assert (data["remote6"], data["local6"], data["port"]) == ("fd00::1", "fd00::2", 4791)

    lab.drop("b", "vxm")
    lab.converge({"link.b/vxm": Action.DELETE})
    assert ip("link", "show", "vxm", netns=lab.netns("b"), check=False) == ""


def test_vxlan_goes_with_its_dev(lab: EngineLab) -> None:
    """The kernel deletes a vxlan with its dev: recreating the dev recreates the vxlan."""
    underlay(lab)
    lab.link("a", "vx0", "vxlan", vni=5, remote="10.0.0.2", dstport=4789, dev="br0")
    lab.apply()
    lab.change("a", "br0", kind="veth", peer=("b", "p0"))
    lab.link("b", "p0", "veth", peer=("a", "br0"))
    plan = lab.pending()
    assert plan["link.a/br0"] is Action.REPLACE
    assert plan["link.a/vx0"] is Action.REPLACE
    lab.apply()
    assert lab.pending() == {}
    assert lab.data("a", "vx0")["link"] == "br0"


# --- tap -----------------------------------------------------------------------------------


@pytest.fixture
def hold_open() -> Iterator[list[int]]:
    """fds this test holds on taps, as a VM would; closed at the end whatever happens."""
    fds: list[int] = []
    yield fds
    for fd in fds:
        os.close(fd)


def test_tap_create_change_replace_delete(lab: EngineLab, hold_open: list[int]) -> None:
    lab.link("a", "t0", "tap", tap_owner=1000)
    lab.link("a", "t1", "tap", mtu=9000)
    lab.addresses.append(res.Address("a", "t0", "10.20.0.1/24"))
    lab.apply()
    assert lab.pending() == {}
    info = lab.info("a", "t0")
    assert info["info_kind"] == "tun"
    assert info["info_data"]["type"] == "tap"
    assert info["info_data"]["persist"] is True
    assert lab.sysfs("a", "t0", "owner") == "1000"
    assert lab.sysfs("a", "t1", "owner") == "-1"
    assert lab.details("a", "t1")["mtu"] == 9000
    assert ip("link", "show", "t0", check=False) == ""  # made in a, not where the test runs

    # In place: the owner, the tap's flags kept (also flags the engine never sets).
    index = lab.index("a", "t0")
    lab.change("a", "t0", tap_owner=1001)
    lab.converge({"link.a/t0": Action.UPDATE})
    assert lab.sysfs("a", "t0", "owner") == "1001"
    assert lab.sysfs("a", "t0", "tun_flags") == "0x1802"  # tap, no_pi, persist
    assert lab.index("a", "t0") == index
    ip("tuntap", "add", "t2", "mode", "tap", "vnet_hdr", "multi_queue", netns=lab.netns("a"))
    lab.links["link.a/t2"] = res.Link("a", "t2", "tap", tap_owner=1002)  # found, not made
    lab.converge({"link.a/t2": Action.UPDATE})
    assert lab.sysfs("a", "t2", "owner") == "1002"
    data = lab.data("a", "t2")
    assert (data["vnet_hdr"], data["multi_queue"], data["pi"]) == (True, True, False)

    # A process holding the tap: the kernel refuses a new owner, and the apply says why.
    netns = kernel.open_netns(kernel.netns_path(lab.netns("a")))
    try:
        hold_open.append(kernel.attach_tun(netns, "t0", rtnl.IFF_TAP | rtnl.IFF_NO_PI))
    finally:
        os.close(netns)
    lab.change("a", "t0", tap_owner=1003)
    with Session() as session:
        report = apply_plan(lab.plan(session), session, lab.store)
    assert not report.ok
    detail = {c.address: o.detail for c, o in report.outcomes}["link.a/t0"]
    assert "holds the tap open" in detail
    os.close(hold_open.pop())
    lab.converge({"link.a/t0": Action.UPDATE})
    assert lab.sysfs("a", "t0", "owner") == "1003"

    # Replaced: a tun of the lab's where it wants a tap.
    ip("link", "del", "t1", netns=lab.netns("a"))
    ip("tuntap", "add", "t1", "mode", "tun", netns=lab.netns("a"))
    ip("link", "set", "t1", "alias", lab.owner, netns=lab.netns("a"))
    lab.converge({"link.a/t1": Action.REPLACE})
    assert lab.data("a", "t1")["type"] == "tap"

    lab.drop("a", "t1")
    lab.converge({"link.a/t1": Action.DELETE})
    assert ip("link", "show", "t1", netns=lab.netns("a"), check=False) == ""


# --- macvtap -------------------------------------------------------------------------------


def test_macvtap_create_change_replace_delete(lab: EngineLab) -> None:
    lab.link("a", "br0", "bridge")
    lab.link("a", "br1", "bridge")
    lab.link("b", "mt0", "macvtap", parent=("a", "br0"), mode="bridge")  # made in a, moved
    lab.link("a", "mt1", "macvtap", parent=("a", "br1"), mode="vepa")
    lab.addresses.append(res.Address("b", "mt0", "10.30.0.2/24"))
    lab.apply()
    assert lab.pending() == {}
    assert lab.data("b", "mt0")["mode"] == "bridge"
    assert lab.details("b", "mt0")["link_netnsid"] is not None  # its parent is in a

    index = lab.index("b", "mt0")
    lab.change("b", "mt0", mode="private")
    lab.converge({"link.b/mt0": Action.UPDATE})
    assert lab.data("b", "mt0")["mode"] == "private"
    assert lab.index("b", "mt0") == index

    lab.change("b", "mt0", mode="passthru")  # the kernel will not switch to passthru in place
    lab.converge({"link.b/mt0": Action.REPLACE, "address.b/mt0[10.30.0.2/24]": Action.CREATE})
    assert lab.data("b", "mt0")["mode"] == "passthru"
    lab.change("b", "mt0", mode="vepa")  # nor from it
    lab.converge({"link.b/mt0": Action.REPLACE, "address.b/mt0[10.30.0.2/24]": Action.CREATE})
    lab.change("a", "mt1", parent=("a", "br0"))  # another parent: replaced
    lab.converge({"link.a/mt1": Action.REPLACE})
    assert lab.details("a", "mt1")["link"] == "br0"

    lab.drop("a", "mt1")
    lab.converge({"link.a/mt1": Action.DELETE})
    assert ip("link", "show", "mt1", netns=lab.netns("a"), check=False) == ""
