"""The JSON Schema of the plan language, generated from the models.

`schemas/lab.schema.json` is this output, committed, so editors can complete and check lab files.
"""

from __future__ import annotations

import json

from passtplan.lang.models import API_VERSION, Lab

SCHEMA_ID = "https://passtplan.dev/schemas/lab.schema.json"


def lab_json_schema() -> dict[str, object]:
    schema = Lab.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"passtplan lab ({API_VERSION})",
        **schema,
    }


def lab_json_schema_text() -> str:
    return json.dumps(lab_json_schema(), indent=2, sort_keys=True) + "\n"
