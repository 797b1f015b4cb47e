"""--target on the diff and graph stages: a target brings what must run before it (what it needs
when made, what depends on it when removed), and nothing else."""

from __future__ import annotations

import pytest

from passtplan.changes import Action, Change
from passtplan.desired import Desired, desired_state, destroy_target
from passtplan.diff import diff
from passtplan.errors import PasstplanError
from passtplan.graph import batched_graph
from passtplan.lang.loader import load_lab
from passtplan.targets import targeted
from tests.conftest import FIXTURES
from tests.observed import observed_state

CASES = FIXTURES / "diff"


def _plan(
    case: str, *, sandbox: bool = False, destroy: bool = False
) -> tuple[Desired, list[Change]]:
    loaded = load_lab(CASES / case / "lab.yaml")
    desired = desired_state(loaded.lab, sandbox=sandbox, manifests=loaded.manifests)
    if destroy:
        desired = destroy_target(desired)
    return desired, diff(desired, observed_state(CASES / case / "observed.yaml", desired.lab))


def test_a_target_brings_what_it_needs_and_nothing_else() -> None:
    desired, changes = _plan("vm-sandbox-fresh", sandbox=True)
    chosen = targeted(changes, desired, ("route.office[default]",))
    assert {c.address for c in chosen} == {
        "netns.office",
        "netns.gw",  # the veth's other end lives there
        "link.gw/office",  # the lower-named end makes the pair
        "link.office/eth0",
        "address.office/eth0[10.64.1.46/16]",  # the gateway's subnet, before the route
        "route.office[default]",
    }
    # the plan's order is kept, and the graph of the chosen changes is whole
    assert [c.address for c in chosen] == [c.address for c in changes if c in chosen]
    graph = batched_graph(chosen, desired)
    assert sum(len(graph.nodes[n]["changes"]) for n in graph) == len(chosen)


def test_targets_add_up() -> None:
    desired, changes = _plan("vm-sandbox-fresh", sandbox=True)
    one = targeted(changes, desired, ("link.switch/br0",))
    assert {c.address for c in one} == {"netns.switch", "link.switch/br0"}
    both = targeted(changes, desired, ("link.switch/br0", "sysctl.gw[net.ipv4.ip_forward]"))
    assert {c.address for c in both} == {
        "netns.switch",
        "link.switch/br0",
        "netns.gw",
        "sysctl.gw[net.ipv4.ip_forward]",
    }


def test_a_destroy_target_brings_what_depends_on_it_and_goes_alone() -> None:
    desired, changes = _plan("converged", destroy=True)
    assert all(c.action is Action.DELETE for c in changes)
    chosen = targeted(changes, desired, ("link.b/br0",))
    # the macvlan on the bridge goes first, with its address; the namespace stays, so what
    # would have gone with it goes by itself
    assert {c.address for c in chosen} == {"link.b/br0", "link.b/mv0", "address.b/mv0[10.1.0.2/24]"}
    assert all(c.covered_by in (None, "link.b/mv0") for c in chosen)
    reasons = {c.address: c.reason for c in chosen if c.address.startswith("link.")}
    assert reasons == {"link.b/br0": "targeted", "link.b/mv0": "goes with a target"}
    assert {c.address: c.covered_by for c in changes}["link.b/br0"] == "netns.b"
    graph = batched_graph(chosen, desired)
    assert graph.has_edge("link.b/mv0", "link.b/br0")


def test_a_targeted_veth_end_brings_the_other_end() -> None:
    desired, changes = _plan("converged", destroy=True)
    chosen = targeted(changes, desired, ("link.b/v0",))
    assert {c.address for c in chosen} == {
        "link.a/v0",
        "link.b/v0",
        "address.a/v0[10.0.0.1/24]",
        "address.b/v0[10.0.0.2/24]",
    }


def test_an_unknown_target_names_the_closest_address() -> None:
    desired, changes = _plan("vm-sandbox-fresh", sandbox=True)
    with pytest.raises(PasstplanError) as caught:
        targeted(changes, desired, ("link.pod/macvlan2",))
    message = str(caught.value)
    assert "\n" not in message
    assert "link.pod/macvlan2" in message
    assert "did you mean link.pod/macvlan1?" in message
    assert f"lab {desired.lab} has no resource" in message


def test_a_far_off_target_still_names_the_closest_address() -> None:
    desired, changes = _plan("owned-link-removed")
    with pytest.raises(PasstplanError) as caught:
        targeted(changes, desired, ("zzz",))
    assert "; did you mean " in str(caught.value)


def test_a_target_in_an_empty_plan_names_no_address() -> None:
    desired, _ = _plan("owned-link-removed")
    with pytest.raises(PasstplanError) as caught:
        targeted([], desired, ("link.b/mv0",))
    assert str(caught.value) == "--target link.b/mv0: lab g has no resource at this address"


def test_a_target_removed_with_its_link_brings_the_link() -> None:
    desired, changes = _plan("owned-link-removed")
    chosen = targeted(changes, desired, ("address.b/mv0[10.1.0.2/24]",))
    # the address goes when its link does: one action, so the link comes along and still covers it
    assert {c.address: c.covered_by for c in chosen} == {
        "link.b/mv0": None,
        "address.b/mv0[10.1.0.2/24]": "link.b/mv0",
    }
