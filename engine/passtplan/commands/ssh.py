"""`passtplan ssh LAB VM [--sandbox] [-- CMD...]`: log in to a VM's guest with the real ssh.

ssh runs from where a person of the lab would run it: the namespace of the first check that
reaches the VM (the seed's office pings the pod's macvlan address), to the address that check
uses. In the sandbox it logs in as root with the lab's generated key; on a node, with the
user's own keys. passtplan steps out of the way: its process enters the namespace and becomes
ssh, so the terminal, signals and exit code are ssh's.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import NoReturn

import msgspec

from passtplan import resources as res
from passtplan.commands.common import load
from passtplan.desired import Desired, desired_state
from passtplan.engine import open_files_limit, require_root, store_for
from passtplan.errors import PasstplanError
from passtplan.lang.loader import LoadedLab
from passtplan.lang.models import VM_PREFIX
from passtplan.providers import kernel
from passtplan.providers.sandbox.guest_config import key_path, ssh_port
from passtplan.providers.session import namespace_file

SSH_OPTIONS = (
    "-o",
    "StrictHostKeyChecking=no",  # the guest makes a new host key each boot
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",  # not "Permanently added ... to the list of known hosts" each time
)


class Access(msgspec.Struct, frozen=True):
    """Where ssh runs from (a namespace of the lab) and the VM's address it reaches."""

    source: str
    address: str


def run(path: Path, vm: str, command: list[str], *, sandbox: bool) -> int:
    loaded = load(path, warn=False)
    (qemu_vm if sandbox else known_vm)(loaded, vm)
    require_root("ssh")
    desired = desired_state(
        loaded.lab, sandbox=sandbox, manifests=loaded.manifests, open_files=open_files_limit()
    )
    access = find_access(loaded, desired, vm)
    netns = namespace_file(desired.namespaces[access.source])
    if netns is None:
        mode, flag = ("with --sandbox", " --sandbox") if sandbox else ("on this node", "")
        raise PasstplanError(
            f"lab {loaded.name} is not applied {mode} (namespace {access.source} does not "
            f"exist): run passtplan apply{flag} first"
        )
    key = _lab_key(loaded) if sandbox else None
    exec_inside(netns, ssh_argv(access.address, ssh_port(loaded.manifests[vm]), key, command))


def _lab_key(loaded: LoadedLab) -> Path:
    key = key_path(store_for(loaded, sandbox=True).path.parent)
    if not key.exists():
        raise PasstplanError(
            f"lab {loaded.name} has no ssh key ({key}): its VMs have not started in the "
            "sandbox; run passtplan apply --sandbox first"
        )
    return key


def known_vm(loaded: LoadedLab, vm: str) -> None:
    if vm not in loaded.manifests:
        names = ", ".join(sorted(loaded.manifests)) or "none"
        raise PasstplanError(f"lab {loaded.name} has no vm {vm!r} (its vms: {names})")


def qemu_vm(loaded: LoadedLab, vm: str) -> None:
    """A VM of the lab that runs in QEMU in the sandbox: the stand-in has no shell to enter."""
    known_vm(loaded, vm)
    if loaded.lab.sandbox.guest == "stand-in":
        raise PasstplanError(
            f"{loaded.path}: vm {vm} runs the sandbox's stand-in guest, which has no shell or "
            "console: set sandbox: {guest: qemu} and apply again"
        )


def vm_addresses(loaded: LoadedLab, desired: Desired, vm: str) -> set[str]:
    """The VM's addresses as a check would name them: those of its launcher pod's namespace
    (the macvlan after the swap) and, in the sandbox, the pod's CNI address."""
    pods = {
        name
        for name, ns in loaded.lab.namespaces.items()
        if ns.resolve is not None and ns.resolve.vm == vm
    }
    found = {
        str(ipaddress.ip_interface(a.cidr).ip)
        for a in desired.addresses.values()
        if a.namespace in pods
    }
    sandbox_vm = desired.vms.get(vm)
    if isinstance(sandbox_vm, res.Vm):
        found.add(str(ipaddress.ip_interface(sandbox_vm.pod_address).ip))
    return found


def find_access(loaded: LoadedLab, desired: Desired, vm: str) -> Access:
    """The first check from a namespace of this mode to one of the VM's addresses."""
    addresses = vm_addresses(loaded, desired, vm)
    elsewhere = []  # sources of checks that reach the VM from a namespace of the sandbox
    for check in loaded.lab.checks:
        host = _ip(check.ping or (check.tcp or "").rpartition(":")[0].strip("[]"))
        if check.source.startswith(VM_PREFIX) or check.expect == "failure":
            continue  # from inside the VM, or from where it must not be reached
        if host not in addresses:
            continue
        if check.source in desired.namespaces:
            return Access(check.source, host)
        elsewhere.append(check.source)
    if elsewhere:
        raise PasstplanError(
            f"the checks that reach vm {vm} run from {elsewhere[0]}, a namespace of the "
            "sandbox only: add --sandbox"
        )
    example = min(addresses, default="ADDRESS")
    raise PasstplanError(
        f"{loaded.path}: no check reaches vm {vm} from a namespace, so passtplan ssh does not "
        f"know where to run from: add one, e.g. checks: [{{from: NAMESPACE, ping: {example}}}]"
    )


def _ip(host: str) -> str:
    """An address in the form ipaddress writes it (fd00:0::1 is fd00::1); a name as it is."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def ssh_argv(address: str, port: int, key: Path | None, command: list[str]) -> list[str]:
    """The ssh command line: root at the address, the lab's key only (when there is one)."""
    argv = ["ssh"]
    if key is not None:
        argv += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    argv += [*SSH_OPTIONS, "-p", str(port), f"root@{address}"]
    return [*argv, "--", *command] if command else argv


def exec_inside(netns: Path, argv: list[str]) -> NoReturn:
    """Become `argv` inside the namespace: this process enters it for good, then execs."""
    sys.stdout.flush()
    sys.stderr.flush()
    kernel.enter(netns)
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        raise PasstplanError(
            f"{argv[0]} not found: install openssh-client (bash scripts/setup does)"
        ) from None
