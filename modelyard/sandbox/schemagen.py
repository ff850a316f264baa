"""A minimal, deterministic instance of a JSON Schema (for tool arguments and structured outputs).

Objects get their required properties only (all properties when none are marked required but
`minProperties` asks for some); enums and `const` pick their first value; `anyOf`/`oneOf` use their
first branch; `allOf` is merged; local `$ref`s (`#/$defs/...`, `#/definitions/...`) are followed.
Strings are derived from the property name and honour `minLength`, `maxLength` and common formats;
numbers honour `minimum`, `exclusiveMinimum`, `maximum` and `multipleOf`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["instance_of"]

_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "hostname": "example.com",
}
_MAX_DEPTH = 12


def instance_of(schema: Any, *, name: str = "value") -> Any:
    """A small value that is valid against `schema` (best effort for exotic keywords)."""
    root = schema if isinstance(schema, Mapping) else {}
    return _generate(root, root, name, 0)


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    target: Any = root
    for part in ref[2:].split("/"):
        target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, Mapping) else None
    return target if isinstance(target, Mapping) else {}


def _merge_all_of(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    merged: dict[str, Any] = {key: value for key, value in schema.items() if key != "allOf"}
    for part in schema.get("allOf") or ():
        part = _resolve(part, root) if isinstance(part, Mapping) else {}
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _type_of(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or ["null"]
        return str(kinds[0])
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _generate(schema: Mapping[str, Any], root: Mapping[str, Any], name: str, depth: int) -> Any:
    schema = _resolve(schema, root)
    if "allOf" in schema:
        schema = _merge_all_of(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            return _generate(_pick_branch(branches, root), root, name, depth + 1)
    kind = _type_of(schema)
    if depth > _MAX_DEPTH:
        return None if kind == "null" else {} if kind == "object" else []
    if kind == "object":
        return _object(schema, root, depth)
    if kind == "array":
        return _array(schema, root, name, depth)
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, name)


def _pick_branch(branches: list[Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    for branch in branches:
        if isinstance(branch, Mapping) and _resolve(branch, root).get("type") != "null":
            return branch
    first = branches[0]
    return first if isinstance(first, Mapping) else {}


def _object(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    required = [key for key in schema.get("required") or () if isinstance(key, str)]
    wanted = int(schema.get("minProperties") or 0)
    names = list(dict.fromkeys(required))
    for key in properties:
        if len(names) >= wanted:
            break
        if key not in names:
            names.append(key)
    result: dict[str, Any] = {}
    for key in names:
        sub = properties.get(key)
        if not isinstance(sub, Mapping):
            extra = schema.get("additionalProperties")
            sub = extra if isinstance(extra, Mapping) else {}
        result[key] = _generate(sub, root, key, depth + 1)
    return result


def _array(schema: Mapping[str, Any], root: Mapping[str, Any], name: str, depth: int) -> list[Any]:
    count = int(schema.get("minItems") or 0)
    prefix = schema.get("prefixItems")
    if isinstance(prefix, list) and prefix:
        items = [_generate(item, root, name, depth + 1) for item in prefix if isinstance(item, Mapping)]
        return items[: max(count, len(items))]
    item = schema.get("items")
    item_schema = item if isinstance(item, Mapping) else {}
    items = [_generate(item_schema, root, name, depth + 1) for _ in range(count)]
    if schema.get("uniqueItems"):
        items = [_vary(item, index) for index, item in enumerate(items)]
    return items


def _vary(value: Any, index: int) -> Any:
    """A distinct variant of a generated value, for `uniqueItems` (best effort)."""
    if index == 0:
        return value
    if isinstance(value, str):
        local, at, domain = value.partition("@")
        return f"{local}{index}@{domain}" if at else f"{value}{index}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value + index
    return value


def _number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    low = schema.get("minimum")
    exclusive = schema.get("exclusiveMinimum")
    high = schema.get("maximum")
    step = schema.get("multipleOf")
    value: float = 0.0 if low is None else float(low)
    if isinstance(exclusive, int | float) and not isinstance(exclusive, bool):
        value = max(value, float(exclusive) + (1 if integer else 0.5))
    elif exclusive is True and low is not None:
        value += 1 if integer else 0.5
    if high is not None and value > float(high):
        value = float(high)
    if isinstance(step, int | float) and step > 0:
        value = math.ceil(value / step) * step
    if integer:
        return math.ceil(value)
    return int(value) if float(value).is_integer() else value


def _string(schema: Mapping[str, Any], name: str) -> str:
    text = _FORMATS.get(str(schema.get("format", "")), name or "value")
    minimum = int(schema.get("minLength") or 0)
    if len(text) < minimum:
        text = (text * (minimum // max(len(text), 1) + 1))[:minimum]
    maximum = schema.get("maxLength")
    if isinstance(maximum, int):
        text = text[:maximum]
    return text
