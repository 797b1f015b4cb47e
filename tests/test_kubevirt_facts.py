from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from passtplan.kubevirt import (
    Install,
    crd_fields,
    drift,
    early_eth0_removal,
    judge,
    parse_release,
    passt_form_error,
    swap_after_running,
)
from passtplan.providers.sandbox.launcher import passt_command
from passtplan.resources import Vm

CRDS = Path(__file__).parent / "kube" / "crds"


def crd(release: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(gzip.decompress((CRDS / f"{release}.json.gz").read_bytes()))
    return data


def install(
    version: str,
    gates: tuple[str, ...] = (),
    plugins: tuple[str, ...] = (),
    disabled: tuple[str, ...] = (),
    schema: str | None = None,
) -> Install:
    fields = crd_fields(crd(schema)) if schema else None
    return Install(version, frozenset(gates), frozenset(plugins), frozenset(disabled), fields)


@pytest.mark.parametrize(
    ("form", "cluster", "error"),
    [
        ("passt", install("v1.0.0", ("Passt",)), None),
        ("passt", install("v1.0.0"), "needs the feature gate Passt"),
        ("passt", install("v1.2.0", ("Passt",)), None),
        (
            "passt",
            install("v1.5.0", plugins=("passt",)),
            "rejects the core `passt: {}` binding (discontinued in v1.3): use binding: "
            "{name: passt}",
        ),
        ("passt", install("v1.3.0", ("Passt",)), "discontinued in v1.3"),
        ("passt", install("v1.9.1"), "use passtBinding: {}"),
        ("binding", install("v1.4.0", ("NetworkBindingPlugins",), ("passt",)), None),
        ("binding", install("v1.4.0", plugins=("passt",)), "gate NetworkBindingPlugins"),
        ("binding", install("v1.5.0", plugins=("passt",)), None),  # GA from v1.5
        ("binding", install("v1.5.0"), "spec.configuration.network.binding.passt"),
        ("binding", install("v1.0.0"), "no passt network binding plugin (from v1.1.1): use passt"),
        ("binding", install("v1.1.0", ("NetworkBindingPlugins",), ("passt",)), "from v1.1.1"),
        ("binding", install("v1.9.0", plugins=("passt",)), None),  # still accepted in v1.9
        ("passtBinding", install("v1.8.0", ("PasstBinding",)), None),
        ("passtBinding", install("v1.8.2"), "needs the feature gate PasstBinding: add it to"),
        ("passtBinding", install("v1.9.0"), None),  # Beta, on by default from v1.9
        (
            "passtBinding",
            install("v1.9.0", disabled=("PasstBinding",)),
            "remove it from disabledFeatureGates",
        ),
        ("passtBinding", install("v1.9.0", ("PasstBinding",), disabled=("PasstBinding",)), None),
        ("passtBinding", install("v1.5.0", plugins=("passt",)), "use binding: {name: passt}"),
    ],
)
def test_passt_form_by_release(form: str, cluster: Install, error: str | None) -> None:
    found = passt_form_error(form, cluster)  # type: ignore[arg-type]
    if error is None:
        assert found is None
    else:
        assert found is not None
        assert error in found


def test_binding_plugin_on_v1_9_is_accepted_with_a_warning_only() -> None:
    judged = judge("binding", install("v1.9.0", plugins=("passt",), schema="v1.9"))
    assert judged.error is None
    assert len(judged.warnings) == 1
    assert "the newer form" in judged.warnings[0]


@pytest.mark.parametrize(
    ("schema", "release"),
    [("v1.0", (1, 0, 0)), ("v1.4", (1, 3, 0)), ("v1.8", (1, 8, 0)), ("v1.9", (1, 9, 0))],
)
def test_devel_builds_are_placed_by_their_crd(schema: str, release: tuple[int, int, int]) -> None:
    """An operator built from source reports devel or latest: the CRD says what it is."""
    for version in ("devel", "latest"):
        cluster = install(version, schema=schema)
        assert cluster.release == release
        assert "by its VirtualMachine CRD" in cluster.shown


def test_devel_v1_9_takes_passt_binding_and_is_told_not_to_write_passt() -> None:
    cluster = install("devel", schema="v1.9")
    assert passt_form_error("passtBinding", cluster) is None
    error = passt_form_error("passt", cluster)
    assert error is not None and error.endswith("use passtBinding: {}")
    assert "KubeVirt devel (v1.9 or later, by its VirtualMachine CRD)" in error


def test_crd_without_passt_binding_wins_over_a_version_string() -> None:
    """A version that claims v1.9 on a CRD without passtBinding: the field decides."""
    cluster = install("v1.9.0", schema="v1.4")
    assert "no `passtBinding` field" in (passt_form_error("passtBinding", cluster) or "")


def test_parse_release() -> None:
    assert parse_release("v1.4.2") == (1, 4, 2)
    assert parse_release("v1.9.0-rc.1") == (1, 9, 0)
    assert parse_release("devel") is None
    assert parse_release("latest") is None


def test_swap_after_running_only_for_passt_binding_from_v1_8() -> None:
    assert swap_after_running("passtBinding", install("v1.8.0", ("PasstBinding",)))
    assert not swap_after_running("binding", install("v1.9.0"))
    assert not swap_after_running("passt", install("v1.0.0"))


def test_drift_compares_both_sides() -> None:
    wanted = {"spec": {"runStrategy": "Always", "template": {"spec": {"a": [1, {"b": 2}]}}}}
    live: dict[str, Any] = {
        "spec": {"runStrategy": "Always", "template": {"spec": {"a": [1, {"b": 2}]}}}
    }
    assert drift(wanted, live) == []
    live["spec"]["runStrategy"] = "Halted"
    live["spec"]["template"]["spec"]["extra"] = 1
    assert drift(wanted, live) == ["spec.runStrategy", "spec.template.spec.extra"]


def sandbox_vm(kubevirt: str, tcp: str = "22", udp: str = "none") -> Vm:
    return Vm("vm1", "l", "g", "10.233.70.4/32", "169.254.1.1", tcp, udp, "", kubevirt=kubevirt)


def test_passt_started_as_virt_launcher_v1_0_starts_it() -> None:
    """generators.go @v1.0.0: --runas 107 -e, -t/-u only for the protocols named."""
    command = passt_command(sandbox_vm("v1.0"), Path("/s"), Path("/p"), Path("/l"))
    assert command == ["passt", "--runas", "107", "-e", "-t", "22", "-s", "/s", "-P", "/p"]
    every = passt_command(sandbox_vm("v1.0", "1-900", "1-900"), Path("/s"), Path("/p"), Path("/l"))
    assert every[4:8] == ["-t", "1-900", "-u", "1-900"]


@pytest.mark.parametrize("kubevirt", ["v1.1", "v1.4", "v1.9"])
def test_passt_started_as_libvirt_starts_it(kubevirt: str) -> None:
    """qemu_passt.c: --one-off --socket --pid, --interface eth0, --log-file, one ports option
    per protocol KubeVirt forwards; TCP ports alone mean no UDP option."""
    command = passt_command(sandbox_vm(kubevirt), Path("/s"), Path("/p"), Path("/l"))
    assert command == [
        "passt",
        "--one-off",
        "--socket",
        "/s",
        "--pid",
        "/p",
        "--interface",
        "eth0",
        "--log-file",
        "/l",
        "--tcp-ports",
        "22",
    ]


def test_a_lab_that_would_remove_eth0_before_a_v1_8_vm_runs_is_refused() -> None:
    v19 = install("v1.9.0")
    vms = {"vm1": ("passtBinding", v19)}
    by_pod = {"pod": ("pod", "default/virt-launcher-vm1-abcde")}
    [error] = early_eth0_removal(vms, by_pod, {"pod"})  # type: ignore[arg-type]
    assert error.startswith("namespaces.pod: removes eth0 but resolves by pod")
    assert error.endswith("resolve it with {vm: vm1} so that eth0 goes after the VM is Running")
    assert early_eth0_removal(vms, {"pod": ("vm", "vm1")}, {"pod"}) == []  # type: ignore[arg-type]
    old = {"vm1": ("passt", install("v1.0.0", ("Passt",)))}
    assert early_eth0_removal(old, by_pod, {"pod"}) == []  # type: ignore[arg-type]
