"""What a caller asks the router for: the prompt, the constraints, and the sampling parameters."""

from __future__ import annotations

import functools
import math
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CAPABILITIES", "Capability", "RouteRequest"]

Capability = Literal["vision", "tools", "json_mode", "structured_outputs", "reasoning"]
CAPABILITIES: tuple[Capability, ...] = ("vision", "tools", "json_mode", "structured_outputs", "reasoning")
Quality = Literal["low", "medium", "high"]
Speed = Literal["any", "fast"]
CacheMode = Literal["auto", "on", "off"]
_NOT_KEYED = frozenset({"stream", "cache", "timeout_s", "max_cost"})


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

    Accepts exactly what `json.dumps(value, allow_nan=False)` encodes as UTF-8, without encoding it:
    a long conversation's text is only scanned (`str.isascii`), which is ~100x faster.

    Raises:
        ValueError: naming the field and what is wrong with it.
    """
    if value is None:
        return
    try:
        _walk_json(value)
    except ValueError as exc:  # NaN/Infinity (ValueError) or a lone surrogate (UnicodeEncodeError)
        what = "text that is not valid Unicode" if isinstance(exc, UnicodeError) else "a NaN or infinite number"
        raise ValueError(f"{name} holds {what}, which JSON cannot carry") from None
    except RecursionError:  # a cycle ends here too
        raise ValueError(f"{name} is nested too deeply") from None
    except TypeError as exc:
        raise ValueError(f"{name} holds a value that is not JSON: {exc}") from None


def _walk_json(value: Any) -> None:
    """Raise what encoding `value` as JSON (allow_nan=False) and then as UTF-8 would raise."""
    if isinstance(value, str):
        if not value.isascii():
            value.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int | float | None):  # json.dumps turns these keys into text
                raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
            if type(key) is not str or not key.isascii():
                _walk_json(key)
            _walk_json(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk_json(item)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    elif not isinstance(value, int) and value is not None:  # int covers bool
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


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
