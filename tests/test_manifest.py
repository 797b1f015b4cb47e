from __future__ import annotations

import pytest

from passtplan.errors import Severity
from passtplan.lang.manifest import Port, plaintext_password, read_manifest
from passtplan.lang.yamlsource import parse_yaml

VM = """apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {{name: vm1}}
spec:
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
        "vm:9:66: spec.template.spec.domain.devices.interfaces[0].ports[0]: port must be a "
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
