"""A QEMU guest's own files: the lab's ssh key, and what the VM's manifest says the guest is.

The driver appends these files, as a cpio archive, to the cached guest image
(providers/sandbox/image.py); the guest's /init reads them at boot: /etc/passtplan/guest.env
(host name, the ports dropbear listens on, the MTU from DHCP), root's authorized keys (the lab's
key first, then the user data's), /etc/passwd and /etc/shadow (the user data's users and
passwords), and the user data's write_files. What of the user data the guest does not do
(lang/cloudinit.py) is carried in `not_applied`.

The lab's key pair is made once per lab in the lab's state directory
(/run/passtplan/LAB@sandbox/ssh/), which destroy removes with the lab's records; `passtplan ssh`
logs in with it.
"""

from __future__ import annotations

import contextlib
import shutil
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path, PurePosixPath

import msgspec

from passtplan.errors import PasstplanError
from passtplan.lang.cloudinit import ROOT, GuestFile, GuestUser, Password, cloud_config
from passtplan.lang.manifest import VmManifest
from passtplan.providers.sandbox.cpio import CpioEntry
from passtplan.providers.sandbox.image import ACCOUNT_FILES

with warnings.catch_warnings():
    # Python 3.11's crypt(3), deprecated for 3.13; busybox and dropbear check $6$ (SHA-512) hashes.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

KEY_DIR = "ssh"
KEY_FILE = "id_ed25519"
SSH_PORT = 22
SHELL = "/bin/sh"  # busybox's: the guest has no other
FIRST_UID = 1000
NO_PASSWORD = "*"  # no password logs in, and keys still do (dropbear refuses a '!' account)
# Modes for the directories the overlay names: an entry for a directory the image already has
# sets its mode again, so each must be the one the image gives it. The files are all root's, and
# dropbear reads another user's authorized_keys as that user: theirs are readable by all.
DIR_MODES = {"root": 0o700, "root/.ssh": 0o700, "tmp": 0o1777}
DIR_MODE = 0o755


def key_path(state_dir: Path) -> Path:
    """The lab's private key (its public half beside it, .pub), made or not."""
    return state_dir / KEY_DIR / KEY_FILE


def lab_key(state_dir: Path) -> Path:
    """The lab's private key, made the first time it is asked for.

    The pair is made in a scratch directory that is then renamed to `ssh/`: two VMs started
    at once never get different keys (the second rename fails, and that one uses the first's),
    and a kill half-way leaves no half pair.
    """
    key = key_path(state_dir)
    if key.exists():
        return key
    state_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".ssh-", dir=state_dir))
    try:
        _keygen(scratch / KEY_FILE, comment=f"passtplan {state_dir.name}")
        with contextlib.suppress(OSError):  # ENOTEMPTY: another made the pair first
            scratch.rename(key.parent)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return key


def _keygen(path: Path, comment: str) -> None:
    command = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise PasstplanError(
            "ssh-keygen not found: install openssh-client (bash scripts/setup does)"
        ) from None
    except subprocess.CalledProcessError as exc:
        raise PasstplanError(f"ssh-keygen failed: {exc.stderr.strip()}") from None


def public_key(state_dir: Path) -> str:
    """The lab's public key, one line (the pair made if need be)."""
    return lab_key(state_dir).with_suffix(".pub").read_text().strip()


def ssh_ports(manifest: VmManifest) -> tuple[int, ...]:
    """The ports the guest's sshd listens on: the passt interface's TCP ports, or 22 when it
    forwards every port (or none over TCP)."""
    ports = tuple(p.port for p in manifest.ports or () if p.protocol == "TCP")
    return ports or (SSH_PORT,)


def ssh_port(manifest: VmManifest) -> int:
    """The port `passtplan ssh` logs in on: 22 when the guest listens there, else its first."""
    ports = ssh_ports(manifest)
    return SSH_PORT if SSH_PORT in ports else ports[0]


class GuestConfig(msgspec.Struct, frozen=True):
    hostname: str
    ssh_ports: tuple[int, ...]
    users: tuple[GuestUser, ...]  # root first, the lab's key first among root's keys
    files: tuple[GuestFile, ...]
    not_applied: tuple[str, ...]  # the user data's keys the guest does not do

    def entries(self) -> list[CpioEntry]:
        """The overlay archive's entries, each directory before what it holds."""
        overlay = _Overlay()
        overlay.file("etc/passtplan/guest.env", 0o644, self._guest_env())
        accounts = _accounts(self.users)
        for path, mode, line in (
            ("etc/passwd", 0o644, _Account.passwd_line),
            ("etc/group", 0o644, _Account.group_line),
            ("etc/shadow", 0o640, _Account.shadow_line),
        ):
            lines = {a.user.name: line(a) for a in accounts if a.uid or path != "etc/group"}
            overlay.file(path, mode, _merged(ACCOUNT_FILES[path], lines))
        for account in accounts:
            if account.user.keys:
                keys = "".join(f"{k.strip()}\n" for k in account.user.keys)
                mode = 0o600 if account.uid == 0 else 0o644
                overlay.file(f"{account.home}/.ssh/authorized_keys", mode, keys)
        for written in self.files:
            overlay.file(written.path, written.mode, written.content)
        return overlay.entries

    def _guest_env(self) -> str:
        values = {
            "GUEST_HOSTNAME": self.hostname,
            "GUEST_SSH_PORTS": " ".join(map(str, self.ssh_ports)),
            "GUEST_MTU_FROM_DHCP": "1",
        }
        return "".join(f"{key}={_quoted(value)}\n" for key, value in values.items())


def guest_config(manifest: VmManifest, public_key: str) -> GuestConfig:
    """The guest of `manifest`, root logging in with `public_key` (the lab's) among its keys."""
    config = cloud_config(manifest)
    root, *others = config.users
    keys = (public_key, *(k for k in root.keys if k.strip() != public_key.strip()))
    root = GuestUser(ROOT, root.password, keys)
    return GuestConfig(
        config.hostname, ssh_ports(manifest), (root, *others), config.files, config.not_applied
    )


class _Account(msgspec.Struct, frozen=True):
    user: GuestUser
    uid: int
    home: str  # relative to /, as the archive names paths

    def passwd_line(self) -> str:
        gecos = (self.user.gecos or self.user.name).replace(":", " ").replace("\n", " ")
        return f"{self.user.name}:x:{self.uid}:{self.uid}:{gecos}:/{self.home}:{SHELL}"

    def group_line(self) -> str:
        return f"{self.user.name}:x:{self.uid}:"

    def shadow_line(self) -> str:
        return f"{self.user.name}:{_shadow_password(self.user.password)}::0:99999:7:::"


def _merged(base: str, lines: dict[str, str]) -> str:
    """The image's account file with these accounts' lines in place of theirs, and the new
    accounts' lines after it (the image's other accounts stay)."""
    new = dict(lines)
    kept = [new.pop(line.split(":")[0], line) for line in base.splitlines()]
    return "".join(f"{line}\n" for line in [*kept, *new.values()])


def _accounts(users: tuple[GuestUser, ...]) -> list[_Account]:
    """Each user with a uid (its own, or the next free one from 1000) and a home."""
    taken = {u.uid for u in users if u.uid is not None}
    taken |= {int(line.split(":")[2]) for line in ACCOUNT_FILES["etc/passwd"].splitlines()}
    free = (uid for uid in range(FIRST_UID, 1 << 31) if uid not in taken)
    accounts = []
    for user in users:
        if user.name == ROOT:
            accounts.append(_Account(user, 0, "root"))
            continue
        uid = user.uid if user.uid is not None else next(free)
        home = (user.home or f"/home/{user.name}").strip("/")
        accounts.append(_Account(user, uid, home))
    return accounts


def _shadow_password(password: Password | None) -> str:
    if password is None:
        return NO_PASSWORD
    if password.hashed:
        return password.value
    return crypt.crypt(password.value, crypt.mksalt(crypt.METHOD_SHA512))


def _quoted(value: str) -> str:
    """A value as the guest's shell reads it back: single-quoted."""
    return "'" + value.replace("'", "'\\''") + "'"


class _Overlay:
    """Entries in archive order: a file's directories first, each named once."""

    def __init__(self) -> None:
        self.entries: list[CpioEntry] = []
        self._dirs: set[str] = set()

    def file(self, path: str, mode: int, content: str | bytes) -> None:
        relative = PurePosixPath(path.lstrip("/"))
        for parent in reversed(relative.parents[:-1]):  # [:-1]: not "." itself
            self._dir(str(parent))
        data = content.encode() if isinstance(content, str) else content
        self.entries.append(CpioEntry(str(relative), stat.S_IFREG | mode, data))

    def _dir(self, path: str) -> None:
        if path in self._dirs:
            return
        self._dirs.add(path)
        mode = DIR_MODES.get(path, DIR_MODE)
        self.entries.append(CpioEntry(path, stat.S_IFDIR | mode))
