"""An answer's JSON check: what the model sent against what the request asked for."""

from __future__ import annotations

import json

import pytest

from modelyard.errors import SchemaValidationError
from modelyard.routing.attempt import check_json


def test_an_answer_nested_too_deeply_to_read_fails_the_check_not_the_server() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(SchemaValidationError, match="nested too deeply to read"):
        check_json(deep, {"type": "json_object"}, "m")


def test_an_answer_nested_too_deeply_to_check_against_a_recursive_schema_fails_the_check() -> None:
    recursive = {
        "type": "json_schema",
        "json_schema": {"name": "tree", "schema": {"type": "array", "items": {"$ref": "#"}}},
    }
    deep = json.dumps(json.loads("[" * 900 + "]" * 900))
    with pytest.raises(SchemaValidationError, match="nested too deeply to check"):
        check_json(deep, recursive, "m")


def test_an_answer_that_fits_the_schema_passes() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object", "required": ["a"]}}}
    check_json('{"a": 1}', schema, "m")
