"""Regenerate the VirtualMachine CRD schemas the fake cluster serves, from KubeVirt's source.

    python tests/kube/crds/extract.py /path/to/kubevirt.git v1.0.0 v1.4.0 v1.8.0 v1.9.0

Each release's schema is KubeVirt's own (the `virtualmachine` entry of
pkg/virt-operator/resource/generate/components/validations_generated.go at that tag, which
virt-operator installs as the CRD's openAPIV3Schema), with descriptions left out to keep the
files small; written as vMAJOR.MINOR.json.gz beside this script.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

SOURCE = "pkg/virt-operator/resource/generate/components/validations_generated.go"


def strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main(repo: str, *tags: str) -> None:
    for tag in tags:
        text = subprocess.run(
            ["git", "-C", repo, "show", f"{tag}:{SOURCE}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        found = re.search(r'\n\t"virtualmachine": `(.*?)`,\n', text, re.S)
        assert found, f"no virtualmachine schema at {tag}"
        schema = YAML(typ="safe", pure=True).load(found.group(1))["openAPIV3Schema"]
        release = ".".join(tag.lstrip("v").split(".")[:2])
        out = Path(__file__).parent / f"v{release}.json.gz"
        data = json.dumps(strip(schema), sort_keys=True, separators=(",", ":")).encode()
        out.write_bytes(gzip.compress(data, mtime=0))
        print(f"{tag}: {out} ({len(data)} bytes, {out.stat().st_size} compressed)")


if __name__ == "__main__":
    main(*sys.argv[1:])
