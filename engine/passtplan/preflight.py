"""What the kernel would refuse half-way through an apply, found at plan time instead: the
names the lab makes on this machine (named netns files, the sandbox VMs' socket paths and their
CNI host ends) within the kernel's limits and unique. Pure: the lab's run directory is given."""

from __future__ import annotations

from pathlib import Path

from passtplan import resources as res
from passtplan.desired import Desired, lab_id
from passtplan.errors import PasstplanError
from passtplan.inputs import NAME_MAX, SUN_PATH_MAX

CALICO_HOST_PREFIX = "cali"  # as providers/sandbox/launcher names a VM's CNI host end
IFNAME_MAX = 15
PASST_SOCKET = ("passt", "passt.socket")  # under the VM's directory, as the launcher places it


def host_end(vm: str) -> str:
    return f"{CALICO_HOST_PREFIX}{vm}"[:IFNAME_MAX]


def name_problems(desired: Desired, run_dir: Path) -> list[str]:
    """Every name the plan would make that the kernel would refuse or that would collide."""
    problems = []
    key = lab_id(desired.lab, sandbox=desired.sandbox)
    if len(key.encode()) > NAME_MAX:
        problems.append(f"metadata.name: the lab's record {key!r} is over {NAME_MAX} bytes")
    named = {ns.netns: f"namespaces.{ns.name}" for ns in desired.namespaces.values() if ns.netns}
    for vm in desired.vms.values():
        if isinstance(vm, res.Vm):
            named.setdefault(vm.launcher, f"vms.{vm.name}")
            if vm.guest is not None:
                named.setdefault(vm.guest, f"vms.{vm.name}")
    for netns, where in sorted(named.items()):
        size = len(netns.encode())
        if size > NAME_MAX:
            problems.append(
                f"{where}: the network namespace {netns[:40]}... is {size} bytes, over the "
                f"kernel's {NAME_MAX}-byte limit on a file name; shorten the lab's or the "
                "namespace's name"
            )
    ends: dict[str, str] = {}
    for vm in sorted(desired.vms.values(), key=lambda v: v.name):
        if not isinstance(vm, res.Vm):
            continue
        socket = run_dir / key / "vm" / vm.name / Path(*PASST_SOCKET)
        size = len(str(socket).encode())
        if size > SUN_PATH_MAX:
            over = size - SUN_PATH_MAX
            problems.append(
                f"vms.{vm.name}: passt's socket {socket} is {size} bytes, over the kernel's "
                f"{SUN_PATH_MAX}-byte limit on a UNIX socket path; shorten the lab's or the "
                f"VM's name by {over} characters"
            )
        if vm.node is None:
            continue
        end = host_end(vm.name)
        if end in ends:
            problems.append(
                f"vms.{vm.name}: its pod's host end {end} in {vm.node} would be the same as "
                f"that of vms.{ends[end]} (names are cut to {IFNAME_MAX} bytes); make the two "
                f"VM names differ in their first {IFNAME_MAX - len(CALICO_HOST_PREFIX)} "
                "characters"
            )
        ends.setdefault(end, vm.name)
        declared = f"link.{vm.node}/{end}"
        if declared in desired.links:
            problems.append(
                f"vms.{vm.name}: its pod's host end {end} in {vm.node} is also a link of the "
                "lab; rename that link"
            )
    return problems


def check_names(desired: Desired, run_dir: Path, lab_file: Path) -> None:
    """Raise the name problems, one line each (`LAB: field: problem; fix`), before any change."""
    problems = name_problems(desired, run_dir)
    if problems:
        raise PasstplanError("\n".join(f"{lab_file}: {p}" for p in problems))
