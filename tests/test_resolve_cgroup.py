"""Which /proc/<pid>/cgroup texts put a process in a pod: the four forms kubelets write."""

from __future__ import annotations

import pytest

from passtplan.providers.resolve import cgroup_names_pod

UID = "7c1a4e0b-3f2d-4c9a-9e61-0a1b2c3d4e5f"
UND = UID.replace("-", "_")


FORMS = {
    "v2-cgroupfs": f"0::/kubepods/besteffort/pod{UID}/0123abcd",
    "v2-systemd": (
        "0::/kubepods.slice/kubepods-besteffort.slice/"
        f"kubepods-besteffort-pod{UND}.slice/cri-containerd-0123.scope"
    ),
    "v1-cgroupfs": (
        f"12:memory:/kubepods/burstable/pod{UID}/0123abcd\n"
        f"11:cpu:/kubepods/burstable/pod{UID}/0123abcd"
    ),
    "v1-systemd": (
        f"12:memory:/kubepods.slice/kubepods-pod{UND}.slice/docker-0123.scope\n1:name=systemd:/"
    ),
}


@pytest.mark.parametrize("text", FORMS.values(), ids=FORMS.keys())
def test_pod_cgroup_forms(text: str) -> None:
    assert cgroup_names_pod(text, UID)


@pytest.mark.parametrize(
    "text",
    [
        "0::/user.slice/user-0.slice/session-1.scope",
        f"0::/kubepods/besteffort/pod{UID}x/0123",  # another pod whose UID starts the same
        f"0::/kubepods/besteffort/pod{UID[:-1]}/0123",
    ],
)
def test_other_cgroups_do_not_match(text: str) -> None:
    assert not cgroup_names_pod(text, UID)
