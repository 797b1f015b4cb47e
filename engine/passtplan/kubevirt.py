"""KubeVirt facts as pure functions: which passt form a release accepts, and what differs
between a VM manifest and the live object, field by field where the manifest says something.

Facts from KubeVirt's source and release notes:
- the core `passt: {}` binding exists in v1.0-v1.2 behind the feature gate `Passt`, and is
  rejected from v1.3;
- the network binding plugin `binding: {name: passt}` exists from v1.1.1 to v1.8; it needs
  `spec.configuration.network.binding.passt` in the KubeVirt CR (and a NetworkAttachmentDefinition
  with Multus, which the cluster's admin provides);
- the core `passtBinding: {}` exists from v1.8 behind the gate `PasstBinding` (Beta, on by
  default from v1.9).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from passtplan.lang.manifest import PasstForm

Release = tuple[int, int, int]


@dataclass(frozen=True)
class Install:
    """What the KubeVirt CR says of the cluster's KubeVirt."""

    version: str  # status.observedKubeVirtVersion, e.g. v1.0.0
    feature_gates: frozenset[str]
    binding_plugins: frozenset[str]  # names under spec.configuration.network.binding

    @property
    def release(self) -> Release:
        return parse_release(self.version)


def parse_release(version: str) -> Release:
    found = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    if not found:
        return (0, 0, 0)
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def passt_form_error(form: PasstForm, install: Install) -> str | None:
    """Why this cluster's KubeVirt will not run a VM with this passt form, naming the form to
    use; None when it will."""
    release = install.release
    shown = install.version
    wanted = suggested_form(release)
    if form == "passt":
        if release >= (1, 3, 0):
            return (
                f"KubeVirt {shown} rejects the core `passt: {{}}` binding (removed in v1.3): "
                f"use {wanted}"
            )
        if "Passt" not in install.feature_gates:
            return (
                f"KubeVirt {shown} needs the feature gate Passt for `passt: {{}}`; enable it in "
                "the KubeVirt CR"
            )
        return None
    if form == "binding":
        if release < (1, 1, 1) or release > (1, 8, 99):
            return f"KubeVirt {shown} has no passt binding plugin (v1.1.1-v1.8): use {wanted}"
        if "passt" not in install.binding_plugins:
            return (
                f"KubeVirt {shown} does not register the passt binding plugin: add it under "
                "spec.configuration.network.binding.passt in the KubeVirt CR"
            )
        return None
    if release < (1, 8, 0):
        return f"KubeVirt {shown} has no core `passtBinding: {{}}` (from v1.8): use {wanted}"
    if release < (1, 9, 0) and "PasstBinding" not in install.feature_gates:
        return f"KubeVirt {shown} needs the feature gate PasstBinding for `passtBinding: {{}}`"
    return None


def suggested_form(release: Release) -> str:
    if release >= (1, 8, 0):
        return "passtBinding: {}"
    if release >= (1, 3, 0):
        return "binding: {name: passt}"
    return "passt: {}"


def drift(wanted: object, live: object, path: str = "") -> list[str]:
    """Paths where the live object differs from what the manifest sets. Fields the manifest does
    not mention (status, defaults the cluster fills in) are not compared."""
    if isinstance(wanted, dict):
        if not isinstance(live, dict):
            return [path or "."]
        found = []
        for key, value in wanted.items():
            found += drift(value, live.get(key), f"{path}.{key}" if path else str(key))
        return found
    if isinstance(wanted, list):
        if not isinstance(live, list) or len(live) != len(wanted):
            return [path]
        found = []
        for index, (want, have) in enumerate(zip(wanted, live, strict=True)):
            found += drift(want, have, f"{path}[{index}]")
        return found
    return [] if wanted == live else [path]
