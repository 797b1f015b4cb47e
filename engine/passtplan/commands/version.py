"""`passtplan version`: passtplan's version and what it works with here: passt, QEMU, the kernel,
and the cluster's KubeVirt when a kubeconfig is given."""

from __future__ import annotations

import os
import subprocess
import sys

from passtplan import __version__
from passtplan.providers.vm_kubevirt import Cluster, ClusterOptions
from passtplan.render import as_format

PROBE_TIMEOUT = 10.0  # seconds for `passt --version` and the like
# What each line is called in the text, by its key in the JSON.
LABELS = {"passtplan": "passtplan", "passt": "passt", "qemu": "QEMU", "kernel": "kernel"}


def run(*, output: str, kubeconfig: str | None, context: str | None) -> int:
    versions = local_versions()
    if kubeconfig is not None or context is not None:
        cluster = Cluster(ClusterOptions(kubeconfig, context))
        versions["kubevirt"] = cluster.install().version
        versions["cluster"] = cluster.where
    if output != "text":
        sys.stdout.write(as_format(versions, output))
        return 0
    for key, label in LABELS.items():
        print(f"{label} {versions[key] or 'not installed'}")
    if "kubevirt" in versions:
        print(f"KubeVirt {versions['kubevirt']} (cluster {versions['cluster']})")
    return 0


def local_versions() -> dict[str, str | None]:
    uname = os.uname()
    return {
        "passtplan": __version__,
        "passt": passt_version(),
        "qemu": _first_line(
            [f"qemu-system-{uname.machine}", "--version"], "QEMU emulator version "
        ),
        "kernel": f"{uname.sysname} {uname.release} {uname.machine}",
    }


def passt_version() -> str | None:
    """passt's own word for its version; Debian's snapshot builds (0.0~git20230309) print
    `passt unknown version`, so the package's version is given then."""
    found = _first_line(["passt", "--version"], "passt ")
    if found is None or found not in ("unknown version", ""):
        return found
    package = _first_line(["dpkg-query", "--show", "--showformat=${Version}", "passt"], "")
    return f"{package} (Debian package)" if package else found


def _first_line(command: list[str], prefix: str) -> str | None:
    """The first line the command prints, without `prefix`; None when it is not installed."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    lines = done.stdout.splitlines() or [""]
    return lines[0].strip().removeprefix(prefix)
