"""What a caller asks the router for: the prompt, the constraints, and the sampling parameters."""

from __future__ import annotations

import functools
import math
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CAPABILITIES", "MAX_JSON_DEPTH", "Capability", "RouteRequest"]

Capability = Literal["vision", "tools", "json_mode", "structured_outputs", "reasoning"]
CAPABILITIES: tuple[Capability, ...] = ("vision", "tools", "json_mode", "structured_outputs", "reasoning")
Quality = Literal["low", "medium", "high"]
Speed = Literal["any", "fast"]
CacheMode = Literal["auto", "on", "off"]
_NOT_KEYED = frozenset({"stream", "cache", "timeout_s", "max_cost"})
_INPUT_OF_PART = {"input_audio": "audio", "video_url": "video"}
"""Content parts only a model taking that input modality can read (reference §3.1; OpenRouter sends
a `video_url` only to models that process video). Not listed: `image_url`, which is the vision
capability, and `file`, which works on any model (OpenRouter parses a PDF for one that cannot read it)."""
_NO_INPUTS: frozenset[str] = frozenset()
_INPUT_PART_TYPES = tuple(_INPUT_OF_PART)  # a tuple: `in` compares, so an unhashable `type` is just no match


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
            if not isinstance(message.get("role"), str):
                raise ValueError(f"messages[{index}] needs a 'role' (system, user, assistant or tool)")
            if not isinstance(message.get("content"), str | list | None):
                raise ValueError(f"messages[{index}].content must be a string, a list of content parts, or null")
        for name in ("messages", "stop", "tools", "tool_choice", "response_format", "reasoning"):
            _check_wire_json(name, getattr(self, name))
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
    """A `json_schema` response format must carry an object schema that is itself valid, before anything is paid.

    Raises:
        ValueError: the shape is wrong or the schema is not a valid JSON Schema.
    """
    if not response_format or response_format.get("type") != "json_schema":
        return
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        raise ValueError("response_format.json_schema must be an object: {'name': ..., 'schema': {...}}")
    schema = spec.get("schema")
    if schema is None:
        return
    if not isinstance(schema, dict):
        raise ValueError("response_format.json_schema.schema must be a JSON Schema object")
    import jsonschema  # only requests that carry a schema pay for the import (~50 ms at startup)

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"response_format.json_schema.schema is not a valid JSON Schema: {exc.message}") from None
    except RecursionError:
        raise ValueError(
            "response_format.json_schema.schema is nested too deeply to check: flatten it, e.g. with $defs and $ref"
        ) from None
