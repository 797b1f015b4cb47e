"""`passtplan diagram`: the picture's topology read back from its DOT (clusters, ports, wires,
labels), the Mermaid form, goldens under tests/fixtures/diagram/ (PASSTPLAN_REGEN=1 rewrites
them), the live statuses against a written live state, and the command's formats and files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from passtplan.cycles import load_lab
from passtplan.desired import desired_state
from passtplan.diagram.dot import to_dot
from passtplan.diagram.mermaid import to_mermaid
from passtplan.diagram.topology import Live, Topology, lab_topology
from passtplan.diff import diff
from tests.conftest import FIXTURES, PLANS, REPO
from tests.observed import observed_state
from tests.test_diff_golden import OPEN_FILES, compare

GOLDEN = FIXTURES / "diagram"


def topology(lab: str, *, sandbox: bool = False) -> Topology:
    loaded = load_lab(PLANS / lab)
    desired = desired_state(
        loaded.lab, sandbox=sandbox, manifests=loaded.manifests, open_files=OPEN_FILES
    )
    return lab_topology(desired)


@dataclass
class Dot:
    """What a DOT text of ours holds: each node's cluster path and attributes, each edge."""

    clusters: dict[str, str | None] = field(default_factory=dict)  # cluster -> its parent
    nodes: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # -> cluster, attrs
    edges: dict[tuple[str, str], str] = field(default_factory=dict)  # (tail, head) -> attrs

    def cluster_of(self, node: str) -> str | None:
        return self.nodes[node][0]

    def label(self, node: str) -> str:
        return self.nodes[node][1]


CLUSTER = re.compile(r'^\s*subgraph "cluster_([^"]+)" \{$')
EDGE = re.compile(r'^\s*"([^"]+)"(?::\w+)? -> "([^"]+)" \[(.*)\];$')
NODE = re.compile(r'^\s*"([^"]+)" \[(.*)\];$')


def parse(text: str) -> Dot:
    found = Dot()
    stack: list[str | None] = [None]
    assert text.startswith("digraph lab {\n") and text.endswith("}\n")
    for line in text.splitlines()[1:-1]:
        if cluster := CLUSTER.match(line):
            found.clusters[cluster[1]] = stack[-1]
            stack.append(cluster[1])
        elif line.strip() == "}":
            stack.pop()
        elif edge := EDGE.match(line):
            found.edges[edge[1], edge[2]] = edge[3]
        elif node := NODE.match(line):
            found.nodes[node[1]] = (stack[-1], node[2])
    assert stack == [None], "unbalanced braces"
    return found


def test_the_seed_in_the_sandbox() -> None:
    dot = parse(to_dot(topology("passt-macvlan", sandbox=True)))
    namespaces = {"netns.host", "netns.pod", "netns.switch", "netns.gw", "netns.office"}
    assert {c for c, parent in dot.clusters.items() if parent is None} == namespaces | {"legend"}
    # the VM in its pod, passt between the pod's macvlan and the guest
    assert dot.clusters["vm.passt-macvlan"] == "netns.pod"
    assert dot.cluster_of("passt.passt-macvlan") == "netns.pod"
    assert dot.cluster_of("guest.passt-macvlan") == "vm.passt-macvlan"
    assert ("link.pod/macvlan1", "passt.passt-macvlan") in dot.edges
    assert ("passt.passt-macvlan", "guest.passt-macvlan") in dot.edges
    assert "-t 1-4872 -u 1-4872" in dot.label("passt.passt-macvlan")
    # the macvlan on its parent, with its mode and address
    assert "10.7.120.202/16" in dot.label("link.pod/macvlan1")
    assert "macvlan vepa" in dot.edges["link.pod/macvlan1", "link.host/ens192"]
    # the CNI's eth0 the lab removes: drawn dotted, nothing reaches passt through it
    assert "dotted" in dot.label("link.pod/eth0")
    assert "10.233.70.4/32" in dot.label("link.pod/eth0")
    assert ("link.pod/eth0", "passt.passt-macvlan") not in dot.edges
    # veth wires, undirected; bridge ports on their bridge
    for wire in [
        ("link.host/ens192", "link.switch/sw-node"),
        ("link.gw/lan", "link.switch/sw-gw"),
        ("link.gw/office", "link.office/eth0"),
    ]:
        assert "dir=none" in dot.edges[wire]
    for port in ("link.switch/sw-node", "link.switch/sw-gw"):
        assert "odiamond" in dot.edges[port, "link.switch/br0"]
    # each route to the port holding its gateway
    assert "default" in dot.edges["routes.pod", "link.gw/lan"]
    assert "default" in dot.edges["routes.office", "link.gw/office"]
    assert "net.ipv4.ip_forward=1" in to_dot(topology("passt-macvlan", sandbox=True))


def test_the_seed_on_a_node_names_what_is_outside_the_lab() -> None:
    dot = parse(to_dot(topology("passt-macvlan")))
    assert dot.cluster_of("link.host/ens192") == "netns.host"
    assert "not made by the lab" in dot.label("link.host/ens192")
    assert "dashed" in dot.label("link.host/ens192")
    assert dot.cluster_of("gateway.10.7.0.1") is None
    assert ("routes.pod", "gateway.10.7.0.1") in dot.edges
    assert "switch" not in str(dot.clusters)


def test_veths_bridges_and_vxlans() -> None:
    vxlan = parse(to_dot(topology("vxlan-pair")))
    assert "remote 192.0.2.2" in vxlan.label("link.left/vxlan42")
    assert "198.51.100.1/24" in vxlan.label("link.left/vxlan42")
    assert "vxlan 42 to 192.0.2.2" in vxlan.edges["link.left/vxlan42", "link.left/eth0"]
    assert "vni 42" in vxlan.edges["link.left/vxlan42", "link.right/vxlan42"]
    assert "dir=none" in vxlan.edges["link.left/eth0", "link.right/eth0"]
    trio = parse(to_dot(topology("bridge-trio")))
    for colour in ("red", "green", "blue"):
        assert ("link.switch/p-" + colour, "link.switch/br0") in trio.edges
        wire = trio.edges[f"link.{colour}/eth0", f"link.switch/p-{colour}"]
        assert "dir=none" in wire
    assert "legend" not in trio.clusters  # nothing but what is declared: no legend needed


def test_mermaid_draws_the_same_picture() -> None:
    picture = topology("passt-macvlan", sandbox=True)
    text = to_mermaid(picture)
    assert text.startswith("---\ntitle: lab passt-macvlan (sandbox)\n---\nflowchart LR\n")
    lines = text.splitlines()
    assert sum(1 for line in lines if line.strip().startswith("subgraph ")) == 7  # and legend
    assert sum(1 for line in lines if line.strip() == "end") == 7
    arrows = [line for line in lines if re.match(r"^\s+n\d+ (===|-->|---|-\.->|-\.-)", line)]
    assert len(arrows) == len(picture.edges)
    assert '"macvlan vepa"' in text
    assert re.search(r"class n\d+ absent", text)


@pytest.mark.parametrize(
    ("name", "lab", "sandbox", "writer"),
    [
        ("seed-sandbox.dot", "passt-macvlan", True, to_dot),
        ("seed-sandbox.mmd", "passt-macvlan", True, to_mermaid),
        ("seed-node.dot", "passt-macvlan", False, to_dot),
        ("vxlan-pair.dot", "vxlan-pair", False, to_dot),
    ],
)
def test_golden(name: str, lab: str, sandbox: bool, writer: Callable[[Topology], str]) -> None:
    compare(GOLDEN / name, writer(topology(lab, sandbox=sandbox)))


def live_topology() -> Topology:
    case = GOLDEN / "live"
    loaded = load_lab(case / "lab.yaml")
    desired = desired_state(loaded.lab, sandbox=False)
    state = observed_state(case / "observed.yaml", desired.lab)
    return lab_topology(desired, Live(state, diff(desired, state)))


def test_live_marks_missing_drifted_and_foreign() -> None:
    text = to_dot(live_topology())
    compare(GOLDEN / "live.dot", text)
    dot = parse(text)
    assert 'color="darkorange"' in dot.label("link.a/v0")
    assert "live mtu 1400" in dot.label("link.a/v0")
    missing = dot.label("link.b/mv0")
    assert 'color="red"' in missing and "dashed" in missing
    foreign = dot.label("link.a/dummy9")
    assert 'color="gray60"' in foreign and "192.168.9.9/24" in foreign
    assert "link.a/lo" not in dot.nodes
    assert 'color="darkorange"' in dot.label("link.a/old0")  # declared absent, still there
    assert 'color="gray55"' in dot.label("link.c/eth0")  # only declared absent: c is not there
    assert 'COLOR="black"' in dot.label("routes.b")  # the route is there, as declared
    assert 'color="red"' in dot.edges["link.b/mv0", "link.b/br0"]  # a wire to a missing port
    assert "dir=none" in dot.edges["link.a/v0", "link.b/v0"]
    for word in ("missing", "drifted", "foreign"):
        assert word in dot.label("legend")
    assert "class n" in to_mermaid(live_topology())


def passtplan(*args: str, path: str | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'engine'}:{REPO}"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "passtplan", "diagram", *args],
        capture_output=True,
        env=env,
        check=False,
        timeout=120,
    )


def test_dot_to_stdout_by_default_and_mermaid_by_suffix(tmp_path: Path) -> None:
    proc = passtplan(str(PLANS / "veth-pair"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"digraph lab {")
    out = tmp_path / "lab.mmd"
    proc = passtplan(str(PLANS / "veth-pair"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, out.read_text().splitlines()[3]) == (b"", "flowchart LR")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_svg_and_png_drawn_by_graphviz(tmp_path: Path) -> None:
    svg = tmp_path / "seed.svg"
    proc = passtplan(str(PLANS / "passt-macvlan"), "--sandbox", "--out", str(svg))
    assert proc.returncode == 0, proc.stderr
    drawn = svg.read_text()
    assert "<svg" in drawn and "macvlan1" in drawn and "10.7.120.202/16" in drawn
    png = tmp_path / "seed.picture"
    proc = passtplan(str(PLANS / "veth-pair"), "--format", "png", "--out", str(png))
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_without_dot_svg_is_one_line_naming_the_package(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    out = tmp_path / "lab.svg"
    proc = passtplan(str(PLANS / "veth-pair"), "--out", str(out), path=str(empty))
    assert proc.returncode == 1
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and "apt-get install graphviz" in lines[0], lines
    assert not out.exists()
    proc = passtplan(str(PLANS / "veth-pair"), "--format", "mermaid", path=str(empty))
    assert proc.returncode == 0 and proc.stdout.startswith(b"---\n")
