"""Any small valid lab: apply, then the plan is empty; destroy, then nothing of it remains."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from passtplan.cycles import load_lab
from tests.integration.conftest import Lab, cleanup


@st.composite
def labs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid lab built link by link; every address gets a subnet of its own."""
    names = [f"n{i}" for i in range(draw(st.integers(2, 4)))]
    namespaces: dict[str, dict[str, Any]] = {n: {"links": {}} for n in names}
    subnet = iter(range(1, 250))
    for ns in names:
        if draw(st.booleans()):
            namespaces[ns]["links"]["br0"] = {"kind": "bridge"}
    for index in range(draw(st.integers(1, 4))):
        a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        end_a, end_b = f"va{index}", f"vb{index}"
        link_a: dict[str, Any] = {"kind": "veth", "peer": f"{b}/{end_b}"}
        if "br0" in namespaces[a]["links"] and draw(st.booleans()):
            link_a["master"] = "br0"
        if draw(st.booleans()):
            link_a["mtu"] = draw(st.sampled_from([1400, 1500, 9000]))
        namespaces[a]["links"][end_a] = link_a
        if draw(st.booleans()):  # declare the other end too, or leave it implied
            namespaces[b]["links"][end_b] = {"kind": "veth", "peer": f"{a}/{end_a}"}
    parents = [
        (ns, name)
        for ns in names
        for name, link in namespaces[ns]["links"].items()
        if not link.get("master")  # a bridge port cannot also carry macvlans
    ]
    for index in range(draw(st.integers(0, 2)) if parents else 0):
        parent_ns, parent = draw(st.sampled_from(parents))
        ns = draw(st.sampled_from(names))
        mode = draw(st.sampled_from(["vepa", "bridge", "private"]))
        namespaces[ns]["links"][f"mv{index}"] = {
            "kind": "macvlan",
            "parent": f"{parent_ns}/{parent}",
            "mode": mode,
        }
    for ns in names:
        routes = []
        for name, link in namespaces[ns]["links"].items():
            if link.get("master") or not draw(st.booleans()):
                continue
            net = next(subnet)
            link["addresses"] = [f"10.{net}.0.1/24"]
            if draw(st.booleans()):
                link["addresses"].append(f"fd00:{net:x}::1/64")
            if draw(st.booleans()):
                routes.append({"to": f"172.16.{net}.0/24", "via": f"10.{net}.0.254", "dev": name})
            elif draw(st.booleans()):
                link["up"] = False
        if routes:
            namespaces[ns]["routes"] = routes
        if draw(st.booleans()):
            namespaces[ns]["sysctls"] = {"net.ipv4.ip_forward": draw(st.sampled_from(["0", "1"]))}
    for ns in names:
        if not namespaces[ns]["links"]:
            del namespaces[ns]["links"]
    return {
        "apiVersion": "passtplan/v1alpha1",
        "kind": "Lab",
        "metadata": {"name": "LABNAME"},
        "namespaces": namespaces,
    }


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lab_data=labs())
def test_any_small_lab_applies_converges_and_destroys(
    tmp_path: Path, lab_data: dict[str, Any]
) -> None:
    name = f"pp{secrets.token_hex(3)}"
    directory = tmp_path / name
    directory.mkdir()
    lab = Lab(directory, name)
    yaml = YAML(typ="safe", pure=True)
    with lab.path.open("w") as out:
        yaml.dump(lab_data, out)
    lab.write(lab.path.read_text())
    try:
        load_lab(lab.path)  # the generator only makes valid labs
        lab.apply()
        lab.converged()
        lab.destroy()
        assert lab.leftovers() == []
    finally:
        cleanup(name)
