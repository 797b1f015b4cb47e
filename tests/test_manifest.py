from __future__ import annotations

import pytest

from passtplan.errors import Severity
from passtplan.lang.manifest import Port, plaintext_password, read_manifest
from passtplan.lang.yamlsource import parse_yaml

VM = """apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {{name: vm1}}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        devices:
          interfaces: [{{name: default, {binding}}}]
      networks: [{{name: default, pod: {{}}}}]
"""


@pytest.mark.parametrize(
    ("binding", "form"),
    [
        ("passt: {}", "passt"),
        ("binding: {name: passt}", "binding"),
        ("passtBinding: {}", "passtBinding"),
    ],
)
def test_every_passt_form_is_recognised(binding: str, form: str) -> None:
    manifest, issues = read_manifest(
        parse_yaml(VM.format(binding=binding).encode(), "vm"), "vm1", "default"
    )
    assert issues == []
    assert manifest is not None and manifest.passt_form == form and manifest.ports is None


def test_ports_are_read() -> None:
    binding = "passtBinding: {}, ports: [{port: 22}, {port: 53, protocol: UDP}]"
    manifest, _ = read_manifest(
        parse_yaml(VM.format(binding=binding).encode(), "vm"), "vm1", "default"
    )
    assert manifest is not None
    assert manifest.ports == (Port(22, "TCP"), Port(53, "UDP"))


def test_bad_port_is_located() -> None:
    binding = "passtBinding: {}, ports: [{port: 0}]"
    manifest, issues = read_manifest(
        parse_yaml(VM.format(binding=binding).encode(), "vm"), "vm1", "default"
    )
    assert manifest is None
    assert [str(i) for i in issues] == [
        "vm:10:66: spec.template.spec.domain.devices.interfaces[0].ports[0]: port must be a "
        "number from 1 to 65535"
    ]


@pytest.mark.parametrize(
    ("user_data", "found"),
    [
        ("#cloud-config\npassword: secret\n", "password"),
        ("#cloud-config\nchpasswd: {list: 'root:x'}\n", "chpasswd"),
        ("#cloud-config\nchpasswd: {users: [{name: root, password: x}]}\n", "chpasswd"),
        ("#cloud-config\nusers: [{name: a, plain_text_passwd: x}]\n", "users[].plain_text_passwd"),
        ("#cloud-config\nssh_authorized_keys: [ssh-ed25519 AAAA]\n", None),
        ("#!/bin/sh\necho hi\n", None),
        ("{{{", None),
    ],
)
def test_plaintext_password_detection(user_data: str, found: str | None) -> None:
    assert plaintext_password(user_data) == found


def test_password_is_a_warning_not_an_error() -> None:
    text = VM.format(binding="passt: {}") + (
        "      volumes:\n      - name: ci\n        cloudInitNoCloud:\n"
        '          userData: "#cloud-config\\npassword: x\\n"\n'
    )
    manifest, issues = read_manifest(parse_yaml(text.encode(), "vm"), "vm1", "default")
    assert manifest is not None
    assert [i.severity for i in issues] == [Severity.WARNING]


def read(text: str) -> tuple[object, list[str]]:
    manifest, issues = read_manifest(parse_yaml(text.encode(), "vm"), "vm1", "default")
    return manifest, [str(i) for i in issues if i.severity is Severity.ERROR]


@pytest.mark.parametrize(
    ("run", "error"),
    [
        (
            "runStrategy: Halted",
            "vm:5:16: spec.runStrategy: runStrategy Halted never starts the VM (Halted keeps it "
            "stopped); set spec.runStrategy: Always (or RerunOnFailure) so that KubeVirt starts it",
        ),
        (
            "runStrategy: Manual",
            "vm:5:16: spec.runStrategy: runStrategy Manual never starts the VM (Manual starts",
        ),
        ("running: false", "vm:5:12: spec.running: running: false never starts the VM"),
        ("runStrategy: Sometimes", "vm:5:16: spec.runStrategy: unknown runStrategy 'Sometimes'"),
        (
            "",
            "vm:5:3: spec: the VM has neither running nor runStrategy, so KubeVirt keeps it "
            "Halted and it never starts; set spec.runStrategy: Always",
        ),
    ],
)
def test_a_vm_that_never_starts_is_refused_with_the_fix(run: str, error: str) -> None:
    text = VM.format(binding="passtBinding: {}").replace("  runStrategy: Always\n", f"  {run}\n")
    if not run:
        text = text.replace("  \n", "")
    manifest, errors = read(text)
    assert manifest is None
    assert len(errors) == 1 and errors[0].startswith(error), errors


@pytest.mark.parametrize(
    "run",
    ["runStrategy: Always", "runStrategy: RerunOnFailure", "running: true", "runStrategy: Once"],
)
def test_vms_that_start(run: str) -> None:
    text = VM.format(binding="passtBinding: {}").replace("  runStrategy: Always\n", f"  {run}\n")
    manifest, errors = read(text)
    assert manifest is not None and errors == []


SECONDARY = """apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {{name: vm1}}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        devices:
          interfaces:
          - {{name: default, {binding}}}
          - {{name: data, bridge: {{}}}}
      networks:
      - {{name: default, pod: {{}}}}
      - {{name: data, multus: {{networkName: br}}}}
"""


@pytest.mark.parametrize("binding", ["passtBinding: {}", "binding: {name: passt}"])
def test_a_multus_secondary_interface_is_fine_beside_passt_binding(binding: str) -> None:
    manifest, errors = read(SECONDARY.format(binding=binding))
    assert errors == []
    assert manifest is not None and manifest.interface == "default"  # type: ignore[attr-defined]


def test_core_passt_must_be_the_only_interface() -> None:
    manifest, errors = read(SECONDARY.format(binding="passt: {}"))
    assert manifest is None
    assert errors == [
        "vm:11:11: spec.template.spec.domain.devices.interfaces: the VM has 2 interfaces; the "
        "core `passt: {}` binding works only as a VM's only interface (KubeVirt v1.0-v1.2): use "
        "passtBinding: {} (v1.8+) or binding: {name: passt} for a VM with secondary interfaces"
    ]
