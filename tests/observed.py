"""Live state written by hand in YAML, as observe would return it: for the pure stages' tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from passtplan import resources as res
from passtplan.lang.yamlsource import read_yaml


def observed_state(path: Path, lab: str) -> res.State:
    data: dict[str, Any] = read_yaml(path).data  # type: ignore[assignment]
    owned = data.get("owned", {})
    state = res.State(
        owned=res.Ownership(
            namespaces=set(owned.get("namespaces", [])),
            addresses=set(owned.get("addresses", [])),
            routes=set(owned.get("routes", [])),
            sysctls=dict(owned.get("sysctls", {})),
            # what a thing the lab did not make was before the lab changed it, as the record
            # keeps it (its attributes in JSON), written here as a mapping
            foreign={a: json.dumps(v, sort_keys=True) for a, v in owned.get("foreign", {}).items()},
        )
    )
    for name, ns in (data.get("namespaces") or {}).items():
        if ns is None:
            state.namespaces[name] = None
            continue
        role = res.NamespaceRole(ns.get("role", "created"))
        namespace = res.Namespace(
            name, None if role is res.NamespaceRole.HOST else f"{lab}.{name}", role
        )
        links = {}
        for index, (link_name, link) in enumerate((ns.get("links") or {}).items(), start=1):
            fields = dict(link)
            for key in ("peer", "parent"):
                if key in fields:
                    fields[key] = tuple(fields[key].split("/"))
            fields.setdefault("up", True)
            fields.setdefault("mtu", 1500)
            fields.setdefault("master", "")
            links[link_name] = res.Link(name, link_name, ifindex=index, **fields)
        addresses = [res.Address(name, *entry.split()) for entry in ns.get("addresses", [])]
        # observation always finds who added a route: boot, as `ip route add` does, unless said
        routes = [
            res.Route(namespace=name, **{"protocol": res.DEFAULT_ROUTE_PROTOCOL, **route})
            for route in ns.get("routes", [])
        ]
        state.namespaces[name] = res.NamespaceState(
            namespace, links, addresses, routes, dict(ns.get("sysctls", {}))
        )
    for name, vm in (data.get("vms") or {}).items():
        state.vms[name] = res.Vm(name=name, **vm)
    state.owned.vms = set(owned.get("vms", []))
    return state
