from __future__ import annotations

import pytest

from passtplan.errors import SpecError
from passtplan.lang.yaml12 import FastLoader, SlowLoader
from passtplan.lang.yamlsource import MAX_DEPTH, MAX_NODES, Position, format_path, parse_yaml


def test_positions_of_keys_and_values() -> None:
    doc = parse_yaml(b"a:\n  b: [x, {c: 2}]\n", "f.yaml")
    assert doc.data == {"a": {"b": ["x", {"c": 2}]}}
    assert doc.keys[("a", "b")] == Position(2, 3)
    assert doc.values[("a", "b", 1, "c")] == Position(2, 14)
    # A path that is not in the file falls back to its nearest written parent.
    assert doc.locate(("a", "b", 1, "missing")) == Position(2, 10)


def test_every_duplicate_key_is_reported() -> None:
    with pytest.raises(SpecError) as caught:
        parse_yaml(b"a: 1\nb: {c: 1, c: 2}\na: 3\n", "f.yaml")
    assert [str(i) for i in caught.value.issues] == [
        "f.yaml:2:11: b.c: duplicate key 'c': already set at line 2, column 5; keep one of them",
        "f.yaml:3:1: a: duplicate key 'a': already set at line 1, column 1; keep one of them",
    ]


def test_merge_keys_and_anchors() -> None:
    doc = parse_yaml(b"base: &b {up: false, mtu: 1400}\nlink: {<<: *b, mtu: 9000}\n", "f")
    assert doc.data == {"base": {"up": False, "mtu": 1400}, "link": {"up": False, "mtu": 9000}}


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    with pytest.raises(SpecError, match=f"more than {MAX_NODES} nodes"):
        parse_yaml("\n".join(lines).encode(), "bomb.yaml")


def test_yaml_1_2_booleans() -> None:
    # YAML 1.2: `yes` and `no` are strings, so a sysctl value `no` is never silently false.
    assert parse_yaml(b"a: yes\nb: true\n", "f").data == {"a": "yes", "b": True}


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (("namespaces", "pod", "routes", 0, "via"), "namespaces.pod.routes[0].via"),
        (("sysctls", "net.ipv4.ip_forward"), "sysctls['net.ipv4.ip_forward']"),
        ((), ""),
    ],
)
def test_format_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # YAML 1.1 (PyYAML's default) reads these as booleans, octal and base 60; a lab reads
        # them as YAML 1.2 does, as it always has.
        ("on", "on"),
        ("off", "off"),
        ("no", "no"),
        ("Yes", "Yes"),
        ("y", "y"),
        ("0755", 755),
        ("012", 12),
        ("1:20", "1:20"),
        ("1:20.5", "1:20.5"),
        # YAML 1.2 spellings PyYAML does not know.
        ("0o755", 0o755),
        ("1e3", 1000.0),
        ("-.5", -0.5),
        # Unchanged between the two.
        ("TRUE", True),
        ("~", None),
        ("", None),
        ("0x1F", 31),
        ("0b101", 5),
        ("1_000", 1000),
        ("'0755'", "0755"),
        ("!!str 12", "12"),
        ("!!bool yes", True),
        ("!!int '12'", 12),
        ("10.0.0.1/24", "10.0.0.1/24"),
    ],
)
def test_scalars_read_as_yaml_1_2(text: str, value: object) -> None:
    data = parse_yaml(f"k: {text}\n".encode(), "f").data
    assert data == {"k": value}
    assert isinstance(data, dict)
    assert type(data["k"]) is type(value)


def test_the_pure_python_parser_reads_the_same_nodes() -> None:
    # Where PyYAML is built without libyaml, the pure-Python parser takes over: same tree.
    text = "a: &x {b: [1, on, 0755]}\nc: {<<: *x, d: 'e'}\n"
    for loader in (FastLoader, SlowLoader):
        node = loader(text).get_single_node()
        (key, value), _ = node.value
        assert (key.value, key.start_mark.line, key.start_mark.column) == ("a", 0, 0)
        assert [n.tag.rsplit(":", 1)[1] for n in value.value[0][1].value] == ["int", "str", "int"]


def test_unknown_scalar_tag_is_refused() -> None:
    with pytest.raises(SpecError) as caught:
        parse_yaml(b"a: !ip 10.0.0.1\n", "f")
    assert str(caught.value) == "f:1:4: a: unknown tag '!ip'; a lab uses plain YAML, remove it"


def test_control_character_is_refused_with_its_place() -> None:
    with pytest.raises(SpecError) as caught:
        parse_yaml(b"a: 1\nb: x\x07\n", "f")
    assert str(caught.value) == (
        "f:2:5: the file is not YAML text: character '\\x07' is not allowed here"
    )


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000])
def test_deep_nesting_is_refused_not_a_crash(depth: int) -> None:
    with pytest.raises(SpecError, match="nest"):
        parse_yaml(b"a: " + b"[" * depth + b"]" * depth, "deep.yaml")


def test_a_long_chain_of_merge_keys_is_refused_not_a_crash() -> None:
    chain = ["a0: &a0 {x: 1}"]
    chain += [f"a{i}: &a{i} {{<<: *a{i - 1}, y{i}: 1}}" for i in range(1, 2 * MAX_DEPTH)]
    with pytest.raises(SpecError) as caught:
        parse_yaml("\n".join(chain).encode(), "chain.yaml")
    assert {i.message for i in caught.value.issues} == {
        f"the document nests more than {MAX_DEPTH} levels deep"
    }
