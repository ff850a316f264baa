"""A base for the models handed back to callers, with a JSON schema that is cheap to check.

Pydantic writes `X | None` as `anyOf: [{X}, {"type": "null"}]`. A client that validates every tool
result against the published output schema (the MCP Python client does, with `jsonschema`) then
descends into each branch of every such field on every call: about half of its validation time for
`execute`. `{"type": [X, "null"]}` says the same thing in one keyword, so that is what is published.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

__all__ = ["ResultModel", "collapse_type_unions"]

# Keywords that constrain only values of their own type, so they keep their meaning when a branch's
# `type` becomes a list (`items` never rejects a null). `enum`, `const`, `$ref` and the combinators
# constrain every value, so a branch holding one is left as it is.
_TYPE_SPECIFIC = frozenset(
    {
        "type", "title", "description", "format", "pattern", "minLength", "maxLength",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "items", "prefixItems", "minItems", "maxItems", "uniqueItems",
        "properties", "additionalProperties", "required", "minProperties", "maxProperties",
    }
)  # fmt: skip


def collapse_type_unions(schema: Any) -> Any:
    """`schema` with every `anyOf` of plain, distinct types rewritten as one `type` list (in place).

    A union collapses when each branch has a single `type` string and only type-specific keywords,
    and at most one branch has keywords besides `type`: then the merged schema accepts exactly
    the values the `anyOf` accepted.
    """
    if isinstance(schema, list):
        for item in schema:
            collapse_type_unions(item)
        return schema
    if not isinstance(schema, dict):
        return schema
    for value in schema.values():
        collapse_type_unions(value)
    merged = _merged_branches(schema.get("anyOf"))
    if merged is not None:
        del schema["anyOf"]
        schema.update({k: v for k, v in merged.items() if k not in schema or k == "type"})
    return schema


def _merged_branches(branches: Any) -> dict[str, Any] | None:
    if not isinstance(branches, list) or len(branches) < 2:
        return None
    types: list[str] = []
    rich: list[dict[str, Any]] = []
    for branch in branches:
        if not isinstance(branch, dict) or not isinstance(branch.get("type"), str) or set(branch) - _TYPE_SPECIFIC:
            return None
        types.append(branch["type"])
        if len(branch) > 1:
            rich.append(branch)
    if len(set(types)) != len(types) or len(rich) > 1:
        return None
    return {**(rich[0] if rich else {}), "type": types}


class ResultModel(BaseModel):
    """A model returned to callers (tool results); its JSON schema writes optional fields compactly."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        collapse_type_unions(handler.resolve_ref_schema(schema).get("properties"))
        return schema
