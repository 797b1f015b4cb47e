"""A VM's cloud-init user data, read for what the sandbox's busybox guest can do with it.

cloud-init in the VM's own image does much more than a busybox guest can: it installs
packages, runs commands, makes users sudoers. The guest does what is a matter of files: the
host name, authorized keys, users with their passwords, files written at boot. This module
reads those from the manifest's cloudInitNoCloud (or cloudInitConfigDrive) volume, with
cloud-init's own defaults and order, and names every other key in `not_applied`, which the
sandbox's plan shows. Pure: no hashing, no files (providers/sandbox/guest_config.py writes them).

The guest's only account from its image is root, so root stands in for the image's default
user: the top-level `ssh_authorized_keys` and `password` are root's.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
from typing import Any

import msgspec

from passtplan.errors import SpecError
from passtplan.lang.manifest import HOSTNAME_PATH, VmManifest, cloud_init_volume, get
from passtplan.lang.yamlsource import parse_yaml

ROOT = "root"
HEADER = "#cloud-config"
# What the guest applies, by top-level key; every other key is named as not applied.
APPLIED = frozenset(
    {
        "hostname",
        "fqdn",
        "preserve_hostname",
        "prefer_fqdn_over_hostname",
        "ssh_authorized_keys",
        "users",
        "chpasswd",
        "password",
        "ssh_pwauth",
        "disable_root",
        "write_files",
    }
)
USER_KEYS = frozenset(
    {
        "name",
        "passwd",
        "hashed_passwd",
        "plain_text_passwd",
        "lock_passwd",
        "ssh_authorized_keys",
        "uid",
        "gecos",
        "homedir",
        "shell",
    }
)
FILE_KEYS = frozenset({"path", "content", "encoding", "permissions", "owner", "defer"})
# cloud-init's util.is_encrypted_pass: what chpasswd takes as already hashed.
CRYPT_HASH = re.compile(r"^\$(1|2a|2y|5|6)(\$.+){2}$")
# useradd's NAME_REGEX, upper case allowed (Debian's --badname), at most 32 characters.
USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,30}\$?")
RANDOM = ("R", "RANDOM")


class Password(msgspec.Struct, frozen=True):
    value: str
    hashed: bool  # already a crypt(3) hash, written to /etc/shadow as it is


class GuestUser(msgspec.Struct, frozen=True):
    name: str
    password: Password | None = None  # None: no password login (keys only)
    keys: tuple[str, ...] = ()
    uid: int | None = None  # None for root; chosen by the guest's config for the others
    gecos: str = ""
    home: str = ""


class GuestFile(msgspec.Struct, frozen=True):
    path: str  # absolute
    content: bytes
    mode: int  # permission bits


class CloudConfig(msgspec.Struct, frozen=True):
    """What the guest does of the VM's user data, and what it does not."""

    hostname: str
    users: tuple[GuestUser, ...]  # root first
    files: tuple[GuestFile, ...] = ()
    not_applied: tuple[str, ...] = ()


class _Reading(msgspec.Struct):
    """The user data being read: users by name (root first), and what is not applied."""

    users: dict[str, GuestUser] = msgspec.field(default_factory=lambda: {ROOT: GuestUser(ROOT)})
    not_applied: list[str] = msgspec.field(default_factory=list)

    def skip(self, what: str) -> None:
        if what not in self.not_applied:
            self.not_applied.append(what)

    def update(self, name: str, **changes: Any) -> None:
        """Set what is known of a user; a name or hash that would break the guest's account
        files (a ':' or a line break in them) is named as not applied instead."""
        if not USER_NAME.fullmatch(name):
            self.skip(f"users[] ({name!r} is not a user name)")
            return
        password = changes.get("password")
        if isinstance(password, Password) and password.hashed and not _field(password.value):
            self.skip(f"users[] ({name}'s hashed password is not a crypt hash)")
            changes["password"] = None
        self.users[name] = msgspec.structs.replace(
            self.users.get(name) or GuestUser(name), **changes
        )


def cloud_config(manifest: VmManifest) -> CloudConfig:
    """What the guest of `manifest` is given from its cloud-init volume (none: just its name)."""
    hostname = _default_hostname(manifest)
    volume = cloud_init_volume(manifest)
    if volume is None:
        return CloudConfig(hostname, (GuestUser(ROOT),))
    reading = _Reading()
    if any(k in volume for k in ("networkData", "networkDataBase64", "networkDataSecretRef")):
        reading.skip("networkData")  # the guest takes its network from passt's DHCP
    config = _user_data(volume, reading)
    if config is None:
        return CloudConfig(hostname, tuple(reading.users.values()), (), tuple(reading.not_applied))
    for key in config:
        if key not in APPLIED:
            reading.skip(str(key))
    hostname = _hostname(config, hostname)
    _read_users(config.get("users"), reading)
    _read_root_keys(config, reading)
    _read_passwords(config, reading)
    if _flag(config.get("ssh_pwauth")) is False:
        reading.skip("ssh_pwauth")  # the guest's dropbear always takes passwords
    if _flag(config.get("disable_root")) is True:
        reading.skip("disable_root")  # the lab's key logs in as root
    files = _read_files(config.get("write_files"), reading)
    return CloudConfig(hostname, tuple(reading.users.values()), files, tuple(reading.not_applied))


def _default_hostname(manifest: VmManifest) -> str:
    """KubeVirt's meta-data local-hostname: the VMI's spec.hostname, else the VM's name."""
    hostname = get(manifest.body, HOSTNAME_PATH)
    return hostname if isinstance(hostname, str) and hostname else manifest.name


def _user_data(volume: dict[str, object], reading: _Reading) -> dict[str, object] | None:
    """The cloud-config as a mapping, or None (and why, in not_applied) when there is none."""
    text = volume.get("userData")
    encoded = volume.get("userDataBase64")
    if isinstance(encoded, str):
        try:
            text = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            reading.skip("userDataBase64 (not base64 of UTF-8 text)")
            return None
    if "userDataSecretRef" in volume:
        reading.skip("userDataSecretRef (the sandbox reads no Secret)")
        return None
    if not isinstance(text, str):
        return None
    if not text.lstrip().startswith(HEADER):
        reading.skip("userData (not a #cloud-config)")
        return None
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        return {}  # the header alone: nothing to do
    try:
        config = parse_yaml(text.encode(), "userData").data
    except SpecError:
        reading.skip("userData (not valid YAML)")
        return None
    return config if isinstance(config, dict) else {}


def _hostname(config: dict[str, object], default: str) -> str:
    """cloud-init's cc_set_hostname: `hostname`, else `fqdn`'s first label, else the
    meta-data's; `preserve_hostname` leaves the image's, which here is the meta-data's too."""
    if _flag(config.get("preserve_hostname")) is True:
        return default
    hostname, fqdn = config.get("hostname"), config.get("fqdn")
    if isinstance(fqdn, str) and fqdn and _flag(config.get("prefer_fqdn_over_hostname")):
        return fqdn
    if isinstance(hostname, str) and hostname:
        return hostname
    if isinstance(fqdn, str) and fqdn:
        return fqdn.split(".")[0]
    return default


def _read_users(users: object, reading: _Reading) -> None:
    """cc_users_groups: each user's keys and password; a password is locked unless
    `lock_passwd: false` (cloud-init's default locks it, leaving key logins)."""
    if isinstance(users, str):
        users = [u.strip() for u in users.split(",") if u.strip()]
    for entry in users if isinstance(users, list) else []:
        if entry == "default":
            continue  # the image's default user: root, here
        if isinstance(entry, str):
            reading.update(entry)
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            reading.skip("users[] (an entry without a name)")
            continue
        _read_user(entry, reading)


def _read_user(entry: dict[str, object], reading: _Reading) -> None:
    name = str(entry["name"])
    for key in entry:
        if key not in USER_KEYS:
            reading.skip(f"users[].{key}")
    password = None
    for key, hashed in (("hashed_passwd", True), ("passwd", True), ("plain_text_passwd", False)):
        value = entry.get(key)
        if isinstance(value, str):
            password = Password(value, hashed)
            break
    if _flag(entry.get("lock_passwd", True)) is not False:
        password = None
    keys = entry.get("ssh_authorized_keys")
    uid = entry.get("uid")
    home = entry.get("homedir")
    reading.update(
        name,
        password=password,
        keys=_strings(keys),
        uid=uid if isinstance(uid, int) and not isinstance(uid, bool) else None,
        gecos=str(entry.get("gecos") or ""),
        home=home if isinstance(home, str) and _field(home) else "",
    )


def _read_root_keys(config: dict[str, object], reading: _Reading) -> None:
    """The top-level keys are the default user's (root here), and cc_ssh gives them to root."""
    root = reading.users[ROOT]
    added = tuple(k for k in _strings(config.get("ssh_authorized_keys")) if k not in root.keys)
    reading.update(ROOT, keys=root.keys + added)


def _read_passwords(config: dict[str, object], reading: _Reading) -> None:
    """cc_set_passwords, after the users: `password` (the default user's) and chpasswd's
    `list` (a text of NAME:PASSWORD lines, or a list of them) and `users`."""
    chpasswd = config.get("chpasswd")
    chpasswd = chpasswd if isinstance(chpasswd, dict) else {}
    pairs: list[tuple[str, str, bool | None]] = []  # hashed: None means "judge by the value"
    if isinstance(config.get("password"), str):
        pairs.append((ROOT, str(config["password"]), None))
    listed = chpasswd.get("list")
    lines = listed.splitlines() if isinstance(listed, str) else _strings(listed)
    for line in lines:
        name, colon, password = line.strip().partition(":")
        if colon:
            pairs.append((name, password, None))
    for user in chpasswd.get("users") or []:
        if isinstance(user, dict) and isinstance(user.get("name"), str):
            kind = user.get("type", "text")
            pairs.append((user["name"], str(user.get("password", "")), kind == "hash"))
    for name, password, hashed in pairs:
        if password in RANDOM:
            reading.skip("chpasswd (RANDOM passwords)")
            continue
        is_hash = bool(CRYPT_HASH.match(password)) if hashed is None else hashed
        reading.update(name, password=Password(password, is_hash))
    if pairs and _flag(chpasswd.get("expire", True)) is not False:
        reading.skip("chpasswd.expire")  # dropbear cannot make a user change an expired one


def _read_files(files: object, reading: _Reading) -> tuple[GuestFile, ...]:
    """cc_write_files, for files root owns (the guest's files are all root's)."""
    written = []
    for entry in files if isinstance(files, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            reading.skip("write_files[] (an entry without a path)")
            continue
        for key in entry:
            if key not in FILE_KEYS:
                reading.skip(f"write_files[].{key}")
        if str(entry.get("owner", "root:root")) not in ("root", "root:root"):
            reading.skip("write_files[].owner")
        path = str(entry["path"]).strip()
        content = _file_content(entry.get("content", ""), str(entry.get("encoding", "text")))
        mode = _permissions(entry.get("permissions", "0644"))
        if content is None or mode is None or not path.strip("/") or path.endswith("/"):
            reading.skip("write_files[] (path, content or permissions unreadable)")
            continue
        written.append(GuestFile("/" + path.lstrip("/"), content, mode))
    return tuple(written)


def _file_content(content: object, encoding: str) -> bytes | None:
    """cloud-init's write_files encodings: text, base64, gzip, and gzip in base64."""
    data = str(content).encode()
    steps = {
        "b64": ("b64",),
        "base64": ("b64",),
        "gz": ("gz",),
        "gzip": ("gz",),
        "gz+b64": ("b64", "gz"),
        "gz+base64": ("b64", "gz"),
        "gzip+b64": ("b64", "gz"),
        "gzip+base64": ("b64", "gz"),
    }.get(encoding.lower(), ())
    try:
        for step in steps:
            data = base64.b64decode(data) if step == "b64" else gzip.decompress(data)
    except (binascii.Error, OSError, EOFError):
        return None
    return data


def _permissions(value: object) -> int | None:
    # cloud-init reads YAML 1.1, where 0644 is octal; passtplan reads YAML 1.2, where it is
    # the decimal 644: its digits are the octal mode either way.
    try:
        return int(str(value), 8) & 0o7777
    except ValueError:
        return None


def _flag(value: object) -> bool | None:
    """A boolean as cloud-init's YAML 1.1 reads it (`no` and `off` are false there)."""
    if isinstance(value, bool):
        return value
    word = str(value).lower()
    if word in ("y", "yes", "true", "on"):
        return True
    return False if word in ("n", "no", "false", "off") else None


def _field(value: str) -> bool:
    """Whether `value` fits in one field of /etc/passwd or /etc/shadow."""
    return not any(c in value for c in ":\n\r")


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()
