"""The topology in Mermaid (a flowchart): boxes as subgraphs, ports as nodes, statuses as classes,
for Markdown that renders Mermaid (GitHub, GitLab)."""

from __future__ import annotations

from passtplan.diagram.topology import MEANING, EdgeKind, Line, Nesting, Status, Topology

LOOK: dict[Status, str] = {
    Status.OK: "stroke:#333,color:#000",
    Status.ABSENT: "stroke:#999,stroke-dasharray:2 2,color:#999",
    Status.OUTSIDE: "stroke:#666,stroke-dasharray:5 5,color:#666",
    Status.MISSING: "stroke:#d00,stroke-dasharray:5 5,color:#d00",
    Status.DRIFTED: "stroke:#f80,stroke-width:3px,color:#c60",
    Status.FOREIGN: "stroke:#aaa,color:#999,fill:#f4f4f4",
}
ARROW: dict[EdgeKind, str] = {
    EdgeKind.WIRE: "===",
    EdgeKind.PARENT: "-->",
    EdgeKind.TUNNEL: "-.-",
    EdgeKind.PORT: "---",
    EdgeKind.GATEWAY: "-.->",
    EdgeKind.PASST: "-->",
}
SHAPE = {  # opening and closing brackets
    "port": ('("', '")'),
    "routes": ('["', '"]'),
    "passt": ('[["', '"]]'),
    "guest": ('("', '")'),
    "gateway": ('(["', '"])'),
}


def to_mermaid(topology: Topology) -> str:
    ids = {node: f"n{i}" for i, node in enumerate(topology.nodes)}
    ids.update({box: f"b{i}" for i, box in enumerate(topology.boxes)})
    lines = ["---", f"title: {topology.title}", "---", "flowchart LR"]
    lines += _contents(topology.nesting(), None, ids, "  ")
    for edge in topology.edges:
        label = f'|"{_text(edge.label)}"|' if edge.label else ""
        lines.append(f"  {ids[edge.tail]} {ARROW[edge.kind]}{label} {ids[edge.head]}")
    for index, edge in enumerate(topology.edges):
        if edge.status is not Status.OK:
            lines.append(f"  linkStyle {index} {LOOK[edge.status]}")
    statuses = topology.statuses()
    lines += _legend(statuses)
    for status in statuses:
        lines.append(f"  classDef {status.value} {LOOK[status]}")
    for node_id, node in topology.nodes.items():
        if node.status is not Status.OK:
            lines.append(f"  class {ids[node_id]} {node.status.value}")
    for box_key, box in topology.boxes.items():
        if box.status is not Status.OK:
            lines.append(f"  style {ids[box_key]} {LOOK[box.status]}")
    return "\n".join(lines) + "\n"


def _contents(nesting: Nesting, box: str | None, ids: dict[str, str], indent: str) -> list[str]:
    lines = []
    for node in nesting.members.get(box, []):
        opening, closing = SHAPE[node.shape]
        lines.append(f"{indent}{ids[node.id]}{opening}{_label(node.title, node.lines)}{closing}")
    for child in nesting.children.get(box, []):
        lines.append(f'{indent}subgraph {ids[child.id]}["{_label(child.title, child.lines)}"]')
        lines += _contents(nesting, child.id, ids, indent + "  ")
        lines.append(f"{indent}end")
    return lines


def _label(title: str, lines: list[Line]) -> str:
    """Lines of a label; a line whose status differs from its node's says so in words."""
    parts = [f"<b>{_text(title)}</b>"]
    for line in lines:
        note = "" if line.status is Status.OK else f" ({line.status.value})"
        parts.append(_text(line.text + note))
    return "<br/>".join(parts)


def _text(text: str) -> str:
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def _legend(statuses: list[Status]) -> list[str]:
    if statuses == [Status.OK]:
        return []
    lines = ['  subgraph legend["legend"]']
    for status in statuses:
        meaning = _text(f"{status.value}: {MEANING[status]}")
        lines.append(f'    legend_{status.value}["{meaning}"]:::{status.value}')
    lines.append("  end")
    return lines
