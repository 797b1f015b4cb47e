"""PyYAML (libyaml when present) reading YAML 1.2's core schema, as ruamel.yaml did for labs.

PyYAML resolves plain scalars by YAML 1.1: `on`, `yes` and `no` are booleans, `0755` is octal
493 and `1:20` is the sexagesimal 80. A lab written for YAML 1.2 must not change meaning when
the parser does, so tags are resolved here by the 1.2 rules ruamel.yaml applied (its regular
expressions, copied) and scalars are built here too. Only the node tree comes from PyYAML.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from yaml.composer import Composer  # type: ignore[import-untyped, unused-ignore]
from yaml.constructor import SafeConstructor  # type: ignore[import-untyped, unused-ignore]
from yaml.nodes import ScalarNode, SequenceNode  # type: ignore[import-untyped, unused-ignore]
from yaml.parser import Parser  # type: ignore[import-untyped, unused-ignore]
from yaml.reader import Reader  # type: ignore[import-untyped, unused-ignore]
from yaml.resolver import BaseResolver  # type: ignore[import-untyped, unused-ignore]
from yaml.scanner import Scanner  # type: ignore[import-untyped, unused-ignore]

TAG = "tag:yaml.org,2002:"
NULL, BOOL, INT, FLOAT, STR = (TAG + t for t in ("null", "bool", "int", "float", "str"))
BINARY, TIMESTAMP, MERGE = TAG + "binary", TAG + "timestamp", TAG + "merge"
SEQ, MAP = TAG + "seq", TAG + "map"


class CoreResolver(BaseResolver):  # type: ignore[misc, unused-ignore]
    """Implicit tags of YAML 1.2 (ruamel.yaml's VersionedResolver at version 1.2)."""

    def resolve(self, kind: type[Any], value: str | None, implicit: tuple[bool, bool]) -> str:
        """BaseResolver.resolve without path resolvers (a lab has none): it runs once a node."""
        if kind is not ScalarNode:
            return SEQ if kind is SequenceNode else MAP
        if implicit[0] and value is not None:
            for tag, regexp in self.yaml_implicit_resolvers.get(value[:1], ()):
                if regexp.match(value):
                    return str(tag)
        return STR


_RESOLVERS: list[tuple[str, str, str]] = [
    (BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (
        FLOAT,
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        "-+0123456789.",
    ),
    (
        INT,
        r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0o?[0-7_]+
        |[-+]?[0-9_]+
        |[-+]?0x[0-9a-fA-F_]+)$""",
        "-+0123456789",
    ),
    (MERGE, r"^(?:<<)$", "<"),
    (NULL, r"^(?:~|null|Null|NULL|)$", "~nN"),
    (
        TIMESTAMP,
        r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
        |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?
        (?:[Tt]|[ \t]+)[0-9][0-9]?
        :[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
        (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""",
        "0123456789",
    ),
]
for _tag, _pattern, _first in _RESOLVERS:
    # An empty plain scalar (`key:`) is null; PyYAML files it under the first character "".
    _firsts = [*_first, ""] if _tag == NULL else list(_first)
    CoreResolver.add_implicit_resolver(_tag, re.compile(_pattern, re.X), _firsts)


class SlowLoader(Reader, Scanner, Parser, Composer, CoreResolver):  # type: ignore[misc, unused-ignore]
    """Pure Python: slower, and the clearer messages for a file it refuses."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        CoreResolver.__init__(self)


def _fast_loader() -> type[Any]:
    """libyaml's parser with the 1.2 resolver; the pure one when PyYAML was built without it."""
    try:
        from yaml._yaml import (  # type: ignore[import-untyped, import-not-found, unused-ignore] # noqa: PLC0415
            CParser,
        )
    except ImportError:
        return SlowLoader

    class FastLoader(CParser, CoreResolver):  # type: ignore[misc, unused-ignore]
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            CoreResolver.__init__(self)

    return FastLoader


FastLoader: type[Any] = _fast_loader()
_TIMESTAMPS = SafeConstructor()


def construct_scalar(node: ScalarNode) -> object:
    """The value of a scalar node, or ValueError; LookupError for a tag a lab does not use."""
    tag = node.tag
    if tag == STR:
        return node.value  # nine scalars in ten: the fast way out
    if tag == TIMESTAMP:
        return _timestamp(node)
    builder = _BUILDERS.get(tag)
    if builder is None:
        raise LookupError(tag)
    return builder(node.value)


def _timestamp(node: ScalarNode) -> object:
    try:
        return _TIMESTAMPS.construct_yaml_timestamp(node)
    except (AttributeError, ValueError):  # PyYAML's own: no match, or a day that is not
        raise ValueError(f"{node.value!r} is not a date or time") from None


# An explicit `!!bool yes` is still understood, as ruamel.yaml did; plain `yes` is a string.
BOOL_WORDS = {"yes": True, "no": False, "y": True, "n": False, "true": True, "false": False}
BOOL_WORDS |= {"on": True, "off": False}


def _bool(value: str) -> bool:
    try:
        return BOOL_WORDS[value.lower()]
    except KeyError:
        raise ValueError(f"{value!r} is not a boolean") from None


def _int(text: str) -> int:
    """YAML 1.2: `0o` is octal and `0755` is decimal 755; underscores are dropped."""
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    for prefix, base in (("0b", 2), ("0x", 16), ("0o", 8)):
        if digits.startswith(prefix):
            return sign * int(digits[2:], base)
    return sign * int(digits)


def _float(text: str) -> float:
    digits = text.replace("_", "").lower()
    sign = -1.0 if digits.startswith("-") else 1.0
    digits = digits.lstrip("+-")
    if digits == ".inf":
        return sign * math.inf
    if digits == ".nan":
        return math.nan
    return sign * float(digits)


def _binary(text: str) -> bytes:
    try:
        return base64.decodebytes(text.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError(f"not base64 data: {exc}") from None


_BUILDERS: dict[str, Any] = {
    NULL: lambda _: None,
    BOOL: _bool,
    INT: _int,
    FLOAT: _float,
    BINARY: _binary,
}
