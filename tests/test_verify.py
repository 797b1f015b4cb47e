"""verify is a pure function of the desired and the observed state: what still differs after
apply, field by field (the golden cases under fixtures/diff/ hold one verify.txt each)."""

from __future__ import annotations

from passtplan.cycles import load_lab
from passtplan.desired import desired_state
from passtplan.verify import VerifyError, verify
from tests.conftest import FIXTURES
from tests.observed import observed_state

CASES = FIXTURES / "diff"


def verify_case(case: str) -> list[VerifyError]:
    loaded = load_lab(CASES / case / "lab.yaml")
    desired = desired_state(loaded.lab, sandbox=False)
    return verify(desired, observed_state(CASES / case / "observed.yaml", desired.lab))


def test_a_converged_state_verifies_clean() -> None:
    assert verify_case("converged") == []


def test_a_drifted_field_names_address_field_want_and_have() -> None:
    assert verify_case("drift-mtu") == [VerifyError("link.a/v0", "mtu", "1500", "1400")]


def test_missing_and_leftover_resources() -> None:
    errors = {(e.address, e.want, e.have) for e in verify_case("gateway-recreated")}
    assert ("address.b/v0[10.0.0.3/24]", "present", "missing") in errors
    assert ("address.b/v0[10.0.0.2/24]", "absent", "present") in errors
    assert ("route.b[10.8.0.0/16]", "present", "missing") in errors


def test_a_port_left_on_its_bridge_is_an_error() -> None:
    assert verify_case("bridge-port-dropped") == [
        VerifyError("link.switch/p-red", "master", "none", "br0")
    ]
