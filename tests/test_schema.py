"""schemas/lab.schema.json is what `passtplan schema` prints, and it accepts the example labs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from passtplan.cli import app
from passtplan.lang.yamlsource import read_yaml
from tests.conftest import PLANS, REPO

COMMITTED = REPO / "schemas" / "lab.schema.json"


def test_committed_schema_equals_the_models(cli: CliRunner) -> None:
    result = cli.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads(COMMITTED.read_text()), (
        "schemas/lab.schema.json is stale: run `passtplan schema > schemas/lab.schema.json`"
    )
    assert result.stdout == COMMITTED.read_text()


@pytest.mark.parametrize("lab", sorted(PLANS.glob("*/lab.yaml")), ids=lambda p: p.parent.name)
def test_schema_accepts_example_labs(lab: Path) -> None:
    schema = json.loads(COMMITTED.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(read_yaml(lab).data, schema, cls=jsonschema.Draft202012Validator)


def test_schema_rejects_unknown_fields() -> None:
    schema = json.loads(COMMITTED.read_text())
    lab = read_yaml(PLANS / "veth-pair/lab.yaml").data
    assert isinstance(lab, dict)
    lab["namespaces"]["left"]["links"]["veth0"]["colour"] = "red"
    with pytest.raises(jsonschema.ValidationError, match="colour"):
        jsonschema.validate(lab, schema, cls=jsonschema.Draft202012Validator)
