"""`passtplan fmt`: lab files in canonical form, as `terraform fmt`, for reviews in git.

A round trip through ruamel.yaml keeps comments, quoting and each mapping's flow or block style;
what changes is the order of keys (the models' field order: apiVersion, kind, metadata, vms,
namespaces, checks, sandbox; a link's kind first) and the indentation (two spaces, a list's
dash two in from its key).
"""

from __future__ import annotations

import io
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from passtplan import inputs
from passtplan.errors import PasstplanError
from passtplan.lang.models import Lab

CHANGED_EXIT = 3  # --check: a file is not in canonical form (terraform fmt -check says 3)


def run(paths: list[Path], *, check: bool) -> int:
    changed = []
    for given in paths:
        path = inputs.lab_path(given)
        raw = inputs.read_file(path, what="lab file", limit=inputs.MAX_LAB_BYTES)
        text = raw.decode("utf-8")
        formatted = canonical(text, path)
        if formatted == text:
            continue
        changed.append(path)
        if not check:
            inputs.write_out(
                path,
                formatted,
                what="the formatted lab file",
                fix="make the file and its folder writable",
            )
    for path in changed:
        print(path)
    return CHANGED_EXIT if check and changed else 0


def canonical(text: str, path: Path) -> str:
    """The lab file `text` in canonical form; a YAML error is one line naming the place."""
    yaml = _yaml()
    try:
        document = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise PasstplanError(f"{where}: {exc.problem}; fix the YAML first") from None
    if not isinstance(document, CommentedMap):
        raise PasstplanError(f"{path}: not a lab (its top level is no mapping); fix it first")
    _order(document, Lab)
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def _yaml() -> YAML:
    yaml = YAML()  # round trip
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _order(node: CommentedMap, model: type[BaseModel]) -> None:
    """Keys in the model's field order, recursively; keys it does not know keep their order
    after those it does (a lab with them is refused by validate, not here)."""
    fields = {(f.alias or name): f.annotation for name, f in model.model_fields.items()}
    for key in sorted(node, key=lambda k: list(fields).index(k) if k in fields else len(fields)):
        node.move_to_end(key)
    for key, value in node.items():
        if key in fields:
            _descend(value, fields[key])


def _descend(value: Any, annotation: Any) -> None:
    """Order `value` by what `annotation` says it holds: a model, a dict or tuple of models, or
    an optional one."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if isinstance(value, CommentedMap):
            _order(value, annotation)
    elif origin in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            _descend(value, member)
    elif origin is dict and isinstance(value, CommentedMap):
        item = typing.get_args(annotation)[1]
        for child in value.values():
            _descend(child, item)
    elif origin is tuple and isinstance(value, CommentedSeq):
        item = typing.get_args(annotation)[0]
        for child in value:
            _descend(child, item)
