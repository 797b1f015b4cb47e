"""Whatever bytes a lab file holds, loading it gives a Lab or a clean list of errors."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from passtplan.cycles import load_lab
from passtplan.errors import SpecError
from passtplan.lang.loader import LoadedLab
from tests.conftest import PLANS

SEED_TEXTS = {p: p.read_text() for p in sorted(PLANS.glob("*/lab.yaml"))}
FIELDS = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespaces",
    "links",
    "routes",
    "kind",
    "peer",
    "parent",
    "mode",
    "addresses",
    "via",
    "dev",
    "to",
    "checks",
    "from",
    "ping",
    "tcp",
    "sandbox",
    "resolve",
    "vm",
    "sysctls",
    "mtu",
    "master",
    "state",
    "vms",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "veth",
            "macvlan",
            "bridge",
            "absent",
            "default",
            "10.0.0.1/24",
            "a/b",
            "host/ens192",
            "vm/x",
        ]
    ),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(min_size=1, max_size=12))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=30,
)


def load_or_errors(path: Path) -> LoadedLab | SpecError:
    """Any exception but SpecError fails the test; a SpecError must be well formed."""
    try:
        return load_lab(path)
    except SpecError as exc:
        error = exc
    assert error.issues, "a SpecError must carry at least one issue"
    for issue in error.issues:
        assert issue.line >= 1
        assert issue.col >= 1
        assert issue.message
    return error


def dump(data: Any) -> str:
    stream = io.StringIO()
    YAML(typ="safe", pure=True).dump(data, stream)
    return stream.getvalue()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=documents)
def test_random_documents(tmp_path: Path, data: Any) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(dump(data))
    load_or_errors(lab)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base=st.sampled_from(sorted(SEED_TEXTS)),
    seed=st.integers(0, 2**32),
    edits=st.integers(1, 4),
)
def test_mutated_example_labs(tmp_path: Path, base: Path, seed: int, edits: int) -> None:
    rng = random.Random(seed)
    lines = SEED_TEXTS[base].splitlines()
    for _ in range(edits):
        i = rng.randrange(len(lines))
        choice = rng.randrange(6)
        if choice == 0:
            del lines[i]
        elif choice == 1:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif choice == 2:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
        elif choice == 3:
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = (
                lines[i][:pos]
                + rng.choice(["{", "]", ":", "&a", "*a", "!x", "\t", "'", "9"])
                + lines[i][pos:]
            )
        elif choice == 4:
            lines[i] = lines[i].replace(rng.choice(FIELDS), rng.choice(FIELDS), 1)
        else:
            lines[i] = " " * rng.randrange(4) + lines[i].lstrip()
    lab = tmp_path / "lab.yaml"
    lab.write_text("\n".join(lines) + "\n")
    for manifest in base.parent.glob("*.yaml"):
        if manifest.name != "lab.yaml":
            (tmp_path / manifest.name).write_text(manifest.read_text())
    load_or_errors(lab)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200))
def test_random_bytes(tmp_path: Path, raw: bytes) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_bytes(raw)
    load_or_errors(lab)
