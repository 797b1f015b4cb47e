"""`passtplan show`: the live state of network namespaces, written in the plan language; or a
plan saved by `plan --out`, as the plan printed it.

Fed back to `passtplan plan`, the output plans to no changes: each namespace is found by its
path (`resolve: {path: ...}`), and links whose other end is not shown are written without kind,
so the plan configures them instead of creating them.
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

from ruamel.yaml import YAML

from passtplan import inputs
from passtplan import resources as res
from passtplan.changes import read_saved_plan, saved_plan_document
from passtplan.commands.common import load
from passtplan.desired import Desired, desired_state
from passtplan.engine import require_root
from passtplan.errors import PasstplanError
from passtplan.lang.models import API_VERSION, HOST, Lab
from passtplan.providers import kernel
from passtplan.providers.observe import observe
from passtplan.providers.session import Session
from passtplan.render import as_format, colored

CREATABLE = {"veth", "macvlan", "macvtap", "bridge", "vxlan", "tap"}
# a kind's own fields, as the plan language writes them: (res.Link field, lab field)
KIND_FIELDS = {
    "vxlan": (
        ("vni", "id"),
        ("remote", "remote"),
        ("group", "group"),
        ("local", "local"),
        ("dstport", "dstport"),
        ("dev", "dev"),
    ),
    "tap": (("tap_owner", "owner"),),
}


def run(
    netns: list[str],
    *,
    output: str,
    lab: Path | None = None,
    sandbox: bool = False,
    saved: Path | None = None,
) -> int:
    if saved is not None:
        if netns or lab is not None:
            raise PasstplanError("show takes a saved plan or --netns/--lab, not both")
        return show_saved_plan(saved, output=output)
    for name in netns:
        if name != HOST:
            inputs.netns_name(name)
    if lab is not None:
        loaded = load(lab, warn=False)
        require_root("show")
        namespaces = lab_namespaces(loaded.lab, sandbox=sandbox)
    else:
        require_root("show")
        namespaces = {}
        for netns_name in netns or kernel.list_netns():
            namespace = _namespace(netns_name)
            if namespace.name in namespaces:
                raise PasstplanError(f"--netns {netns_name} is given twice")
            namespaces[namespace.name] = namespace
    with Session() as session:
        state = observe(Desired("show", False, namespaces=namespaces), res.Ownership(), session)
    missing = [
        ns.netns or ns.name for ns in namespaces.values() if state.namespaces[ns.name] is None
    ]
    if missing:
        raise PasstplanError(f"no such network namespace: {', '.join(missing)} (see ip netns list)")
    document = lab_document(state)
    # The text of a lab is its YAML, in the plan language (flow mappings kept on one line).
    sys.stdout.write(as_format(document, "json") if output == "json" else to_yaml(document))
    return 0


def show_saved_plan(path: Path, *, output: str) -> int:
    """What `plan --out` saved, as `plan` printed it then (`terraform show PLANFILE`)."""
    saved = read_saved_plan(path)
    if saved is None:
        raise PasstplanError(
            f"{path}: is a lab, not a plan saved by plan --out; show --lab {path} shows its "
            "namespaces' live state"
        )
    document, text = saved_plan_document(path, saved)
    sys.stdout.write(colored(text) if output == "text" else as_format(document, output))
    return 0


def lab_namespaces(lab: Lab, *, sandbox: bool) -> dict[str, res.Namespace]:
    """A lab's namespaces under the lab's own names, each found by its path; in the sandbox,
    `host` is a namespace like the others and is written as its netns name (`host` is reserved
    for the machine's own)."""
    found = {}
    for name, ns in desired_state(lab, sandbox=sandbox).namespaces.items():
        if ns.netns is None:
            found[name] = res.Namespace(name, None, res.NamespaceRole.HOST)
            continue
        label = _label(ns.netns) if name == HOST else name
        path = ("path", str(kernel.netns_path(ns.netns)))
        found[label] = res.Namespace(label, ns.netns, res.NamespaceRole.RESOLVED, path)
    return found


def _namespace(netns_name: str) -> res.Namespace:
    if netns_name == HOST:
        return res.Namespace(HOST, None, res.NamespaceRole.HOST)
    path = str(kernel.netns_path(netns_name))
    return res.Namespace(_label(netns_name), netns_name, res.NamespaceRole.RESOLVED, ("path", path))


def _label(netns_name: str) -> str:
    """A netns name as a lab namespace name (a DNS label): `lab.host` -> `lab-host`."""
    return re.sub(r"[^a-z0-9-]+", "-", netns_name.lower()).strip("-")[:63] or "ns"


def lab_document(state: res.State) -> dict[str, object]:
    """Pure: observed state -> a lab in the plan language."""
    shown = {name for name, ns in state.namespaces.items() if ns is not None}
    namespaces: dict[str, object] = {}
    for name, observed in sorted(state.namespaces.items()):
        assert observed is not None
        entry: dict[str, object] = {}
        ns = observed.namespace
        if ns.role is res.NamespaceRole.RESOLVED and ns.resolve is not None:
            entry["resolve"] = {ns.resolve[0]: ns.resolve[1]}
        links = {}
        addresses: dict[str, list[str]] = {}
        for address in observed.addresses:
            addresses.setdefault(address.link, []).append(address.cidr)
        for link in sorted(observed.links.values(), key=lambda link: link.ifindex):
            written = _link(link, addresses.get(link.name, []), shown)
            if written is not None:
                links[link.name] = written
        if links:
            entry["links"] = links
        routes = [_route(r) for r in observed.routes]
        if routes:
            entry["routes"] = routes
        namespaces[name] = entry
    return {
        "apiVersion": API_VERSION,
        "kind": "Lab",
        "metadata": {"name": "shown", "description": "live state, written by passtplan show"},
        "namespaces": namespaces,
    }


def _link(link: res.Link, addresses: list[str], shown: set[str]) -> dict[str, object] | None:
    other = link.peer or link.parent
    creatable = link.kind in CREATABLE and (other is None or other[0] in shown)
    if link.name == "lo" and not addresses:
        return None
    out: dict[str, object] = {}
    if creatable:
        out["kind"] = link.kind
        if link.peer is not None:
            out["peer"] = "/".join(link.peer)
        if link.parent is not None:
            out["parent"] = "/".join(link.parent)
            out["mode"] = link.mode
        for field, key in KIND_FIELDS.get(link.kind or "", ()):
            if getattr(link, field) is not None:
                out[key] = getattr(link, field)
        if not link.up:
            out["up"] = False
    if link.mtu and link.name != "lo":
        out["mtu"] = link.mtu
    if link.mac and link.kind is not None:
        out["mac"] = link.mac
    if link.master:
        out["master"] = link.master
    if addresses:
        out["addresses"] = addresses
    return out


def _route(route: res.Route) -> dict[str, object]:
    out: dict[str, object] = {"to": route.to}
    if route.via:
        out["via"] = route.via
    if route.dev:
        out["dev"] = route.dev
    if route.metric != res.DEFAULT_METRIC[route.family]:
        out["metric"] = route.metric
    if route.table != res.MAIN_TABLE:
        out["table"] = route.table
    if route.onlink:
        out["onlink"] = True
    return out


def to_yaml(data: object) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = None
    yaml.width = 4096  # one line per flow mapping: a MAC address is never wrapped
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()
