"""--target on a real lab: apply makes the target and what it needs only, destroy removes the
target and what depends on it only, and the plans say they are partial."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from passtplan.providers import kernel
from tests.integration.conftest import TWO, Lab, ip_json

LAB = (
    TWO
    + """      br0: {kind: bridge}
      p0: {kind: veth, peer: c/p0, master: br0}
  c:
    links:
      p0: {kind: veth, peer: b/p0}
"""
)


def links(lab: Lab, namespace: str) -> set[str]:
    return {str(link["ifname"]) for link in ip_json("link", "show", netns=lab.netns(namespace))}


def test_target_applies_the_target_and_what_it_needs_only(
    make_lab: Callable[[str], Lab],
) -> None:
    lab = make_lab(LAB)
    planned = lab.plan("--sandbox", "--target", "route.a[10.8.0.0/16]").output
    assert planned.startswith("Warning: resource targeting is in effect")
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in planned

    applied = lab.apply("--sandbox", "--target", "route.a[10.8.0.0/16]").output
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in applied
    assert "Apply complete! Resources: 6 added, 0 changed, 0 destroyed (" in applied
    assert "checks were not run" in applied
    made = {n for n in kernel.list_netns() if n.startswith(f"{lab.name}.")}
    assert made == {lab.netns("a"), lab.netns("b")}  # c is not needed by the route
    assert links(lab, "a") == {"lo", "v0"}
    assert links(lab, "b") == {"lo", "v0"}  # neither br0 nor p0
    routes = ip_json("route", "show", "10.8.0.0/16", netns=lab.netns("a"))
    assert [r["gateway"] for r in routes] == ["10.0.0.2"]
    assert lab.plan("--sandbox", "--target", "route.a[10.8.0.0/16]").output.endswith(
        "No changes. The live state matches the plan.\n"
    )
    rest = lab.plan("--sandbox").output  # the rest of the lab is still to do
    assert "+ link.b/br0" in rest and "+ link.c/p0" in rest and "+ link.a/v0" not in rest

    lab.apply("--sandbox")
    destroyed = lab.destroy("--sandbox", "--target", "link.b/br0").output
    assert "Destroy complete!" in destroyed
    assert links(lab, "b") == {"lo", "v0"}  # the bridge and its port (with its peer) went
    assert links(lab, "c") == {"lo"}  # the namespace stays: it was not targeted
    assert "+ link.b/br0" in lab.plan("--sandbox").output

    lab.destroy("--sandbox")
    assert lab.leftovers() == []


def test_a_saved_targeted_plan_applies_its_targets_only(
    make_lab: Callable[[str], Lab], tmp_path: Path
) -> None:
    lab = make_lab(LAB)
    saved = tmp_path / "saved.json"
    lab.plan("--sandbox", "--target", "link.c/p0", "--out", str(saved))
    applied = lab.run("apply", str(saved)).output
    assert applied.startswith("Warning: resource targeting is in effect (--target link.c/p0)")
    assert links(lab, "b") == {"lo", "p0", "br0"}  # the pair's other end, and its bridge
    assert links(lab, "c") == {"lo", "p0"}
    assert lab.netns("a") not in kernel.list_netns()
    lab.destroy("--sandbox")
    assert lab.leftovers() == []


def test_an_unknown_target_is_one_line_naming_the_closest(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab(LAB)
    result = lab.plan("--sandbox", "--target", "link.b/br1", code=1)
    assert result.output.strip().splitlines() == [
        f"error: --target link.b/br1: lab {lab.name} has no resource at this address; "
        "did you mean link.b/br0?"
    ]
    assert lab.leftovers() == []
