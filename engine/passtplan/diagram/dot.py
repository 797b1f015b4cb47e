"""The topology in Graphviz's DOT: boxes as clusters, ports as nodes with HTML-like labels, a
legend of the statuses drawn. `dot -Tsvg` makes the picture."""

from __future__ import annotations

from html import escape

from passtplan.diagram.topology import (
    MEANING,
    Box,
    Edge,
    EdgeKind,
    Line,
    Nesting,
    Node,
    Status,
    Topology,
)

# colour, line style: the same for boxes, nodes, edges and label lines
LOOK: dict[Status, tuple[str, str]] = {
    Status.OK: ("black", "solid"),
    Status.ABSENT: ("gray55", "dotted"),
    Status.OUTSIDE: ("gray35", "dashed"),
    Status.MISSING: ("red", "dashed"),
    Status.DRIFTED: ("darkorange", "bold"),
    Status.FOREIGN: ("gray60", "solid"),
}
EDGE_LOOK: dict[EdgeKind, str] = {
    EdgeKind.WIRE: "dir=none, penwidth=2",
    EdgeKind.PARENT: "arrowhead=onormal",
    EdgeKind.TUNNEL: 'dir=both, arrowhead=none, arrowtail=none, style=dotted, color="steelblue"',
    EdgeKind.PORT: "arrowhead=odiamond",
    EdgeKind.GATEWAY: 'style=dotted, color="blue", fontcolor="blue"',
    EdgeKind.PASST: "",
}
SHAPE = {
    "port": 'shape=box, style="rounded"',
    "routes": "shape=plaintext",
    "passt": "shape=component",
    "guest": 'shape=box, style="rounded"',
    "gateway": "shape=ellipse",
}


def to_dot(topology: Topology) -> str:
    lines = [
        "digraph lab {",
        "  rankdir=LR;",
        "  compound=true;",
        "  newrank=true;",
        f"  label=<{_bold(topology.title)}>;",
        "  labelloc=t;",
        '  fontname="Helvetica";',
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    lines += _contents(topology.nesting(), None, "  ")
    lines += [_edge(edge) for edge in topology.edges]
    lines += _legend(topology.statuses())
    lines.append("}")
    return "\n".join(lines) + "\n"


def _contents(nesting: Nesting, box: str | None, indent: str) -> list[str]:
    lines = [indent + _node(node) for node in nesting.members.get(box, [])]
    for child in nesting.children.get(box, []):
        color, style = LOOK[child.status]
        lines += [
            f"{indent}subgraph {_id('cluster_' + child.id)} {{",
            f"{indent}  label=<{_box_label(child)}>;",
            f'{indent}  color="{color}"; fontcolor="{_text_color(child.status)}";',
            f'{indent}  style="rounded,{style}";',
        ]
        lines += _contents(nesting, child.id, indent + "  ")
        lines.append(f"{indent}}}")
    return lines


def _node(node: Node) -> str:
    color, style = LOOK[node.status]
    shape = SHAPE[node.shape]
    if node.shape == "routes":
        return f"{_id(node.id)} [{shape}, label=<{_routes_label(node)}>];"
    if node.shape in ("port", "guest"):
        shape = f'shape=box, style="rounded,{style}"'
    elif style != "solid":
        shape += f', style="{style}"'
    return (
        f'{_id(node.id)} [{shape}, color="{color}", fontcolor="{_text_color(node.status)}", '
        f"label=<{_label(node.title, node.lines)}>];"
    )


def _label(title: str, lines: list[Line]) -> str:
    rows = [f"<TR><TD>{_bold(title)}</TD></TR>"]
    rows += [f"<TR><TD>{_line(line)}</TD></TR>" for line in lines]
    return '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0">' + "".join(rows) + "</TABLE>"


def _routes_label(node: Node) -> str:
    rows = [f'<TR><TD BORDER="0">{_bold(node.title)}</TD></TR>']
    for line in node.lines:
        color, style = LOOK[line.status]
        port = f' PORT="{line.port}"' if line.port else ""
        rows.append(
            f'<TR><TD{port} COLOR="{color}" STYLE="{_cell_style(style)}">{_line(line)}</TD></TR>'
        )
    return '<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="2">' + "".join(rows) + "</TABLE>"


def _cell_style(style: str) -> str:
    """HTML-like tables know dashed and dotted borders, not bold."""
    return style if style in ("dashed", "dotted") else "solid"


def _box_label(box: Box) -> str:
    parts = [_bold(box.title)] + [_line(line) for line in box.lines]
    return "<BR/>".join(parts)


def _line(line: Line) -> str:
    text = f'<FONT POINT-SIZE="9">{escape(line.text)}</FONT>'
    if line.status is not Status.OK:
        text = f'<FONT COLOR="{_text_color(line.status)}">{text}</FONT>'
    return text


def _bold(text: str) -> str:
    return f"<B>{escape(text)}</B>"


def _text_color(status: Status) -> str:
    return "black" if status is Status.OK else LOOK[status][0]


def _edge(edge: Edge) -> str:
    color, style = LOOK[edge.status]
    attributes = [a for a in [EDGE_LOOK[edge.kind]] if a]
    if edge.status is not Status.OK:
        attributes.append(f'color="{color}", fontcolor="{color}", style="{style}"')
    if edge.label:
        attributes.append(f"label=<{escape(edge.label)}>")
    tail = _id(edge.tail) + (f":{edge.tail_port}" if edge.tail_port else "")
    return f"  {tail} -> {_id(edge.head)} [{', '.join(attributes)}];"


def _legend(statuses: list[Status]) -> list[str]:
    """One small table: each status drawn as the picture draws it, and what it means."""
    if statuses == [Status.OK]:
        return []
    rows = []
    for status in statuses:
        color, style = LOOK[status]
        rows.append(
            f'<TR><TD COLOR="{color}" STYLE="{_cell_style(style)}" BORDER="1">'
            f'<FONT COLOR="{_text_color(status)}">{escape(status.value)}</FONT></TD>'
            f'<TD BORDER="0" ALIGN="LEFT">{escape(MEANING[status])}</TD></TR>'
        )
    table = '<TABLE BORDER="0" CELLSPACING="3">' + "".join(rows) + "</TABLE>"
    return [
        '  subgraph "cluster_legend" {',
        '    label=<<B>legend</B>>; style="rounded"; color="gray70";',
        f'    "legend" [shape=plaintext, fontsize=9, label=<{table}>];',
        "  }",
    ]


def _id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
