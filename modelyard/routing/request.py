"""What a caller asks the router for: the prompt, the constraints, and the sampling parameters.

A request is checked before anything is sent or paid: what JSON cannot carry, and the shapes every model
would refuse (reference §3.1): roles, content part types, tool definitions, the response format.
"""

from __future__ import annotations

import functools
import json
import math
import re
from decimal import Decimal
from typing import Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CAPABILITIES", "MAX_JSON_DEPTH", "Capability", "RouteRequest"]

Capability = Literal["vision", "tools", "json_mode", "structured_outputs", "reasoning"]
CAPABILITIES: tuple[Capability, ...] = ("vision", "tools", "json_mode", "structured_outputs", "reasoning")
Quality = Literal["low", "medium", "high"]
Speed = Literal["any", "fast"]
CacheMode = Literal["auto", "on", "off"]
_NOT_KEYED = frozenset({"stream", "cache", "timeout_s", "max_cost"})
_INPUT_OF_PART = {"input_audio": "audio", "video_url": "video", "input_video": "video"}
"""Content parts only a model taking that input modality can read (reference §3.1; OpenRouter sends
a `video_url` only to models that process video). Not listed: `image_url`, which is the vision
capability, and `file`, which works on any model (OpenRouter parses a PDF for one that cannot read it)."""
_NO_INPUTS: frozenset[str] = frozenset()
_INPUT_PART_TYPES = tuple(_INPUT_OF_PART)  # a tuple: `in` compares, so an unhashable `type` is just no match
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_PART_TYPES = ("text", "image_url", "input_audio", "video_url", "input_video", "file")
_ASSISTANT_PART_TYPES = (*_PART_TYPES, "refusal")  # OpenAI's assistant parts: text and refusal
_FORMAT_TYPES = ("text", "json_object", "json_schema", "grammar", "python")
_SERVER_TOOL_PREFIX = (
    "openrouter:"  # OpenRouter's own tools (`openrouter:web_search`...), and the `web_search` shorthand
)
# What some model takes as a function name: OpenAI and Anthropic take [a-zA-Z0-9_-], Gemini dots and colons too
# (`github.create_issue`); a model that refuses the name fails alone, and the fallback tries the next.
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_.:-]{1,64}")


class RouteRequest(BaseModel):
    """One request to route. `messages` are OpenAI-format chat messages (image parts included)."""

    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]] = Field(min_length=1)
    model: str = "auto"
    models: list[str] = Field(default_factory=list)
    quality: Quality | None = None
    speed: Speed | None = None
    capabilities: list[Capability] = Field(default_factory=list)
    provider: list[str] = Field(default_factory=list)
    tier: Literal["economy", "balanced", "premium"] | None = None
    max_cost_per_1k: Decimal | None = Field(default=None, ge=0)
    max_cost: Decimal | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    stream: bool = False
    cache: CacheMode | None = None
    timeout_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_messages(self) -> RouteRequest:
        for index, message in enumerate(self.messages):
            role = message.get("role")
            if not isinstance(role, str) or role not in _ROLES:
                raise ValueError(_wrong_role(index, role))
            content = message.get("content")
            if isinstance(content, list):
                _check_parts(index, content, _ASSISTANT_PART_TYPES if role == "assistant" else _PART_TYPES)
            elif not isinstance(content, str | None):
                raise ValueError(f"messages[{index}].content must be a string, a list of content parts, or null")
        for name in ("messages", "stop", "tools", "tool_choice", "response_format", "reasoning"):
            _check_wire_json(name, getattr(self, name))
        if self.tools:
            _check_tools(self.tools)
        _check_response_format(self.response_format)
        return self

    def required_capabilities(self) -> set[Capability]:
        """Explicit capabilities plus those the request implies (tools, images, JSON, reasoning)."""
        needed: set[Capability] = set(self.capabilities)
        if self.tools:
            needed.add("tools")
        if self.has_images():
            needed.add("vision")
        kind = (self.response_format or {}).get("type")
        if kind == "json_object":
            needed.add("json_mode")
        elif kind == "json_schema":
            needed.add("structured_outputs")
        if self.reasoning and self.reasoning.get("enabled", True) and self.reasoning.get("effort") != "none":
            needed.add("reasoning")
        return needed

    def keyed_fields(self) -> dict[str, Any]:
        """The fields the response cache keys on: all but how the answer is delivered and capped.

        The validated values as they are: what `model_dump(exclude=...)` would copy, since every field
        holds plain JSON-like values (`_check_wire_json`), without the copy.
        """
        values = self.__dict__
        return {name: values[name] for name in _keyed_names(type(self))}

    def required_inputs(self) -> frozenset[str]:
        """The input modalities beyond text and images that the content parts need: `audio` for an
        `input_audio` part, `video` for a `video_url` part."""
        found: set[str] = set()
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and (kind := part.get("type")) in _INPUT_PART_TYPES:
                        found.add(_INPUT_OF_PART[kind])
        return frozenset(found) if found else _NO_INPUTS

    def has_images(self) -> bool:
        return self.image_count() > 0

    def image_count(self) -> int:
        """Image parts across all messages."""
        return sum(
            1
            for message in self.messages
            if isinstance(message.get("content"), list)
            for part in message["content"]
            if isinstance(part, dict) and part.get("type") == "image_url"
        )


@functools.cache
def _keyed_names(cls: type[RouteRequest]) -> tuple[str, ...]:
    return tuple(name for name in cls.model_fields if name not in _NOT_KEYED)


def _check_wire_json(name: str, value: Any) -> None:
    """`value` must go upstream as standard JSON: finite numbers, valid Unicode, sane nesting.

    Accepts what `json.dumps(value, allow_nan=False)` would encode as UTF-8 (for dicts, lists, tuples,
    str, int, float, bool and None, and their ordinary subclasses) up to `MAX_JSON_DEPTH` levels,
    without encoding it: a long conversation's text is only scanned (`str.isascii`), ~20x faster.

    Raises:
        ValueError: naming the field and what is wrong with it.
    """
    if value is None:
        return
    try:
        _walk_json(value, 0)
    except _NotWireJSON as exc:
        raise ValueError(f"{name} {exc}") from None


MAX_JSON_DEPTH = 200
"""Nesting a request may hold: pydantic_core, which writes the upstream body, stops at 255 levels."""
_SMALL_INT = 1 << 62  # an int inside this range has far fewer digits than any limit on writing ints


class _NotWireJSON(Exception):
    """What makes a value unfit for the wire, as the end of a sentence about the field."""


def _walk_json(value: Any, depth: int) -> None:
    """Raise `_NotWireJSON` where encoding `value` as JSON (allow_nan=False), then UTF-8, would fail.

    Dispatches on the real type and reads through the base types' methods, so a subclass's overrides
    (`isascii`, `__iter__`, `items`) cannot hide a bad value from the check.
    """
    kind = type(value)
    if issubclass(kind, str):
        if not str.isascii(value):
            _check_unicode(value)
    elif issubclass(kind, dict | list | tuple):
        if depth >= MAX_JSON_DEPTH:
            raise _NotWireJSON(f"is nested too deeply (over {MAX_JSON_DEPTH} levels)")
        if issubclass(kind, dict):
            for key, item in dict.items(value):
                if type(key) is not str or not key.isascii():
                    _check_key(key)
                _walk_json(item, depth + 1)
        else:
            for item in list.__iter__(value) if issubclass(kind, list) else tuple.__iter__(value):
                _walk_json(item, depth + 1)
    elif issubclass(kind, float):
        if not math.isfinite(value):
            raise _NotWireJSON("holds a NaN or infinite number, which JSON cannot carry")
    elif issubclass(kind, int):  # bool included
        if not -_SMALL_INT < value < _SMALL_INT:
            _check_int(value)
    elif value is not None:
        raise _NotWireJSON(f"holds a value that is not JSON: Object of type {kind.__name__} is not JSON serializable")


def _check_key(key: Any) -> None:
    """A mapping key: json writes str, int, float, bool and None keys as text, and refuses the rest."""
    if not issubclass(type(key), str | int | float) and key is not None:
        raise _NotWireJSON(
            f"holds a value that is not JSON: keys must be str, int, float, bool or None, not {type(key).__name__}"
        )
    _walk_json(key, 0)


def _check_unicode(text: str) -> None:
    try:
        str.encode(text, "utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        raise _NotWireJSON("holds text that is not valid Unicode, which JSON cannot carry") from None


def _check_int(number: int) -> None:
    try:
        int.__repr__(number)
    except ValueError:  # more digits than the interpreter writes (sys.get_int_max_str_digits)
        raise _NotWireJSON("holds an integer too long to write as JSON") from None


def _check_response_format(response_format: dict[str, Any] | None) -> None:
    """A known response format type; a `json_schema` one must carry an object schema that is itself valid.

    Raises:
        ValueError: the shape is wrong or the schema is not a valid JSON Schema.
    """
    if response_format is None:
        return
    kind = response_format.get("type")
    if kind not in _FORMAT_TYPES:
        raise ValueError(
            "response_format.type must be 'text', 'json_object' (any JSON object) or 'json_schema' (with a schema) "
            f"(or OpenRouter's 'grammar' or 'python'), not {_shown(kind)}"
        )
    if kind != "json_schema":
        return
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        raise ValueError("response_format.json_schema must be an object: {'name': ..., 'schema': {...}}")
    schema = spec.get("schema")
    if schema is None:
        return
    if not isinstance(schema, dict):
        raise ValueError("response_format.json_schema.schema must be a JSON Schema object")
    _check_schema("response_format.json_schema.schema", schema)


def _check_schema(where: str, schema: dict[str, Any], *, formats: bool = True) -> None:
    """`schema` must be a valid JSON Schema (of the draft its `$schema` names, else the latest).

    `formats`: also hold the schema's own strings to their formats (a `pattern` must compile as a Python
    `re`), as `jsonschema.validate` does when it checks an answer against a response_format schema. A tool's
    parameters are never checked against anything here, and JSON Schema's patterns are ECMA-262 (`\\p{L}`,
    `(?<name>...)`, `[\\w-.]`), so they are not.
    """
    text = pydantic_core.to_json(schema)
    check = _schema_problem if len(text) <= _MEMO_MAX_BYTES else _schema_problem.__wrapped__
    if (problem := check(text, formats)) is not None:
        raise ValueError(f"{where} {problem}")


_MEMO_MAX_BYTES = 65_536
"""The largest schema whose verdict is kept: the 256 kept then hold at most 16 MB of schema text."""


@functools.lru_cache(maxsize=256)
def _schema_problem(text: bytes, formats: bool) -> str | None:
    """What is wrong with the JSON Schema `text` (as it goes on the wire), or None.

    Memoized: checking a schema takes about 0.5 ms, and an agent sends the same tools on every turn.
    """
    import jsonschema  # only requests that carry a schema pay for the import (~50 ms at startup)

    schema = json.loads(text)
    if not isinstance(schema.get("$schema", ""), str):
        return f"is not a valid JSON Schema: $schema must be the URI of a draft, not {_shown(schema['$schema'])}"
    try:
        draft = jsonschema.validators.validator_for(schema)
        meta = jsonschema.validators.validator_for(draft.META_SCHEMA, default=draft)  # as `check_schema` does
        found = meta(draft.META_SCHEMA, format_checker=meta.FORMAT_CHECKER if formats else None).iter_errors(schema)
        if (error := next(iter(found), None)) is not None:
            return f"is not a valid JSON Schema: {error.message}"
    except RecursionError:
        return "is nested too deeply to check: flatten it, e.g. with $defs and $ref"
    return None


def _wrong_role(index: int, role: Any) -> str:
    if role is None:
        return f"messages[{index}] needs a 'role' (system, developer, user, assistant or tool)"
    return f"messages[{index}].role must be system, developer, user, assistant or tool, not {_shown(role)}"


def _check_parts(index: int, parts: list[Any], types: tuple[str, ...]) -> None:
    """Each content part is an object of a type OpenRouter reads."""
    for at, part in enumerate(parts):
        where = f"messages[{index}].content[{at}]"
        if not isinstance(part, dict):
            raise ValueError(
                f"{where} must be an object such as {{'type': 'text', 'text': '...'}}, not a {_kind(part)}"
            )
        if (kind := part.get("type")) not in types:
            raise ValueError(
                f"{where}.type must be text, image_url, input_audio, video_url, input_video or file (refusal too, in "
                f"an assistant message), not {_shown(kind)} (a text "
                "part is {'type': 'text', 'text': '...'}; an image, {'type': 'image_url', 'image_url': {'url': ...}})"
            )


def _check_tools(tools: list[dict[str, Any]]) -> None:
    """Each tool is a function with a valid name and JSON Schema parameters, or one of OpenRouter's server tools."""
    for at, tool in enumerate(tools):
        where = f"tools[{at}]"
        kind = tool.get("type")
        if kind == "function":
            _check_function(f"{where}.function", tool.get("function"))
        elif not isinstance(kind, str) or not (kind.startswith(_SERVER_TOOL_PREFIX) or kind == "web_search"):
            raise ValueError(
                f"{where}.type must be 'function' (or an OpenRouter server tool such as 'openrouter:web_search'), "
                f"not {_shown(kind)}"
            )


def _check_function(where: str, function: Any) -> None:
    if not isinstance(function, dict) or "name" not in function:
        raise ValueError(f"{where} must be an object with a 'name' (and usually 'description' and 'parameters')")
    name = function["name"]
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise ValueError(
            f"{where}.name must be 1 to 64 letters, digits, underscores or hyphens (e.g. 'get_weather'; some models "
            "also take dots and colons), "
            f"not {_shown(name)}"
        )
    if "parameters" not in function:
        return
    parameters = function["parameters"]
    if not isinstance(parameters, dict):
        raise ValueError(
            f"{where}.parameters must be a JSON Schema object such as {{'type': 'object', 'properties': "
            f"{{'city': {{'type': 'string'}}}}}}, not a {_kind(parameters)}"
        )
    if "type" in parameters and parameters["type"] != "object":
        raise ValueError(
            f"{where}.parameters must have 'type': 'object' (the arguments are an object of named parameters), "
            f"not {_shown(parameters['type'])}"
        )
    _check_schema(f"{where}.parameters", parameters, formats=False)


def _shown(value: Any) -> str:
    """`value` as the caller wrote it, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
