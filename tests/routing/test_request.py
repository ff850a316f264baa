"""RouteRequest refuses what cannot go upstream as JSON, with a message that names the field."""

from __future__ import annotations

import enum
import json
import math
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from modelyard.routing.request import MAX_JSON_DEPTH, RouteRequest


def _request_with(part: Any) -> RouteRequest:
    return RouteRequest(messages=[{"role": "user", "content": [{"type": "text", "text": "x", "extra": part}]}])


def _refusal(part: Any) -> str | None:
    try:
        _request_with(part)
    except ValidationError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(
    ("part", "says"),
    [
        (math.nan, "messages holds a NaN or infinite number"),
        ([1.0, {"deep": -math.inf}], "messages holds a NaN or infinite number"),
        ({math.inf: "key"}, "messages holds a NaN or infinite number"),
        ("a lone \ud800 surrogate", "messages holds text that is not valid Unicode"),
        ({"k\udfff": 1}, "messages holds text that is not valid Unicode"),
        ({"a set"}, "messages holds a value that is not JSON: Object of type set is not JSON serializable"),
        (b"bytes", "messages holds a value that is not JSON: Object of type bytes is not JSON serializable"),
        ({(1, 2): "tuple key"}, "keys must be str, int, float, bool or None, not tuple"),
    ],
)
def test_a_value_json_cannot_carry_is_refused_naming_the_field(part: Any, says: str) -> None:
    refusal = _refusal(part)
    assert refusal is not None and says in refusal


def test_an_integer_too_long_to_write_is_refused() -> None:
    assert "messages holds an integer too long to write as JSON" in (_refusal(10**5000) or "")
    assert _refusal(10**100) is None


def test_nesting_is_refused_past_the_depth_the_upstream_encoder_writes() -> None:
    def nested(levels: int) -> Any:
        value: Any = "x"
        for _ in range(levels):
            value = [value]
        return value

    # messages -> message -> content -> part -> "extra": four levels before the part's value
    assert _refusal(nested(MAX_JSON_DEPTH - 4)) is None
    assert f"messages is nested too deeply (over {MAX_JSON_DEPTH} levels)" in (
        _refusal(nested(MAX_JSON_DEPTH - 3)) or ""
    )


def test_a_subclass_cannot_hide_a_bad_value_behind_its_own_methods() -> None:
    class Ascii(str):
        def isascii(self) -> bool:
            return True

    class Hiding(list[Any]):
        def __iter__(self) -> Any:
            return iter([])

    assert "not valid Unicode" in (_refusal(Ascii("\ud800")) or "")
    assert "NaN or infinite" in (_refusal(Hiding([math.nan])) or "")


def test_a_cycle_is_refused_as_nested_too_deeply() -> None:
    looped: list[Any] = []
    looped.append(looped)
    assert "messages is nested too deeply" in (_refusal(looped) or "")


def test_what_json_accepts_is_accepted_subclasses_and_scalar_keys_included() -> None:
    class Role(enum.StrEnum):
        USER = "user"

    class Count(enum.IntEnum):
        TWO = 2

    part = OrderedDict([("role", Role.USER), ("n", Count.TWO), ("t", (1, 2.5, None, True)), ("é", "ünïcode ✓")])
    assert _refusal({**part, 1: "int key", 2.5: "float key", None: "none key", False: "bool key"}) is None


def test_a_long_conversation_is_accepted() -> None:
    words = " ".join(["alpha", "βeta", "gamma"] * 20_000)
    request = RouteRequest(messages=[{"role": "user", "content": words}] * 40)
    assert len(request.messages) == 40


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(codec=None), max_size=8),  # lone surrogates included
    st.binary(max_size=2),
)
_KEYS = st.one_of(st.text(st.characters(codec=None), max_size=4), st.integers(), st.floats(), st.none())
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(_KEYS, inner, max_size=4),
        st.frozensets(st.integers(), max_size=2),
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_a_value_is_refused_exactly_when_json_dumps_as_utf8_would_fail(part: Any) -> None:
    try:
        json.dumps(part, allow_nan=False, ensure_ascii=False).encode("utf-8")
        json_fails = False
    except (ValueError, TypeError):
        json_fails = True
    assert (_refusal(part) is not None) == json_fails


def _nested_array_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "array", "items": schema}
    return {"type": "object", "properties": {"a": schema}}


def test_a_schema_too_deep_to_check_is_refused_with_what_to_do_not_a_crash() -> None:
    """jsonschema checks a schema recursively: about 125 levels of `items` exhaust Python's stack."""
    deep = {"type": "json_schema", "json_schema": {"name": "deep", "schema": _nested_array_schema(150)}}
    with pytest.raises(ValidationError, match="nested too deeply to check: flatten it"):
        RouteRequest(messages=[{"role": "user", "content": "x"}], response_format=deep)
    shallow = {"type": "json_schema", "json_schema": {"name": "ok", "schema": _nested_array_schema(60)}}
    RouteRequest(messages=[{"role": "user", "content": "x"}], response_format=shallow)


def _parts(*parts: Any) -> RouteRequest:
    return RouteRequest(messages=[{"role": "user", "content": [{"type": "text", "text": "x"}, *parts]}])


@pytest.mark.parametrize(
    ("part", "inputs"),
    [
        ({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}, {"audio"}),
        ({"type": "video_url", "video_url": {"url": "https://example.com/clip.mp4"}}, {"video"}),
        ({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, set()),
        ({"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}, set()),
    ],
    ids=["audio", "video", "image (the vision capability)", "file (any model: OpenRouter parses it)"],
)
def test_the_input_modalities_a_request_needs_come_from_its_content_parts(part: Any, inputs: set[str]) -> None:
    assert _parts(part).required_inputs() == inputs


def test_a_text_only_request_needs_no_input_modality_beyond_text() -> None:
    assert (
        RouteRequest(
            messages=[{"role": "user", "content": "hello"}, {"role": "assistant", "content": None}]
        ).required_inputs()
        == frozenset()
    )
