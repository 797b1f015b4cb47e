"""The seed lab on one machine: --sandbox, the local VM driver with real passt, the checks; its
VM runs the stand-in guest (test_qemu_guest.py boots the default, QEMU).

One lab per module (it takes a second to build): the tests read it in order, as the seed's
author did, then repair it and destroy it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from passtplan.lang.yamlsource import read_yaml
from passtplan.providers.ownership import RUN_DIR
from passtplan.providers.sandbox.process import Process
from tests.conftest import PLANS, seed_lab
from tests.integration.conftest import Lab, cleanup, ip, ip_json, root_snapshot
from tests.kube.fake_apiserver import FakeCluster
from tests.test_startup import modules_after

SEED = PLANS / "passt-macvlan"
ROOT_SYSCTLS = [
    "net/ipv4/ip_forward",
    "net/ipv4/ping_group_range",
    "net/ipv4/conf/all/proxy_arp",
    "net/ipv6/conf/all/forwarding",
]


def sysctls() -> dict[str, str]:
    return {name: (Path("/proc/sys") / name).read_text() for name in ROOT_SYSCTLS}


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory = tmp_path_factory.mktemp("seed")
    name = f"ps{__import__('secrets').token_hex(3)}"
    shutil.copy(SEED / "passt-vm.yaml", directory / "passt-vm.yaml")
    lab = Lab(directory, name).write(seed_lab())
    before = (root_snapshot(), sysctls())
    try:
        yield lab
    finally:
        cleanup(name)
        assert (root_snapshot(), sysctls()) == before, "the machine's root namespace changed"


@pytest.fixture(scope="module")
def applied(seed: Lab) -> str:
    return seed.apply("--sandbox").stdout


def test_every_seed_check_passes(applied: str) -> None:
    assert "Apply complete!" in applied
    rows = {tuple(line.split()[:4]) for line in applied.splitlines() if line.startswith("  ")}
    assert ("ping", "office", "10.7.120.202", "pass") in rows
    assert ("tcp", "office", "10.7.120.202:22", "pass") in rows
    assert ("ping", "vm/passt-macvlan", "10.64.1.46", "pass") in rows
    assert "greeting: SSH-2.0-passtplan_guest passt-macvlan" in applied  # the guest answered
    guest_ping = next(line for line in applied.splitlines() if "vm/passt-macvlan" in line)
    assert "ttl=255" in guest_ping  # passt answers the guest's ping itself, as in the seed
    assert "Checks: 3 passed, 0 failed, 0 skipped." in applied


def test_the_seed_state_holds(seed: Lab, applied: str) -> None:
    pod = seed.netns("pod")
    links = {link["ifname"]: link for link in ip_json("-d", "link", "show", netns=pod)}
    assert "eth0" not in links  # the CNI's interface is gone
    macvlan = links["macvlan1"]
    assert macvlan["linkinfo"]["info_kind"] == "macvlan"
    assert macvlan["linkinfo"]["info_data"]["mode"] == "vepa"
    host_links = {
        link["ifindex"]: link["ifname"]
        for link in ip_json("link", "show", netns=seed.netns("host"))
    }
    assert macvlan["link_netnsid"] is not None
    assert host_links[macvlan["link_index"]] == "ens192"
    addresses = ip_json("address", "show", "macvlan1", netns=pod)[0]["addr_info"]
    assert ("10.7.120.202", 16) in {(a["local"], a["prefixlen"]) for a in addresses}
    routes = ip_json("route", "show", "default", netns=pod)
    assert [(r["gateway"], r["dev"]) for r in routes] == [("10.7.0.1", "macvlan1")]
    guest = ip_json("address", "show", "eth0", netns=seed.netns("vm.passt-macvlan"))[0]
    assert guest["mtu"] == 65520
    assert guest["address"] == "52:54:00:12:34:56"
    v4 = [(a["local"], a["prefixlen"]) for a in guest["addr_info"] if a["family"] == "inet"]
    assert v4 == [("10.233.70.4", 32)]  # its DHCP lease from before the swap
    passt_print = (RUN_DIR / f"{seed.name}@sandbox/vm/passt-macvlan/passt.log").read_text()
    assert re.search(r"Template interface: eth0 \(IPv4\)", passt_print)
    assert "assign: 10.233.70.4" in passt_print
    assert "router: 169.254.1.1" in passt_print


def test_then_the_plan_is_empty(seed: Lab, applied: str) -> None:
    seed.converged("--sandbox")


# What a plan with nothing to do never imports (benches/bench_seed_noop.py times it): the graph
# and networkx, the cluster's client, pyroute2's package, pydantic's plugin discovery, and what
# only starting a QEMU guest needs (its image, the overlay's cloud-init and crypt).
UNUSED_BY_A_NOOP_PLAN = (
    "networkx",
    "kubernetes",
    "pyroute2",
    "importlib.metadata",
    "crypt",
    "passtplan.graph",
    "passtplan.providers.checks",
    "passtplan.providers.sandbox.image",
    "passtplan.providers.sandbox.guest_config",
    "passtplan.providers.sandbox.accel",
    "passtplan.lang.cloudinit",
)


def test_the_empty_plan_imports_only_what_it_uses(seed: Lab, applied: str, tmp_path: Path) -> None:
    code, modules = modules_after(
        ["plan", str(seed.path), "--sandbox", "--detailed-exitcode"], tmp_path
    )
    assert code == 0
    assert sorted(m for m in modules if m.startswith(UNUSED_BY_A_NOOP_PLAN)) == []
    assert {"passtplan.providers.observe", "passtplan.providers.sandbox.qemu"} <= modules


def test_killed_passt_is_repaired(seed: Lab, applied: str) -> None:
    state = json.loads((RUN_DIR / f"{seed.name}@sandbox/vm/passt-macvlan/state.json").read_text())
    passt = Process(*state["passt"])
    subprocess.run(["kill", str(passt.pid)], check=True)
    deadline = time.monotonic() + 10
    while passt.running() and time.monotonic() < deadline:
        time.sleep(0.02)  # polling for passt to finish closing its sockets and exit
    plan = json.loads(seed.plan("--sandbox", "--json").stdout)
    [change] = [c for c in plan["changes"] if c["actions"] != ["no-op"]]
    assert change["address"] == "vm.passt-macvlan"
    assert change["actions"] == ["update"]
    assert change["reason"] == "repair: passt is not running"
    repaired = seed.apply("--sandbox").stdout
    assert "restarted passt" in repaired
    assert "Checks: 3 passed, 0 failed, 0 skipped." in repaired
    seed.converged("--sandbox")


def test_show_writes_the_sandbox_in_the_plan_language(seed: Lab, applied: str) -> None:
    shown = seed.run("show", "--lab", str(seed.path), "--sandbox").stdout
    pod = seed.directory / "shown.yaml"
    pod.write_text(shown)
    macvlan = read_yaml(pod).data["namespaces"]["pod"]["links"]["macvlan1"]  # type: ignore[index]
    # the sandbox's host is a namespace like the others, under a name of the language's
    parent = f"{seed.netns('host').replace('.', '-')}/ens192"
    assert (macvlan["kind"], macvlan["parent"], macvlan["mode"]) == ("macvlan", parent, "vepa")
    assert macvlan["addresses"] == ["10.7.120.202/16"]
    seed.run("validate", str(pod))
    result = seed.run("plan", str(pod), "--detailed-exitcode")
    assert "No changes." in result.stdout


def test_a_record_from_before_the_qemu_guest_reads_as_the_stand_in(seed: Lab, applied: str) -> None:
    """A VM started before the guest kinds existed has no kind in its record: it was the stand-in,
    and is neither replaced nor, on destroy, left with its guest's namespace (the next test)."""
    path = RUN_DIR / f"{seed.name}@sandbox/vm/passt-macvlan/state.json"
    record = json.loads(path.read_text())
    del record["vm"]["guest_kind"]
    path.write_text(json.dumps(record))
    seed.converged("--sandbox")


def test_destroy_leaves_nothing(seed: Lab, applied: str) -> None:
    state = json.loads((RUN_DIR / f"{seed.name}@sandbox/vm/passt-macvlan/state.json").read_text())
    seed.destroy("--sandbox")
    for pid in (state["passt"][0], state["guest"][0]):
        proc = Path(f"/proc/{pid}")
        # not even a zombie waiting for its reaper
        assert not proc.exists(), (proc / "status").read_text()[:300] if proc.exists() else ""
    assert seed.leftovers() == []
    left = subprocess.run(["pgrep", "-af", seed.name], capture_output=True, text=True, check=False)
    assert left.stdout == ""
    assert not (RUN_DIR / f"{seed.name}@sandbox").exists()  # sockets, logs and records
    assert ip("netns", "list").count(seed.name) == 0


def test_the_same_file_plans_against_a_real_node(seed: Lab) -> None:
    """Without --sandbox the sandbox section is ignored and nothing of the machine changes: the
    VM is the cluster's (here the fake API server), the pod's namespace is found at apply time.

    After the destroy: on one machine both modes would name the pod's namespace LAB-pod."""
    with FakeCluster() as cluster:
        kubeconfig = seed.directory / "kubeconfig"
        kubeconfig.write_text(json.dumps(cluster.kubeconfig()))
        result = seed.plan("--detailed-exitcode", "--kubeconfig", str(kubeconfig), code=2)
    assert "vm.passt-macvlan will be created" in result.stdout
    assert "netns.pod will be read during apply" in result.stdout
    assert "office" not in result.stdout
    checks = seed.run("check", str(seed.path), code=None)
    assert "its namespace exists only in the sandbox" in checks.stdout
