"""What the picture of a lab shows: namespaces as boxes, links as ports in them, and the wires,
parents, bridge ports, gateways and VMs between them, each marked with how it stands against the
live state when there is one. The writers (dot.py, mermaid.py) only draw this."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

import msgspec

from passtplan import resources as res
from passtplan.changes import Action, Change
from passtplan.desired import Desired


class Status(StrEnum):
    """How a thing in the picture stands. The last three are seen only with the live state."""

    OK = "ok"
    ABSENT = "absent"  # the lab declares it absent (state: absent)
    OUTSIDE = "outside"  # named by the lab (a parent, a gateway), not declared by it
    MISSING = "missing"  # declared, not there
    DRIFTED = "drifted"  # there, but not as declared
    FOREIGN = "foreign"  # there, in a namespace of the lab, not declared by it


MEANING = {
    Status.OK: "as declared",
    Status.ABSENT: "the lab declares it absent",
    Status.OUTSIDE: "named by the lab, not made by it",
    Status.MISSING: "declared, not there",
    Status.DRIFTED: "there, not as declared",
    Status.FOREIGN: "there, not in the lab",
}
LIVE_STATUSES = (Status.OK, Status.MISSING, Status.DRIFTED, Status.FOREIGN)
# An edge takes the first of these its ends have: a wire to a missing port is missing too.
EDGE_STATUS_ORDER = (Status.MISSING, Status.FOREIGN, Status.ABSENT, Status.OUTSIDE)
STATUS_OF_ACTION = {
    Action.CREATE: Status.MISSING,
    Action.READ: Status.MISSING,  # a namespace found only at apply time is not there now
    Action.UPDATE: Status.DRIFTED,
    Action.REPLACE: Status.DRIFTED,
    Action.DELETE: Status.DRIFTED,  # declared absent (or owned, undeclared: foreign below)
}


class EdgeKind(StrEnum):
    WIRE = "wire"  # the two ends of a veth
    PARENT = "parent"  # a macvlan or macvtap to its parent, a vxlan to its underlay dev
    TUNNEL = "tunnel"  # two vxlans of one VNI, each the other's remote
    PORT = "port"  # a bridge port to its bridge
    GATEWAY = "gateway"  # a route to the port holding its gateway
    PASST = "passt"  # pod -> passt -> guest


class Line(msgspec.Struct, frozen=True):
    """A line of a label; `port` names it when an edge leaves from it (a route)."""

    text: str
    status: Status = Status.OK
    port: str | None = None


class Node(msgspec.Struct):
    id: str
    box: str | None  # the box it sits in
    title: str
    lines: list[Line] = msgspec.field(default_factory=list)
    status: Status = Status.OK
    shape: str = "port"  # port, routes, passt, guest, gateway


class Box(msgspec.Struct):
    id: str
    title: str
    lines: list[Line] = msgspec.field(default_factory=list)
    status: Status = Status.OK
    parent: str | None = None  # the box it sits in (a VM's guest in its pod)


class Edge(msgspec.Struct, frozen=True):
    tail: str
    head: str
    kind: EdgeKind
    label: str = ""
    status: Status = Status.OK
    tail_port: str | None = None


class Topology(msgspec.Struct):
    title: str
    live: bool
    boxes: dict[str, Box] = msgspec.field(default_factory=dict)
    nodes: dict[str, Node] = msgspec.field(default_factory=dict)
    edges: list[Edge] = msgspec.field(default_factory=list)

    def statuses(self) -> list[Status]:
        """The statuses the legend explains: every live one with the live state, else those
        drawn."""
        drawn = {box.status for box in self.boxes.values()}
        drawn.update(node.status for node in self.nodes.values())
        drawn.update(edge.status for edge in self.edges)
        drawn.update(line.status for node in self.nodes.values() for line in node.lines)
        shown = set(LIVE_STATUSES) | drawn if self.live else drawn
        return [s for s in Status if s in shown]

    def nesting(self) -> Nesting:
        nesting = Nesting()
        for box in self.boxes.values():
            nesting.children.setdefault(box.parent, []).append(box)
        for node in self.nodes.values():
            nesting.members.setdefault(node.box, []).append(node)
        return nesting


class Nesting(msgspec.Struct):
    """What sits in each box (None: the picture itself), for writers that draw boxes nested."""

    children: dict[str | None, list[Box]] = msgspec.field(default_factory=dict)
    members: dict[str | None, list[Node]] = msgspec.field(default_factory=dict)


class Live(msgspec.Struct, frozen=True):
    """The live state, as a plan sees it: what is there, and what apply would change."""

    state: res.State
    changes: list[Change]


def lab_topology(desired: Desired, live: Live | None = None) -> Topology:
    """The picture of the lab `desired` describes; with `live`, marked against the live state."""
    mode = " (sandbox)" if desired.sandbox else ""
    title = f"lab {desired.lab}{mode}" + (", against the live state" if live else "")
    builder = _Builder(desired, Topology(title, live is not None), live)
    builder.build()
    return builder.topology


def link_id(namespace: str, name: str) -> str:
    return f"link.{namespace}/{name}"


def box_id(namespace: str) -> str:
    return f"netns.{namespace}"


class _Builder:
    def __init__(self, desired: Desired, topology: Topology, live: Live | None) -> None:
        self.desired = desired
        self.topology = topology
        self.live = live
        self.changes = {c.address: c for c in live.changes} if live else {}
        self.gateways: dict[str, str] = {}  # an address (no prefix) -> the port holding it

    def build(self) -> None:
        for namespace in self.desired.namespaces.values():
            self._namespace(namespace)
        for link in self.desired.links.values():
            self._link(link)
        for ns, name in sorted(self.desired.absent_links):
            self._absent_link(ns, name)
        if self.live:
            self._foreign_links(self.live.state)
        for node in list(self.topology.nodes.values()):
            self._link_edges(node)
        self._tunnels()
        for vm in self.desired.vms.values():
            self._vm(vm)
        self._routes()
        self._settle_statuses()

    # namespaces

    def _namespace(self, namespace: res.Namespace) -> None:
        lines = [Line(_where(namespace))]
        for sysctl in self.desired.sysctls.values():
            if sysctl.namespace == namespace.name:
                lines.append(Line(f"{sysctl.name}={sysctl.value}", self._status(sysctl.address)))
        status = self._status(namespace.address)
        observed = self.live.state.namespaces if self.live else {}
        if namespace.name in observed and observed[namespace.name] is None:
            status = Status.MISSING
        box = Box(box_id(namespace.name), namespace.name, lines, status)
        self.topology.boxes[box.id] = box

    def _box_for(self, namespace: str) -> str:
        """The box of a namespace, made (outside the lab) when the lab only names it."""
        found = box_id(namespace)
        if found not in self.topology.boxes:
            lines = [Line("not in the lab")]
            self.topology.boxes[found] = Box(found, namespace, lines, Status.OUTSIDE)
        return found

    # links

    def _link(self, link: res.Link) -> None:
        lines = [Line(text) for text in _link_facts(link)]
        change = self.changes.get(link.address)
        if change is not None and change.action in (Action.UPDATE, Action.REPLACE):
            lines.append(Line(_differences(change), Status.DRIFTED))
        lines += self._addresses(link.namespace, link.name)
        status = self._status(link.address)
        node = Node(link.address, self._box_for(link.namespace), link.name, lines, status)
        self.topology.nodes[node.id] = node

    def _addresses(self, namespace: str, name: str) -> list[Line]:
        lines = []
        for address in self.desired.addresses.values():
            if (address.namespace, address.link) == (namespace, name):
                lines.append(Line(address.cidr, self._status(address.address)))
                self.gateways.setdefault(_host(address.cidr), link_id(namespace, name))
        return lines

    def _absent_link(self, namespace: str, name: str) -> None:
        address = link_id(namespace, name)
        change = self.changes.get(address)
        # still there; a deferred removal is of a namespace not found now, so nothing is there
        status = Status.DRIFTED if change is not None and not change.deferred else Status.ABSENT
        lines = [Line("state: absent")]
        node = Node(address, self._box_for(namespace), name, lines, status)
        self.topology.nodes[address] = node

    def _foreign_links(self, state: res.State) -> None:
        for observed in state.namespaces.values():
            if observed is None or box_id(observed.namespace.name) not in self.topology.boxes:
                continue
            for link in observed.links.values():
                if link.address in self.topology.nodes or not _foreign(link):
                    continue
                lines = [Line(text) for text in _link_facts(link)]
                lines += [Line(a.cidr) for a in observed.addresses if a.link == link.name]
                box = box_id(link.namespace)
                node = Node(link.address, box, link.name, lines, Status.FOREIGN)
                self.topology.nodes[node.id] = node

    def _link_edges(self, node: Node) -> None:
        link = self._link_of(node.id)
        if link is None:
            return
        # A foreign link's ends are drawn only where the picture has them already.
        port = self._known_port if node.status is Status.FOREIGN else self._port
        if link.kind == "veth" and link.peer is not None:
            peer = link_id(*link.peer)
            if node.id < peer or peer not in self.topology.nodes:
                self._edge(node.id, port(link.peer), EdgeKind.WIRE)
        if link.parent is not None:
            label = f"{link.kind} {link.mode}" if link.mode else str(link.kind)
            self._edge(node.id, port(link.parent), EdgeKind.PARENT, label)
        if link.dev is not None:
            label = _vxlan_tie(link)
            self._edge(node.id, port((link.namespace, link.dev)), EdgeKind.PARENT, label)
        if link.master:
            self._edge(node.id, port((link.namespace, link.master)), EdgeKind.PORT)

    def _link_of(self, address: str) -> res.Link | None:
        link = self.desired.links.get(address)
        if link is None and self.live:
            namespace, _, name = address.removeprefix("link.").partition("/")
            observed = self.live.state.namespaces.get(namespace)
            link = observed.links.get(name) if observed else None
        return link

    def _port(self, ref: res.Ref) -> str:
        """The port of a link the lab names, drawn outside the lab when it does not declare it."""
        address = link_id(*ref)
        if address not in self.topology.nodes:
            lines = [Line("not made by the lab")]
            node = Node(address, self._box_for(ref[0]), ref[1], lines, Status.OUTSIDE)
            self.topology.nodes[address] = node
        return address

    def _known_port(self, ref: res.Ref) -> str | None:
        address = link_id(*ref)
        return address if address in self.topology.nodes else None

    def _tunnels(self) -> None:
        """Two vxlans of one VNI, each the other's remote, are one tunnel."""
        ends = {
            (link.vni, _host(link.local)): link
            for link in self.desired.links.values()
            if link.kind == "vxlan" and link.local is not None
        }
        for link in self.desired.links.values():
            if link.kind != "vxlan" or link.remote is None or link.local is None:
                continue
            other = ends.get((link.vni, link.remote))
            if other is not None and other.remote == link.local and link.address < other.address:
                label = f"vni {link.vni}"
                self._edge(link.address, other.address, EdgeKind.TUNNEL, label)

    # VMs

    def _vm(self, vm: res.Vm | res.ClusterVm) -> None:
        pod = self._pod_box(vm)
        status = self._status(vm.address)
        passt_id = f"passt.{vm.name}"
        facts = (
            [f"KubeVirt {vm.kubevirt}", f"-t {vm.tcp_ports} -u {vm.udp_ports}"]
            if isinstance(vm, res.Vm)
            else [f"KubeVirt form: {vm.passt_form}", f"VM {vm.kube_namespace}/{vm.name}"]
        )
        lines = [Line(text) for text in facts]
        self.topology.nodes[passt_id] = Node(passt_id, pod, "passt", lines, status, "passt")
        guest_box = f"vm.{vm.name}"
        self.topology.boxes[guest_box] = Box(guest_box, f"VM {vm.name}", [], status, pod)
        guest_id = f"guest.{vm.name}"
        guest_lines = [Line("address, router, MTU from passt's DHCP")]
        guest = Node(guest_id, guest_box, "eth0", guest_lines, status, "guest")
        self.topology.nodes[guest_id] = guest
        pod_ports = [
            n.id for n in self.topology.nodes.values() if n.box == pod and n.shape == "port"
        ]
        for port in pod_ports:
            if self.topology.nodes[port].status is not Status.ABSENT:
                self._edge(port, passt_id, EdgeKind.PASST)
        self._edge(passt_id, guest_id, EdgeKind.PASST, "socket")

    def _pod_box(self, vm: res.Vm | res.ClusterVm) -> str:
        """The box of the VM's launcher pod: the lab namespace found through the VM, else one
        of its own. In the sandbox the pod starts with a CNI-like eth0, which the lab may
        remove."""
        found = next(
            (
                ns.name
                for ns in self.desired.namespaces.values()
                if ns.resolve == ("vm", vm.name)
                or (isinstance(vm, res.Vm) and ns.netns == vm.launcher)
            ),
            None,
        )
        if found is None:
            found = f"launcher-{vm.name}"
            lines = [Line(f"the pod of VM {vm.name}")]
            self.topology.boxes[box_id(found)] = Box(box_id(found), found, lines, Status.OK)
        if isinstance(vm, res.Vm):
            self._pod_interface(found, vm)
        return box_id(found)

    def _pod_interface(self, pod: str, vm: res.Vm) -> None:
        address = link_id(pod, "eth0")
        cni = Line(f"the CNI's, {vm.pod_address}")
        existing = self.topology.nodes.get(address)
        if existing is not None:
            existing.lines.insert(0, cni)
            return
        node = Node(address, box_id(pod), "eth0", [cni], self._status(vm.address))
        self.topology.nodes[address] = node

    # routes

    def _routes(self) -> None:
        by_namespace: dict[str, list[res.Route]] = {}
        for route in (*self.desired.routes.values(), *self.desired.absent_routes.values()):
            by_namespace.setdefault(route.namespace, []).append(route)
        for namespace, routes in by_namespace.items():
            node_id = f"routes.{namespace}"
            node = Node(node_id, self._box_for(namespace), "routes", shape="routes")
            self.topology.nodes[node_id] = node
            for index, route in enumerate(routes):
                absent = route.address in self.desired.absent_routes
                status = Status.ABSENT if absent else self._status(route.address)
                if absent and route.address in self.changes:
                    status = Status.DRIFTED
                port = f"r{index}"
                node.lines.append(Line(_route_text(route, absent=absent), status, port))
                if route.via is not None and not absent:
                    gateway = self._gateway(route.via)
                    self._edge(node_id, gateway, EdgeKind.GATEWAY, route.to, tail_port=port)

    def _gateway(self, via: str) -> str:
        """The port holding a gateway's address, or the gateway drawn outside the lab."""
        found = self.gateways.get(via)
        if found is None:
            found = f"gateway.{via}"
            if found not in self.topology.nodes:
                node = Node(found, None, via, [Line("gateway outside the lab")])
                node.status, node.shape = Status.OUTSIDE, "gateway"
                self.topology.nodes[found] = node
        return found

    # statuses

    def _status(self, address: str) -> Status:
        change = self.changes.get(address)
        if change is None:
            return Status.OK
        return STATUS_OF_ACTION.get(change.action, Status.OK)

    def _edge(
        self,
        tail: str,
        head: str | None,
        kind: EdgeKind,
        label: str = "",
        *,
        tail_port: str | None = None,
    ) -> None:
        if head is not None:
            self.topology.edges.append(Edge(tail, head, kind, label, tail_port=tail_port))

    def _settle_statuses(self) -> None:
        """A port whose own state is fine but whose addresses or routes are not is drifted; an
        edge takes the status of its ends."""
        for node in self.topology.nodes.values():
            if node.status is Status.OK and any(
                line.status in (Status.MISSING, Status.DRIFTED) for line in node.lines
            ):
                node.status = Status.DRIFTED
        nodes = self.topology.nodes
        self.topology.edges = [
            Edge(e.tail, e.head, e.kind, e.label, _edge_status(nodes, e), e.tail_port)
            for e in self.topology.edges
        ]


def _edge_status(nodes: dict[str, Node], edge: Edge) -> Status:
    ends = {nodes[edge.tail].status, nodes[edge.head].status}
    if edge.kind is EdgeKind.GATEWAY:  # the route's own line says how the route stands
        ends = {nodes[edge.head].status}
    return next((s for s in EDGE_STATUS_ORDER if s in ends), Status.OK)


def _where(namespace: res.Namespace) -> str:
    if namespace.role is res.NamespaceRole.HOST:
        return "this machine's root namespace"
    if namespace.resolve is not None:
        way, value = namespace.resolve
        return f"found by {way}: {value}"
    return f"netns {namespace.netns}"


def _link_facts(link: res.Link) -> Iterable[str]:
    """What a port's label says of its link, after its name: kind and settings."""
    kind = link.kind or "existing device"
    if link.kind in ("macvlan", "macvtap") and link.mode:
        kind = f"{link.kind} {link.mode}"
    elif link.kind == "vxlan":
        kind = f"vxlan vni {link.vni}" if link.vni is not None else "vxlan"
    yield kind
    if link.kind == "vxlan":
        if link.remote or link.group:
            yield f"remote {link.remote}" if link.remote else f"group {link.group}"
        if link.dstport is not None:
            yield f"port {link.dstport}"
    if link.mtu is not None:
        yield f"mtu {link.mtu}"
    if link.mac:
        yield f"mac {link.mac}"
    if link.up is False:
        yield "down"


def _vxlan_tie(link: res.Link) -> str:
    """What the tie of a vxlan to its underlay says: `vxlan 42 to 192.0.2.2`."""
    far = f" to {link.remote}" if link.remote else f" group {link.group}" if link.group else ""
    return f"vxlan {link.vni}{far}" if link.vni is not None else f"vxlan{far}"


def _differences(change: Change) -> str:
    """What a drifted link is now, where it differs: `live mtu 1400`."""
    live = res.attributes(change.before) or {}
    return "live " + ", ".join(f"{name} {live.get(name)}" for name in change.changed)


def _route_text(route: res.Route, *, absent: bool) -> str:
    text = route.to if route.family == 4 or route.to != "default" else "default (IPv6)"
    if route.via:
        text += f" via {route.via}"
    if route.dev:
        text += f" dev {route.dev}"
    if route.metric != res.DEFAULT_METRIC[route.family]:
        text += f" metric {route.metric}"
    if route.table != res.MAIN_TABLE:
        text += f" table {route.table}"
    return text + (" (state: absent)" if absent else "")


def _host(cidr: str | None) -> str:
    return (cidr or "").partition("/")[0]


def _foreign(link: res.Link) -> bool:
    """A live link the picture shows as foreign: not loopback, not the sandbox VM driver's."""
    return link.name != "lo" and not (link.owner or "").startswith(res.DRIVER_PREFIX)
