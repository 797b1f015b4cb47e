"""Load a lab file: YAML with positions, the models, the lab-wide rules, the VM manifests.

Structure is judged first (every YAML and model error at once); the lab-wide rules and the
manifests need a structurally valid lab, so they are judged when it is one.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path

import msgspec
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from passtplan import inputs
from passtplan.errors import Severity, SpecError, SpecIssue
from passtplan.inputs import InputError
from passtplan.lang.manifest import VmManifest, read_manifest
from passtplan.lang.models import API_VERSION, Lab
from passtplan.lang.semantics import check_lab
from passtplan.lang.yamlsource import (
    DataPath,
    YamlDocument,
    cycle_collector_paused,
    format_path,
    read_yaml,
)


class LoadedLab(msgspec.Struct, frozen=True):
    """A valid lab with its VM manifests, and the warnings found on the way."""

    path: Path
    lab: Lab
    manifests: dict[str, VmManifest]
    warnings: tuple[SpecIssue, ...]
    # Where each part was written. A Struct has no per-field compare or repr, so the document is
    # compared and shown with the rest: nothing compares or hashes a LoadedLab (its manifests
    # dict makes it unhashable anyway), and one file read twice gives equal documents.
    document: YamlDocument

    @property
    def name(self) -> str:
        return self.lab.metadata.name


def load_lab(path: Path) -> LoadedLab:
    """Read and judge a lab file; raise SpecError carrying every error found."""
    with cycle_collector_paused():
        return _load_lab(path)


def _load_lab(path: Path) -> LoadedLab:
    doc = read_yaml(path)
    lab = validate_document(doc)
    issues = [doc.issue(f.path, f.message, at_key=f.at_key) for f in check_lab(lab)]
    manifests: dict[str, VmManifest] = {}
    for name, vm in lab.vms.items():
        manifest, found = _load_manifest(doc, path, name, vm.manifest, vm.namespace)
        issues += found
        if manifest is not None:
            manifests[name] = manifest
    errors = [i for i in issues if i.severity is Severity.ERROR]
    if errors:
        raise SpecError(issues)
    return LoadedLab(path, lab, manifests, tuple(sorted(issues)), doc)


def validate_document(doc: YamlDocument) -> Lab:
    if not isinstance(doc.data, dict):
        raise SpecError(
            [
                doc.issue(
                    (),
                    f"a lab file must be a mapping that starts with apiVersion: {API_VERSION}, "
                    f"not {describe(doc.data)}",
                )
            ]
        )
    try:
        return Lab.model_validate(doc.data)
    except ValidationError as exc:
        raise SpecError([_issue_for(doc, error) for error in exc.errors()]) from None


def _load_manifest(
    doc: YamlDocument, lab_path: Path, vm: str, manifest: str, namespace: str
) -> tuple[VmManifest | None, list[SpecIssue]]:
    file = lab_path.parent / manifest
    where: DataPath = ("vms", vm, "manifest")
    if not file.exists() and not file.is_symlink():
        return None, [
            doc.issue(
                where,
                f"manifest file {manifest!r} not found; it is read relative to the lab file, "
                f"at {file}",
            )
        ]
    try:
        manifest_doc = read_yaml(file, what="VM manifest", limit=inputs.MAX_MANIFEST_BYTES)
    except SpecError as exc:
        return None, exc.issues
    except InputError as exc:
        return None, [doc.issue(where, str(exc))]
    return read_manifest(manifest_doc, vm, namespace)


def _issue_for(doc: YamlDocument, error: ErrorDetails) -> SpecIssue:
    loc = tuple(error["loc"])
    at_key = "[key]" in loc
    path: DataPath = tuple(p for p in loc if p != "[key]")
    kind = error["type"]
    if kind == "extra_forbidden":
        return doc.issue(path, _unknown_field(path), at_key=True)
    if kind == "missing":
        pos = doc.locate(path[:-1], at_key=True)
        return SpecIssue(
            doc.file, pos.line, pos.col, format_path(path), "required field is missing"
        )
    return doc.issue(path, _message(error), at_key=at_key)


def _message(error: ErrorDetails) -> str:
    kind, msg, value = error["type"], error["msg"], error["input"]
    if kind in ("value_error", "assertion_error"):
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",")]
        if len(choices) == 1:
            return f"must be {expected}, not {describe(value)}"
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{describe(value)} is not allowed; expected {expected}{hint}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number, not {describe(value)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false, not {describe(value)}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number, not {describe(value)}"
    if kind == "string_type":
        return f"must be a string, not {describe(value)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping, not {describe(value)}"
    if kind in ("tuple_type", "list_type"):
        return f"must be a list, not {describe(value)}"
    return f"{msg.replace('Input should be', 'must be')}, not {describe(value)}"


def describe(value: object) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    if isinstance(value, int | float):
        return repr(value)
    return f"{value!r} (a {type(value).__name__})"


def _unknown_field(path: DataPath) -> str:
    field = str(path[-1])
    model = model_at(Lab, path[:-1])
    if model is None:
        return f"unknown field {field!r}"
    names = sorted(info.alias or name for name, info in model.model_fields.items())
    close = difflib.get_close_matches(field, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field {field!r}; {hint}{model.__name__} fields are: {', '.join(names)}"


def model_at(model: type[BaseModel], path: DataPath) -> type[BaseModel] | None:
    """The model class that validates the object at `path` under `model`."""
    current: object = model
    for part in path:
        if isinstance(current, type) and issubclass(current, BaseModel):
            if not isinstance(part, str):
                return None
            field = next(
                (f for n, f in current.model_fields.items() if (f.alias or n) == part), None
            )
            if field is None:
                return None
            current = field.annotation
            continue
        container = _unwrap_optional(current)
        args = typing.get_args(container)
        origin = typing.get_origin(container)
        if origin is dict and args:
            current = args[1]
        elif origin in (tuple, list) and args:
            current = args[0]
        else:
            return None
    current = _unwrap_optional(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap_optional(annotation: object) -> object:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation
