"""Read a YAML file into plain data plus the line and column of every key and value.

The node tree is walked by hand instead of letting a constructor build the data, so that every
duplicate key in the file is reported (a constructor stops at the first) and every path in the
data can be traced back to where it was written.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
from yaml.error import MarkedYAMLError, YAMLError  # type: ignore[import-untyped, unused-ignore]
from yaml.nodes import (  # type: ignore[import-untyped, unused-ignore]
    MappingNode,
    Node,
    ScalarNode,
    SequenceNode,
)
from yaml.reader import ReaderError  # type: ignore[import-untyped, unused-ignore]

from passtplan import inputs
from passtplan.errors import SpecError, SpecIssue
from passtplan.lang.yaml12 import FastLoader, SlowLoader, construct_scalar

DataPath = tuple[str | int, ...]

# Expanding aliases can blow a small file up exponentially ("billion laughs");
# no lab comes near this many nodes.
MAX_NODES = 200_000
# A lab nests a handful of levels; far deeper would exhaust the walker's stack (merge keys that
# refer to mappings with merge keys nest too).
MAX_DEPTH = 100
MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"
COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class Position(NamedTuple):
    """A place in the file. A tuple, not a dataclass: a big lab makes a hundred thousand."""

    line: int  # 1-based
    col: int  # 1-based


class YamlDocument(msgspec.Struct):
    """A parsed YAML document: its data and where each part of it stands in the file."""

    file: str
    data: object
    keys: dict[DataPath, Position] = msgspec.field(default_factory=dict)
    values: dict[DataPath, Position] = msgspec.field(default_factory=dict)

    def locate(self, path: DataPath, *, at_key: bool = False) -> Position:
        """Where `path` was written; a path that is not in the file falls back to its parent."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if at_key and prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
            if prefix in self.keys:
                return self.keys[prefix]
        return Position(1, 1)

    def issue(self, path: DataPath, message: str, *, at_key: bool = False) -> SpecIssue:
        pos = self.locate(path, at_key=at_key)
        return SpecIssue(self.file, pos.line, pos.col, format_path(path), message)


def format_path(path: DataPath) -> str:
    """`namespaces.pod.routes[0].via`; keys that hold dots or spaces go in brackets."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "" or any(c in part for c in ".[] ") or not part.isprintable():
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out


@contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """Hold the cycle collector off while a lab is read and judged.

    Reading allocates a container per YAML node and then per model, and every few hundred
    allocations the collector scans the growing heap: that was half the time of `validate` on
    a big lab. What is built here is freed by reference counting; the few cycles (a recursive
    alias) wait for the next collection.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_yaml(
    path: Path,
    display_name: str | None = None,
    *,
    what: str = "lab file",
    limit: int = inputs.MAX_LAB_BYTES,
) -> YamlDocument:
    """Parse one file; raise SpecError with every problem found (all duplicate keys, say), or
    InputError when the path is no regular, readable file of at most `limit` bytes."""
    raw = inputs.read_file(path, what=what, limit=limit)
    return parse_yaml(raw, display_name or str(path))


def parse_yaml(raw: bytes, name: str) -> YamlDocument:
    text = _decode(raw, name)
    with cycle_collector_paused():
        root = _compose(text, name)
        if root is None:
            raise SpecError([SpecIssue(name, 1, 1, "", "the file is empty")])
        walker = _Walker(name)
        data = walker.walk(root, ())
    if walker.issues:
        raise SpecError(walker.issues)
    return YamlDocument(name, data, walker.keys, walker.values)


def _compose(text: str, name: str) -> Node | None:
    """The node tree, composed by libyaml; a file it refuses is read again for the message.

    libyaml is some ten times faster than a pure-Python parser, but its messages are terse
    ("found character that cannot start any token"); the pure-Python parser names the character
    and the token it expected. Errors are rare, so reading a bad file twice costs nothing that
    matters.
    """
    try:
        return _load(text, FastLoader)
    except YAMLError as fast_error:
        nested = "nesting depth" in str(getattr(fast_error, "problem", ""))
        if FastLoader is not SlowLoader and not nested:  # (too deep is slow to parse again)
            try:
                _load(text, SlowLoader)
            except YAMLError as exc:
                raise SpecError([_yaml_issue(name, text, exc)]) from None
            except RecursionError:
                pass  # nested too deep for the pure parser: libyaml's message says so
        raise SpecError([_yaml_issue(name, text, fast_error)]) from None
    except RecursionError:
        msg = f"the document nests too deeply; a lab nests a few levels, at most {MAX_DEPTH}"
        raise SpecError([SpecIssue(name, 1, 1, "", msg)]) from None


def _load(text: str, loader_class: type[Any]) -> Node | None:
    loader = loader_class(text)
    try:
        node: Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


def _yaml_issue(name: str, text: str, exc: YAMLError) -> SpecIssue:
    if isinstance(exc, MarkedYAMLError):
        return _marked_issue(name, exc)
    if isinstance(exc, ReaderError):
        line, col = _offset_to_position(text, exc.position)
        # PyYAML gives the character as its code point
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        msg = f"the file is not YAML text: character {char!r} is not allowed here"
        return SpecIssue(name, line, col, "", msg)
    return SpecIssue(name, 1, 1, "", f"YAML error: {exc}")


def _decode(raw: bytes, name: str) -> str:
    if b"\x00" in raw[:8192]:
        raise SpecError([SpecIssue(name, 1, 1, "", "this is a binary file, not a YAML text file")])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, col = _offset_to_position(raw[: exc.start].decode("utf-8", "replace"), None)
        msg = f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        raise SpecError([SpecIssue(name, line, col, "", msg)]) from None


def _offset_to_position(text: str, offset: int | None) -> tuple[int, int]:
    head = text if offset is None else text[:offset]
    return head.count("\n") + 1, len(head) - (head.rfind("\n") + 1) + 1


def _marked_issue(name: str, exc: MarkedYAMLError) -> SpecIssue:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context == "expected a single document in the stream":
        return SpecIssue(
            name, line, col, "", "a second YAML document starts here; a lab file holds one"
        )
    context = ""
    if exc.context and exc.context_mark is not None and exc.problem:
        cm = exc.context_mark
        context = f" ({exc.context} at line {cm.line + 1}, column {cm.column + 1})"
    return SpecIssue(name, line, col, "", f"YAML syntax: {problem}{context}")


def _position(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


class _Walker:
    """Turns a node tree into dicts, lists and scalars, recording positions and problems."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.keys: dict[DataPath, Position] = {}
        self.values: dict[DataPath, Position] = {}
        self.issues: list[SpecIssue] = []
        self.count = 0
        self.active: set[int] = set()

    def problem(self, node: Node, path: DataPath, message: str) -> None:
        pos = _position(node)
        self.issues.append(SpecIssue(self.name, pos.line, pos.col, format_path(path), message))

    def walk(self, node: Node, path: DataPath) -> object:
        self.count += 1
        if self.count > MAX_NODES:
            if self.count == MAX_NODES + 1:
                self.problem(node, path, f"the document expands to more than {MAX_NODES} nodes")
            return None
        if path not in self.values:
            mark = node.start_mark
            self.values[path] = Position(mark.line + 1, mark.column + 1)
        if isinstance(node, ScalarNode):
            if node.tag == STR_TAG:
                return node.value  # most values: nothing to build (this runs once a node)
            return self.scalar(node, path)  # a scalar contains nothing, so it cannot recur
        if id(node) in self.active:
            self.problem(node, path, "an alias refers to a node that contains it")
            return None
        if node.tag not in COLLECTION_TAGS:
            self.problem(node, path, _unknown_tag(node.tag))
            return None
        if len(self.active) >= MAX_DEPTH:
            self.problem(node, path, f"the document nests more than {MAX_DEPTH} levels deep")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
            return [self.walk(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self.active.discard(id(node))

    def scalar(self, node: ScalarNode, path: DataPath) -> object:
        try:
            return construct_scalar(node)
        except LookupError:
            self.problem(node, path, _unknown_tag(node.tag))
        except ValueError as exc:
            self.problem(node, path, f"cannot read this value: {exc}")
        return None

    def mapping(self, node: MappingNode, path: DataPath) -> dict[object, object]:
        out: dict[object, object] = {}
        seen: dict[str | int, Position] = {}
        merged: dict[object, object] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                merged.update(self.merge_sources(value_node, path))
                continue
            key = self.walk_key(key_node, path)
            if key is None:
                continue
            if key in seen:
                first = seen[key]
                self.problem(
                    key_node,
                    (*path, key),
                    f"duplicate key {key!r}: already set at line {first.line}, "
                    f"column {first.col}; keep one of them",
                )
                continue
            sub = (*path, key)
            seen[key] = self.keys[sub] = _position(key_node)
            out[key] = self.walk(value_node, sub)
        for merged_key, value in merged.items():
            out.setdefault(merged_key, value)
        return out

    def walk_key(self, node: Node, path: DataPath) -> str | int | None:
        if node.tag == STR_TAG and isinstance(node, ScalarNode):
            return str(node.value)  # nearly every key: no need to build it
        if not isinstance(node, ScalarNode):
            self.problem(node, path, "a mapping key must be a plain value, not a list or mapping")
            return None
        key: object = self.scalar(node, path)
        if isinstance(key, bool) or not isinstance(key, str | int):
            # YAML allows `1.5:` or `null:` as keys; a lab has no use for them and JSON none either.
            return str(key)
        return key

    def merge_sources(self, node: Node, path: DataPath) -> Iterator[tuple[object, object]]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        for source in sources:
            value = self.walk(source, path)
            if isinstance(value, dict):
                yield from value.items()
            elif not isinstance(source, MappingNode):  # (a mapping that failed is reported)
                self.problem(source, path, "a merge key (<<) must refer to a mapping")


def _unknown_tag(tag: str) -> str:
    return f"unknown tag {tag!r}; a lab uses plain YAML, remove it"
