"""A base for the models handed back to callers, with a JSON schema that is cheap to check.

Pydantic writes `X | None` as `anyOf: [{X}, {"type": "null"}]`. A client that validates every tool
result against the published output schema (the MCP Python client does, with `jsonschema`) then
descends into each branch of every such field on every call: about half of its validation time for
`execute`. `{"type": [X, "null"]}` says the same thing in one keyword, so that is what is published.
Nested models are written inline rather than as `$ref`s into `$defs`: each `$ref` is one more
lookup per value on every check (about half of what was left).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

__all__ = ["ResultModel", "collapse_type_unions", "inline_refs"]

_MAX_INLINE_DEPTH = 8
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


def inline_refs(schema: Any, resolve: Callable[[dict[str, Any]], dict[str, Any]], depth: int = 0) -> Any:
    """`schema` with each `{"$ref": ...}` replaced by a copy of what it points to (in place, and returned).

    Keywords beside a `$ref` (a field's description) win over the definition's. A `$ref` that cannot
    be resolved yet (a recursive model's) or lies more than `_MAX_INLINE_DEPTH` deep stays a `$ref`.
    """
    if isinstance(schema, list):
        schema[:] = [inline_refs(item, resolve, depth) for item in schema]
        return schema
    if not isinstance(schema, dict):
        return schema
    if isinstance(schema.get("$ref"), str) and depth < _MAX_INLINE_DEPTH:
        try:
            definition = copy.deepcopy(resolve({"$ref": schema["$ref"]}))
        except LookupError:  # a recursive model: its definition is still being written
            return schema
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return inline_refs({**definition, **siblings}, resolve, depth + 1)
    for key, value in schema.items():
        schema[key] = inline_refs(value, resolve, depth)
    return schema


class ResultModel(BaseModel):
    """A model returned to callers (tool results); its JSON schema is inline and writes optional fields compactly."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        body = handler.resolve_ref_schema(schema)
        properties = inline_refs(body.get("properties"), handler.resolve_ref_schema)
        collapse_type_unions(properties)
        return schema
