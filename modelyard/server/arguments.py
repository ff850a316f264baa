"""Tool arguments a tool does not declare are refused by name, not dropped unread.

The SDK validates a call's arguments with a model that ignores names it does not know, so a misspelt
cost cap (`max_cost_usd` for `max_cost`) ran the request uncapped. A tool's published input schema is the
one source of what it takes: its top level is closed here (`additionalProperties: false`), and so is every
nested object whose schema says so (a batch's tasks, pydantic models with `extra="forbid"`). Open objects
(chat messages, JSON schemas, tool definitions) keep any key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["CLIENT_ADDED", "ArgumentCheck", "closed"]

Schema = Mapping[str, Any]
_REF_PREFIX = "#/$defs/"
CLIENT_ADDED = frozenset({"toolCallId"})
"""Top-level names some hosts add to every call's arguments on their own (n8n 1.119-1.123: n8n-io/n8n#21500):
ignored, as the SDK ignores them, so those hosts can call the tools at all."""


def closed(schema: Schema) -> dict[str, Any]:
    """`schema` with `additionalProperties: false` at its top level: the tool takes no other argument."""
    return {**schema, "additionalProperties": False}


class ArgumentCheck:
    """The argument names one tool's input schema does not declare, each with the closest one it does.

    Built once per tool; `problem` costs a set difference for a tool without closed nested objects.
    """

    __slots__ = ("_defs", "_known", "_names", "_nested")

    def __init__(self, schema: Schema) -> None:
        self._defs: Mapping[str, Schema] = schema.get("$defs", {})
        properties: Mapping[str, Schema] = schema.get("properties", {})
        self._names = tuple(properties)
        self._known = frozenset(properties)
        self._nested = {name: sub for name, sub in properties.items() if self._holds_closed(sub, frozenset())}

    def problem(self, arguments: Mapping[str, Any]) -> str | None:
        """Why `arguments` are refused, every unknown name in a sentence of its own; None when all are known."""
        found = [_unknown(name, self._names, ()) for name in arguments.keys() - self._known - CLIENT_ADDED]
        if self._nested:
            for name in self._nested.keys() & arguments.keys():
                found.extend(self._unknown_within(self._nested[name], _parsed(arguments[name]), (name,)))
        return " ".join(sorted(found)) or None

    def _unknown_within(self, schema: Schema, value: Any, path: tuple[str, ...]) -> Iterator[str]:
        """The unknown keys of the closed objects inside `value`, which `schema` describes."""
        schema = self._fitting(self._resolved(schema), value)
        if isinstance(value, dict):
            properties: Mapping[str, Schema] = schema.get("properties", {})
            if schema.get("additionalProperties") is False:
                yield from (_unknown(key, tuple(properties), path) for key in value if key not in properties)
            for key in value.keys() & properties.keys():
                yield from self._unknown_within(properties[key], value[key], (*path, key))
        elif isinstance(value, list) and isinstance(items := schema.get("items"), Mapping):
            for index, item in enumerate(value):
                yield from self._unknown_within(items, item, (*path, str(index)))

    def _fitting(self, schema: Schema, value: Any) -> Schema:
        """The branch of an `anyOf`/`oneOf` that can hold `value` (an object or an array), else `schema`."""
        branches = schema.get("anyOf") or schema.get("oneOf")
        if not branches:
            return schema
        wanted = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else None
        resolved = (self._resolved(branch) for branch in branches)
        return next((branch for branch in resolved if branch.get("type") == wanted), schema)

    def _resolved(self, schema: Schema) -> Schema:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
            return self._defs.get(ref.removeprefix(_REF_PREFIX), schema)
        return schema

    def _holds_closed(self, schema: Schema, seen: frozenset[str]) -> bool:
        """Whether `schema` has a closed object anywhere inside (a recursive `$ref` is followed once)."""
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref in seen:
                return False
            seen = seen | {ref}
        schema = self._resolved(schema)
        if schema.get("additionalProperties") is False:
            return True
        inner: list[Any] = [*schema.get("properties", {}).values(), *schema.get("anyOf", ()), *schema.get("oneOf", ())]
        inner.append(schema.get("items"))
        return any(isinstance(sub, Mapping) and self._holds_closed(sub, seen) for sub in inner)


def _parsed(value: Any) -> Any:
    """A value sent as JSON text, parsed as the SDK parses it before validation (some hosts send lists so)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _unknown(name: str, known: Sequence[str], path: tuple[str, ...]) -> str:
    """`unknown argument 'max_cost_usd'; did you mean 'max_cost'?`, or the names it may be."""
    problem = f"unknown argument {'.'.join((*path, name))!r}"
    from difflib import get_close_matches  # only for a mistake: not on every call

    close = get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    if close:
        return f"{problem}; did you mean {'.'.join((*path, close[0]))!r}?"
    if not known:
        return f"{problem}; {'.'.join(path) if path else 'this tool'} takes no arguments."
    where = f" of {'.'.join(path)}" if path else ""
    return f"{problem}; the arguments{where} are {', '.join(known)}."
