from __future__ import annotations

import pytest

from passtplan.kubevirt import Install, drift, passt_form_error


def install(version: str, gates: tuple[str, ...] = (), plugins: tuple[str, ...] = ()) -> Install:
    return Install(version, frozenset(gates), frozenset(plugins))


@pytest.mark.parametrize(
    ("form", "cluster", "error"),
    [
        ("passt", install("v1.0.0", ("Passt",)), None),
        ("passt", install("v1.0.0"), "needs the feature gate Passt"),
        (
            "passt",
            install("v1.5.0"),
            "rejects the core `passt: {}` binding (removed in v1.3): use binding: {name: passt}",
        ),
        ("passt", install("v1.9.1"), "use passtBinding: {}"),
        ("binding", install("v1.4.0", plugins=("passt",)), None),
        ("binding", install("v1.4.0"), "spec.configuration.network.binding.passt"),
        ("binding", install("v1.0.0"), "no passt binding plugin (v1.1.1-v1.8): use passt: {}"),
        ("binding", install("v1.9.0"), "use passtBinding: {}"),
        ("passtBinding", install("v1.8.0", ("PasstBinding",)), None),
        ("passtBinding", install("v1.8.2"), "needs the feature gate PasstBinding"),
        ("passtBinding", install("v1.9.0"), None),
        (
            "passtBinding",
            install("v1.5.0"),
            "no core `passtBinding: {}` (from v1.8): use binding: {name: passt}",
        ),
    ],
)
def test_passt_form_by_release(form: str, cluster: Install, error: str | None) -> None:
    found = passt_form_error(form, cluster)  # type: ignore[arg-type]
    if error is None:
        assert found is None
    else:
        assert found is not None
        assert error in found


def test_drift_compares_only_what_the_manifest_sets() -> None:
    wanted = {
        "spec": {
            "runStrategy": "Always",
            "template": {"spec": {"networks": [{"name": "default", "pod": {}}]}},
        }
    }
    live = {
        "metadata": {"uid": "x", "resourceVersion": "9"},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "spec": {
                    "networks": [{"name": "default", "pod": {}}],
                    "terminationGracePeriodSeconds": 180,
                }
            },
        },
        "status": {"ready": True},
    }
    assert drift(wanted, live) == []
    live["spec"]["runStrategy"] = "Halted"
    live["spec"]["template"]["spec"]["networks"][0]["name"] = "other"
    assert drift(wanted, live) == ["spec.runStrategy", "spec.template.spec.networks[0].name"]
