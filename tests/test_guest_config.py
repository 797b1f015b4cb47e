"""The QEMU guest's own files from a VM's cloud-init user data, and the lab's ssh key."""

from __future__ import annotations

import base64
import stat
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from passtplan.lang.cloudinit import cloud_config
from passtplan.lang.manifest import Port, VmManifest, read_manifest
from passtplan.lang.yamlsource import parse_yaml
from passtplan.providers.sandbox.guest_config import (
    GuestConfig,
    guest_config,
    lab_key,
    public_key,
    ssh_port,
)
from tests.conftest import PLANS

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

LAB_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlab passtplan lab@sandbox"
USER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIuser someone@laptop"


def manifest(
    user_data: str | None = None,
    *,
    ports: tuple[Port, ...] | None = None,
    spec: dict[str, object] | None = None,
    volume: dict[str, object] | None = None,
) -> VmManifest:
    """A VM whose cloud-init volume holds `user_data` (or `volume` as it is)."""
    cloud_init = volume if volume is not None else {"userData": user_data}
    volumes = [] if user_data is None and volume is None else [{"cloudInitNoCloud": cloud_init}]
    body = {"spec": {"template": {"spec": {"volumes": volumes, **(spec or {})}}}}
    return VmManifest("vm1", "default", "passtBinding", "default", ports, body)


def files(config: GuestConfig) -> dict[str, bytes]:
    return {e.path: e.data for e in config.entries() if stat.S_ISREG(e.mode)}


def shadow(config: GuestConfig) -> dict[str, str]:
    lines = files(config)["etc/shadow"].decode().splitlines()
    return {line.split(":")[0]: line.split(":")[1] for line in lines}


def test_the_seed_vm_gets_root_password_the_lab_key_and_names_runcmd() -> None:
    seed = PLANS / "passt-macvlan" / "passt-vm.yaml"
    found, _ = read_manifest(parse_yaml(seed.read_bytes(), "vm"), "passt-macvlan", "default")
    assert found is not None
    config = guest_config(found, LAB_KEY)
    written = files(config)
    assert written["etc/passtplan/guest.env"] == (
        b"GUEST_HOSTNAME='passt-macvlan'\nGUEST_SSH_PORTS='22'\nGUEST_MTU_FROM_DHCP='1'\n"
    )
    assert written["root/.ssh/authorized_keys"] == f"{LAB_KEY}\n".encode()
    hashed = shadow(config)["root"]
    assert hashed.startswith("$6$") and crypt.crypt("dangerous", hashed) == hashed
    assert config.not_applied == ("runcmd",)


def test_plain_text_passwd_is_hashed_only_when_the_user_unlocks_it() -> None:
    config = guest_config(
        manifest(
            "#cloud-config\nusers:\n - default\n"
            " - {name: alice, plain_text_passwd: secret, lock_passwd: false}\n"
            " - {name: bob, plain_text_passwd: secret}\n"
        ),
        LAB_KEY,
    )
    passwords = shadow(config)
    assert crypt.crypt("secret", passwords["alice"]) == passwords["alice"]
    assert passwords["bob"] == "*"  # cloud-init's lock_passwd defaults to true
    assert passwords["root"] == "*"  # no password, and still a key login (never '!')
    passwd = files(config)["etc/passwd"].decode().splitlines()
    assert passwd == [
        "root:x:0:0:root:/root:/bin/sh",
        "alice:x:1000:1000:alice:/home/alice:/bin/sh",
        "bob:x:1001:1001:bob:/home/bob:/bin/sh",
    ]
    group = files(config)["etc/group"].decode().splitlines()
    assert group[-2:] == ["alice:x:1000:", "bob:x:1001:"] and group[0] == "root:x:0:"


@pytest.mark.parametrize(
    "chpasswd",
    [
        'chpasswd: {list: "root:pw1\\nalice:pw2", expire: false}',
        "chpasswd: {list: ['root:pw1', 'alice:pw2'], expire: no}",
        "chpasswd:\n  expire: false\n  users:\n   - {name: root, password: pw1}\n"
        "   - {name: alice, password: pw2, type: text}",
    ],
    ids=["text-list", "list", "users"],
)
def test_chpasswd_in_each_of_its_forms(chpasswd: str) -> None:
    config = guest_config(manifest(f"#cloud-config\n{chpasswd}\n"), LAB_KEY)
    passwords = shadow(config)
    assert crypt.crypt("pw1", passwords["root"]) == passwords["root"]
    assert crypt.crypt("pw2", passwords["alice"]) == passwords["alice"]
    assert config.not_applied == ()


def test_chpasswd_unlocks_after_users_keeps_hashes_and_names_what_it_cannot_do() -> None:
    hashed = crypt.crypt("pw", crypt.mksalt(crypt.METHOD_SHA512))
    config = guest_config(
        manifest(
            "#cloud-config\nusers: [{name: alice}, {name: carol}]\n"
            f"chpasswd: {{list: ['alice:{hashed}', 'carol:RANDOM']}}\n"
        ),
        LAB_KEY,
    )
    assert shadow(config)["alice"] == hashed
    assert shadow(config)["carol"] == "*"
    assert config.not_applied == ("chpasswd (RANDOM passwords)", "chpasswd.expire")


def test_authorized_keys_go_to_root_after_the_lab_key_and_to_each_user() -> None:
    config = guest_config(
        manifest(
            f"#cloud-config\nssh_authorized_keys: ['{USER_KEY}', '{LAB_KEY}']\n"
            f"users: [{{name: alice, ssh_authorized_keys: ['{USER_KEY}'], homedir: /srv/a}}]\n"
        ),
        LAB_KEY,
    )
    written = files(config)
    assert written["root/.ssh/authorized_keys"] == f"{LAB_KEY}\n{USER_KEY}\n".encode()
    assert written["srv/a/.ssh/authorized_keys"] == f"{USER_KEY}\n".encode()
    modes = {e.path: stat.S_IMODE(e.mode) for e in config.entries()}
    # dropbear reads a user's keys as that user, and the archive's files are all root's
    assert modes["srv/a/.ssh"] == 0o755 and modes["srv/a/.ssh/authorized_keys"] == 0o644
    assert modes["root/.ssh"] == 0o700 and modes["root/.ssh/authorized_keys"] == 0o600


@pytest.mark.parametrize(
    ("user_data", "spec", "hostname"),
    [
        (None, {}, "vm1"),
        (None, {"hostname": "from-spec"}, "from-spec"),
        ("#cloud-config\nhostname: web1\nfqdn: web1.lab.example\n", {}, "web1"),
        ("#cloud-config\nfqdn: db.lab.example\n", {}, "db"),
        (
            "#cloud-config\nfqdn: db.lab.example\nprefer_fqdn_over_hostname: true\n",
            {},
            "db.lab.example",
        ),
        ("#cloud-config\nhostname: web1\npreserve_hostname: true\n", {}, "vm1"),
        ("#cloud-config\nhostname: it's\n", {}, "it's"),
    ],
)
def test_hostname(user_data: str | None, spec: dict[str, object], hostname: str) -> None:
    config = guest_config(manifest(user_data, spec=spec), LAB_KEY)
    env = files(config)["etc/passtplan/guest.env"].decode()
    quoted = "'" + hostname.replace("'", "'\\''") + "'"
    assert env.splitlines()[0] == f"GUEST_HOSTNAME={quoted}"
    shell = subprocess.run(
        ["sh", "-c", env + 'printf %s "$GUEST_HOSTNAME"'], check=True, capture_output=True
    )
    assert shell.stdout.decode() == hostname


def test_keys_the_guest_does_not_do_are_named_once_each() -> None:
    config = cloud_config(
        manifest(
            "#cloud-config\npackage_update: true\npackages: [nginx]\nruncmd: [[ls]]\n"
            "bootcmd: [ls]\nssh_pwauth: false\n"
            "users: [{name: a, sudo: ALL, groups: wheel}, {name: b, sudo: ALL}]\n"
        )
    )
    assert config.not_applied == (
        "package_update",
        "packages",
        "runcmd",
        "bootcmd",
        "users[].sudo",
        "users[].groups",
        "ssh_pwauth",
    )


@pytest.mark.parametrize(
    ("volume", "not_applied"),
    [
        ({"userData": "#!/bin/sh\necho hi\n"}, ("userData (not a #cloud-config)",)),
        ({"userData": "#cloud-config\n: [\n"}, ("userData (not valid YAML)",)),
        (
            {"userDataSecretRef": {"name": "s"}},
            ("userDataSecretRef (the sandbox reads no Secret)",),
        ),
        ({"userData": "#cloud-config\n", "networkData": "version: 2\n"}, ("networkData",)),
        (
            {"userDataBase64": base64.b64encode(b"#cloud-config\nruncmd: [ls]\n").decode()},
            ("runcmd",),
        ),
    ],
    ids=["script", "bad-yaml", "secret", "network-data", "base64"],
)
def test_user_data_that_is_not_a_cloud_config(
    volume: dict[str, object], not_applied: tuple[str, ...]
) -> None:
    config = guest_config(manifest(volume=volume), LAB_KEY)
    assert config.not_applied == not_applied
    assert shadow(config) == {"root": "*"}


def test_write_files_with_encodings_and_modes() -> None:
    encoded = base64.b64encode(b"\x00binary").decode()
    config = guest_config(
        manifest(
            "#cloud-config\nwrite_files:\n"
            " - {path: /etc/motd, content: hello}\n"
            f" - {{path: /opt/tool/data, content: {encoded}, encoding: b64, permissions: '0600'}}\n"
            " - {path: /usr/local/bin/run, content: '#!/bin/sh', permissions: 0755, owner: app}\n"
        ),
        LAB_KEY,
    )
    entries = {e.path: e for e in config.entries()}
    assert entries["etc/motd"].data == b"hello" and stat.S_IMODE(entries["etc/motd"].mode) == 0o644
    assert entries["opt/tool/data"].data == b"\x00binary"
    assert stat.S_IMODE(entries["opt/tool/data"].mode) == 0o600
    assert stat.S_IMODE(entries["usr/local/bin/run"].mode) == 0o755
    assert stat.S_ISDIR(entries["opt/tool"].mode)
    assert config.not_applied == ("write_files[].owner",)


def test_every_directory_comes_once_and_before_what_it_holds() -> None:
    config = guest_config(
        manifest("#cloud-config\nwrite_files: [{path: /root/.ssh/config, content: x}]\n"),
        LAB_KEY,
    )
    seen: set[str] = set()
    for entry in config.entries():
        assert entry.path not in seen
        parent = str(Path(entry.path).parent)
        assert parent == "." or parent in seen, entry.path
        seen.add(entry.path)


def test_ssh_ports_are_the_passt_interface_tcp_ports() -> None:
    ports = (Port(2222, "TCP"), Port(53, "UDP"), Port(80, "TCP"))
    config = guest_config(manifest(ports=ports), LAB_KEY)
    assert config.ssh_ports == (2222, 80)
    assert ssh_port(manifest(ports=ports)) == 2222
    assert ssh_port(manifest(ports=(Port(80, "TCP"), Port(22, "TCP")))) == 22
    assert guest_config(manifest(ports=(Port(53, "UDP"),)), LAB_KEY).ssh_ports == (22,)


def test_the_lab_key_is_made_once(tmp_path: Path) -> None:
    state = tmp_path / "lab@sandbox"
    key = lab_key(state)
    first = key.read_bytes(), public_key(state)
    assert lab_key(state) == key
    assert (key.read_bytes(), public_key(state)) == first
    assert first[1].startswith("ssh-ed25519 ") and first[1].endswith("passtplan lab@sandbox")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sorted(p.name for p in state.iterdir()) == ["ssh"]  # no scratch directory left
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", key], check=True, capture_output=True, text=True
    )
    assert derived.stdout.split()[:2] == first[1].split()[:2]


def test_what_would_break_the_account_files_is_named_and_left_out() -> None:
    config = guest_config(
        manifest(
            "#cloud-config\n"
            "users:\n"
            " - {name: 'evil:0:0', plain_text_passwd: x, lock_passwd: false}\n"
            " - {name: bob, passwd: 'x:y', lock_passwd: false, homedir: '/h:x'}\n"
            "write_files: [{path: /, content: x}, {path: /etc/, content: x}]\n"
        ),
        LAB_KEY,
    )
    assert config.not_applied == (
        "users[] ('evil:0:0' is not a user name)",
        "users[] (bob's hashed password is not a crypt hash)",
        "write_files[] (path, content or permissions unreadable)",
    )
    assert shadow(config) == {"root": "*", "bob": "*"}
    assert "bob:x:1000:1000:bob:/home/bob:/bin/sh" in files(config)["etc/passwd"].decode()


def test_labs_vms_started_at_once_get_one_key(tmp_path: Path) -> None:
    state = tmp_path / "lab@sandbox"
    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda _: public_key(state), range(4)))
    assert len(set(made)) == 1
    assert made[0] == (state / "ssh" / "id_ed25519.pub").read_text().strip()
    assert sorted(p.name for p in state.iterdir()) == ["ssh"]
