"""Result models publish compact, inline JSON schemas that accept exactly what they did before."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import BaseModel, TypeAdapter

from modelyard.routing.schema import ResultModel


class Inner(ResultModel):
    count: int
    label: str | None = None


class Outer(ResultModel):
    inner: Inner
    maybe: Inner | None = None
    many: list[Inner] = []


class Node(ResultModel):
    name: str
    children: list[Node] = []


def test_nested_models_are_written_inline_with_no_defs() -> None:
    schema = TypeAdapter(Outer).json_schema()
    assert "$ref" not in json.dumps(schema) and "$defs" not in schema
    assert schema["properties"]["maybe"]["type"] == ["object", "null"]
    assert schema["properties"]["many"]["items"]["properties"]["count"] == {"title": "Count", "type": "integer"}


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ({"inner": {"count": 1}}, True),
        ({"inner": {"count": 1, "label": None}, "maybe": None, "many": [{"count": 2, "label": "x"}]}, True),
        ({"inner": {"count": "one"}}, False),
        ({"inner": {"count": 1}, "maybe": {"label": "no count"}}, False),
        ({"inner": {"count": 1}, "many": [{"count": 1.5}]}, False),
    ],
)
def test_the_inline_schema_accepts_what_the_model_accepts(value: dict[str, object], valid: bool) -> None:
    schema = TypeAdapter(Outer).json_schema()
    try:
        jsonschema.validate(value, schema)
        accepted = True
    except jsonschema.ValidationError:
        accepted = False
    assert accepted is valid
    try:
        Outer.model_validate(value, strict=True)
        model_accepts = True
    except ValueError:
        model_accepts = False
    assert model_accepts is valid


def test_a_recursive_model_keeps_a_ref_instead_of_recursing_forever() -> None:
    schema = TypeAdapter(Node).json_schema()
    jsonschema.validate({"name": "a", "children": [{"name": "b", "children": []}]}, schema)
    assert "$ref" in json.dumps(schema)


def test_plain_models_are_untouched() -> None:
    class Plain(BaseModel):
        inner: Inner

    assert "$ref" in json.dumps(TypeAdapter(Plain).json_schema())
