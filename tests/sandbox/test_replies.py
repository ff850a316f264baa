"""What the sandbox answers: tool calls, JSON modes, reasoning, and the token rule."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import jsonschema
import pytest

from modelyard.sandbox.schemagen import instance_of
from modelyard.sandbox.tokens import count_prompt, pieces
from tests.sandbox.conftest import chat

pytestmark = pytest.mark.anyio

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Get weather information for a location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "the city"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["location", "unit", "days"],
        },
    },
}
SEARCH = {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}}

SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "integer", "exclusiveMinimum": 3}, "minItems": 2},
            "tag": {"enum": ["b", "a"]},
            "score": {"type": "number", "minimum": 0.5, "maximum": 1},
            "when": {"type": "string", "format": "date-time"},
            "code": {"type": "string", "minLength": 12, "maxLength": 12},
        },
        "required": ["items", "tag", "score", "when", "code"],
    },
    {
        "$defs": {"person": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
        "type": "object",
        "properties": {
            "people": {"type": "array", "items": {"$ref": "#/$defs/person"}, "minItems": 1},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
            "nested": {"allOf": [{"properties": {"x": {"const": 3}}, "required": ["x"]}]},
            "kinds": {"type": ["null", "string"]},
        },
        "required": ["people", "maybe", "nested", "kinds"],
    },
    {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 3, "uniqueItems": True},
]


async def test_tools_get_one_tool_call_valid_against_the_tool_schema(client: httpx2.AsyncClient) -> None:
    """With tools and no tool_choice: finish_reason tool_calls, content null, args valid for the first tool."""
    answer = (await client.post("/chat/completions", json=chat(tools=[WEATHER, SEARCH]))).json()
    choice = answer["choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert call["function"]["name"] == "weather"
    assert call["id"].startswith("call_") and len(call["id"]) == 29
    int(call["id"][5:], 16)
    arguments = json.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])
    assert arguments["unit"] == "celsius"


async def test_a_forced_tool_choice_calls_that_tool(client: httpx2.AsyncClient) -> None:
    """tool_choice {"type": "function", "function": {"name": ...}} picks the named tool."""
    forced = {"type": "function", "function": {"name": "search"}}
    answer = (await client.post("/chat/completions", json=chat(tools=[WEATHER, SEARCH], tool_choice=forced))).json()
    assert answer["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "search", "arguments": "{}"}


async def test_tool_choice_none_and_a_tool_result_get_text(client: httpx2.AsyncClient) -> None:
    """tool_choice "none" answers with text, and so does a request whose last message is a tool result."""
    declined = (await client.post("/chat/completions", json=chat(tools=[WEATHER], tool_choice="none"))).json()
    body = chat(tools=[WEATHER])
    body["messages"] += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "40 C"},
    ]
    after_tool = (await client.post("/chat/completions", json=body)).json()
    for answer in (declined, after_tool):
        assert answer["choices"][0]["finish_reason"] == "stop"
        assert answer["choices"][0]["message"]["content"]
        assert "tool_calls" not in answer["choices"][0]["message"]


async def test_json_object_mode_answers_a_json_object(client: httpx2.AsyncClient) -> None:
    """response_format json_object: the content parses as a JSON object."""
    answer = (await client.post("/chat/completions", json=chat(response_format={"type": "json_object"}))).json()
    assert isinstance(json.loads(answer["choices"][0]["message"]["content"]), dict)


@pytest.mark.parametrize("schema", SCHEMAS)
async def test_json_schema_mode_answers_a_valid_instance(client: httpx2.AsyncClient, schema: dict[str, Any]) -> None:
    """response_format json_schema: the content is valid against the schema."""
    response_format = {"type": "json_schema", "json_schema": {"name": "out", "strict": True, "schema": schema}}
    answer = (await client.post("/chat/completions", json=chat(response_format=response_format))).json()
    content = json.loads(answer["choices"][0]["message"]["content"])
    jsonschema.validate(content, schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("schema", SCHEMAS)
def test_generated_instances_validate_against_their_schema(schema: dict[str, Any]) -> None:
    """The minimal-instance generator satisfies required properties, enums, bounds, refs and formats."""
    jsonschema.validate(instance_of(schema), schema, format_checker=jsonschema.FormatChecker())


async def test_reasoning_models_add_reasoning_within_completion_tokens(client: httpx2.AsyncClient) -> None:
    """A reasoning request adds reasoning text and reasoning_tokens, counted in completion_tokens."""
    body = chat("anthropic/claude-haiku-4.5", reasoning={"effort": "medium"})
    answer = (await client.post("/chat/completions", json=body)).json()
    message, usage = answer["choices"][0]["message"], answer["usage"]
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    assert message["reasoning"] and reasoning == len(pieces(message["reasoning"])) == 16
    assert usage["completion_tokens"] == reasoning + len(pieces(message["content"]))
    assert message["reasoning_details"][0]["type"] == "reasoning.text"


async def test_reasoning_is_only_for_models_that_support_it(client: httpx2.AsyncClient) -> None:
    """gpt-4o-mini ignores a reasoning request; deepseek-r1 always reasons (mandatory)."""
    plain = (await client.post("/chat/completions", json=chat(reasoning={"effort": "high"}))).json()
    r1 = (await client.post("/chat/completions", json=chat("deepseek/deepseek-r1"))).json()
    assert plain["choices"][0]["message"]["reasoning"] is None
    assert plain["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    assert r1["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0


async def test_excluded_reasoning_is_billed_but_not_shown(client: httpx2.AsyncClient) -> None:
    """reasoning.exclude hides the text; the tokens are still in the usage."""
    body = chat("anthropic/claude-haiku-4.5", reasoning={"effort": "low", "exclude": True})
    answer = (await client.post("/chat/completions", json=body)).json()
    assert answer["choices"][0]["message"]["reasoning"] is None
    assert answer["usage"]["completion_tokens_details"]["reasoning_tokens"] == 8


async def test_streamed_reasoning_arrives_before_the_content(client: httpx2.AsyncClient) -> None:
    """Reasoning deltas come first, then content deltas."""
    body = chat("anthropic/claude-haiku-4.5", reasoning={"effort": "minimal"}, stream=True)
    raw = (await client.post("/chat/completions", json=body)).content
    deltas = [
        json.loads(line[6:])["choices"][0]["delta"] for line in raw.decode().split("\n\n") if line.startswith("data: {")
    ]
    kinds = ["reasoning" if d.get("reasoning") else "content" for d in deltas[:-2]]
    assert kinds == sorted(kinds, key=lambda kind: kind != "reasoning")
    assert kinds.count("reasoning") == 4


async def test_prompt_tokens_follow_the_documented_rule(client: httpx2.AsyncClient) -> None:
    """3 per request + tools JSON/4 + per message 4 + ceil(bytes/4) + 85 per image."""
    content = [{"type": "text", "text": "Describe ✓"}, {"type": "image_url", "image_url": {"url": "data:x"}}]
    body = chat(tools=[SEARCH])
    body["messages"].append({"role": "user", "content": content})
    usage = (await client.post("/chat/completions", json=body)).json()["usage"]
    tools_json = json.dumps([SEARCH], separators=(",", ":"), sort_keys=True)
    expected = 3 + (len(tools_json.encode()) + 3) // 4
    expected += 4 + (len(b"You are a helpful assistant") + 3) // 4
    expected += 4 + (len(b"Say hi in Portuguese") + 3) // 4
    expected += 4 + (len("Describe ✓".encode()) + 3) // 4 + 85
    assert usage["prompt_tokens"] == expected
    assert count_prompt(body["messages"], [SEARCH]).total == expected


def test_the_token_rule_is_bounded_by_bytes_plus_allowances() -> None:
    """UTF-8 bytes + 4 per message + 3 + 85 per image never undercount the sandbox's prompt tokens."""
    for text in ("", "a", "héllo wörld", "数" * 33, "x" * 1001):
        messages = [{"role": "user", "content": text}, {"role": "assistant", "content": text * 2}]
        bound = 3 + sum(4 + len(str(m["content"]).encode()) for m in messages)
        assert count_prompt(messages, None).total <= bound


def test_generated_text_splits_into_pieces_that_join_back() -> None:
    """Completion pieces (one token each) always join back to the text."""
    for text in ("Hello there.", '{"a":"b c"}', "  lead and trail  ", "abcdefghijklmnop"):
        assert "".join(pieces(text)) == text
