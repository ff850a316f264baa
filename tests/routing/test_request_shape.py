"""RouteRequest refuses a request shape every model would refuse, before anything is sent or paid: bad tool
definitions, unknown roles and content part types, an unknown response_format. Each message names the field
and what to write instead. What OpenRouter accepts is the reference's §3.1."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelyard.routing.request import RouteRequest

HI = [{"role": "user", "content": "hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _tool(**function: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "get_weather", **function}}


def _refusal(**fields: Any) -> str:
    with pytest.raises(ValidationError) as refused:
        RouteRequest(**{"messages": HI, **fields})
    return str(refused.value)


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "a misspelt parameters type": (
        {"tools": [_tool(parameters={"type": "objekt"})]},
        "tools[0].function.parameters must have 'type': 'object' (the arguments are an object of named "
        "parameters), not 'objekt'",
    ),
    "a tool name with spaces": (
        {"tools": [WEATHER, _tool(name="get weather", parameters={"type": "object"})]},
        "tools[1].function.name must be 1 to 64 letters, digits, underscores or hyphens (e.g. 'get_weather'; some "
        "models also take dots and colons), not 'get weather'",
    ),
    "a tool name too long": ({"tools": [_tool(name="x" * 65)]}, "tools[0].function.name must be 1 to 64 letters"),
    "parameters written as text": (
        {"tools": [_tool(parameters="city: string")]},
        "tools[0].function.parameters must be a JSON Schema object such as {'type': 'object', 'properties': "
        "{'city': {'type': 'string'}}}, not a str",
    ),
    "parameters that are not a valid JSON Schema": (
        {"tools": [_tool(parameters={"type": "object", "properties": {"city": {"type": "text"}}})]},
        "tools[0].function.parameters is not a valid JSON Schema: ",
    ),
    "a tool type other than function": (
        {"tools": [{"type": "func", "function": {"name": "get_weather"}}]},
        "tools[0].type must be 'function' (or an OpenRouter server tool such as 'openrouter:web_search'), not 'func'",
    ),
    "a tool without its function": (
        {"tools": [{"type": "function", "name": "get_weather"}]},
        "tools[0].function must be an object with a 'name' (and usually 'description' and 'parameters')",
    ),
    "a json response format": (
        {"response_format": {"type": "json"}},
        "response_format.type must be 'text', 'json_object' (any JSON object) or 'json_schema' (with a schema) "
        "(or OpenRouter's 'grammar' or 'python'), not 'json'",
    ),
    "a response format without a type": ({"response_format": {}}, "response_format.type must be 'text'"),
    "the role human": (
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "human", "content": "hi"}]},
        "messages[1].role must be system, developer, user, assistant or tool, not 'human'",
    ),
    "a content part of type txt": (
        {"messages": [{"role": "user", "content": [{"type": "txt", "text": "hi"}]}]},
        "messages[0].content[0].type must be text, image_url, input_audio, video_url, input_video or file (refusal "
        "too, in an assistant message), not 'txt' (a text part is {'type': 'text', 'text': '...'}; an image, "
        "{'type': 'image_url', 'image_url': {'url': ...}})",
    ),
    "a content part type that is not a name": (
        {"messages": [{"role": "user", "content": [{"type": {"not": "a name"}}]}]},
        "messages[0].content[0].type must be text, image_url, input_audio, video_url, input_video or file (refusal "
        "too, in an assistant message), not {'not': 'a name'}",
    ),
    "a content part that is a bare string": (
        {"messages": [{"role": "user", "content": ["hi"]}]},
        "messages[0].content[0] must be an object such as {'type': 'text', 'text': '...'}, not a str",
    ),
}


@pytest.mark.parametrize(("fields", "says"), REFUSED.values(), ids=list(REFUSED))
def test_a_shape_every_model_would_refuse_is_refused_naming_the_field_and_the_fix(
    fields: dict[str, Any], says: str
) -> None:
    assert says in _refusal(**fields)


ACCEPTED: dict[str, dict[str, Any]] = {
    "a function tool": {"tools": [WEATHER]},
    "a function tool without parameters": {"tools": [_tool(description="no arguments")]},
    "a namespaced tool name some models take": {"tools": [_tool(name="github.create_issue"), _tool(name="fs:read")]},
    "parameters without a top-level type": {"tools": [_tool(parameters={"properties": {}})]},
    "OpenRouter's server tools": {"tools": [{"type": "openrouter:web_search"}, {"type": "web_search"}]},
    "every role": {
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "developer", "content": "d"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
            {"role": "tool", "content": "t", "tool_call_id": "c1"},
        ]
    },
    "every content part type": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {"type": "video_url", "video_url": {"url": "https://example.com/clip.mp4"}},
                    {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JV="}},
                ],
            }
        ]
    },
    "a text response format": {"response_format": {"type": "text"}},
    "a json_object response format": {"response_format": {"type": "json_object"}},
    "a json_schema response format": {
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}
    },
}


@pytest.mark.parametrize("fields", ACCEPTED.values(), ids=list(ACCEPTED))
def test_every_shape_openrouter_documents_is_accepted(fields: dict[str, Any]) -> None:
    RouteRequest(**{"messages": HI, **fields})


# --------------------------------------------------------------------------- review (h61): valid shapes kept

ECMA_PATTERNS = {
    # JSON Schema's `pattern` is ECMA-262, not Python `re`: tool parameters are never checked here against
    # an answer, so a pattern Python cannot compile is no reason to refuse the request.
    "zod's emoji() (Unicode property escapes)": "^(\\p{Extended_Pictographic}|\\p{Emoji_Component})+$",
    "a named group": "^(?<year>\\d{4})-(?<month>\\d{2})$",
    "the classic email pattern (\\w- in a class)": "^[\\w-\\.]+@([\\w-]+\\.)+[\\w-]{2,4}$",
}


@pytest.mark.parametrize("pattern", ECMA_PATTERNS.values(), ids=list(ECMA_PATTERNS))
def test_a_tool_whose_schema_has_an_ecma_regex_pattern_is_accepted(pattern: str) -> None:
    parameters = {"type": "object", "properties": {"value": {"type": "string", "pattern": pattern}}}
    RouteRequest(messages=HI, tools=[_tool(parameters=parameters)])


@pytest.mark.parametrize("value", [[], {}], ids=["list", "object"])
def test_a_schema_whose_dollar_schema_is_not_text_is_refused_not_crashed_on(value: Any) -> None:
    """A ValueError (the agent reads what to fix), never a TypeError out of the validator."""
    assert "is not a valid JSON Schema" in _refusal(tools=[_tool(parameters={"$schema": value, "type": "object"})])


def test_openrouters_legacy_input_video_part_is_accepted_and_needs_video_input() -> None:
    """OpenRouter's spec still takes `input_video` (deprecated, beside `video_url`): a model must read video."""
    part = {"type": "input_video", "video_url": {"url": "https://example.com/clip.mp4"}}
    request = RouteRequest(messages=[{"role": "user", "content": [part]}])
    assert request.required_inputs() == {"video"}


def test_an_assistant_turn_replayed_with_a_refusal_part_is_accepted() -> None:
    """OpenAI's assistant content parts are text and refusal; an agent replays the conversation as it got it."""
    refused = {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]}
    RouteRequest(messages=[*HI, refused, {"role": "user", "content": "Why not?"}])


def test_only_schemas_of_modest_size_have_their_verdict_kept() -> None:
    """The verdicts are kept by count (256): a schema over 64 KB is checked each time instead, so the kept
    ones never hold more than 16 MB."""
    from modelyard.routing import request as module

    big = {"type": "object", "properties": {f"p{i}": {"type": "string", "description": "x" * 100} for i in range(700)}}
    module._schema_problem.cache_clear()
    RouteRequest(messages=HI, tools=[_tool(name="small", parameters={"type": "object"})])
    RouteRequest(messages=HI, tools=[_tool(name="big", parameters=big)])
    assert module._schema_problem.cache_info().currsize == 1
