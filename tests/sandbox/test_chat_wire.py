"""`POST /chat/completions` bytes, compared with OpenRouter's recorded traffic."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx2
import pytest
import yaml

from modelyard.sandbox import Sandbox
from tests.conftest import shared_fixture
from tests.sandbox.conftest import chat, sse_blocks, sse_data

pytestmark = pytest.mark.anyio

SIMPLE = ["openai-simple.yaml", "anthropic-simple.yaml", "gemini-simple.yaml"]
TOOLS = ["openai-tool.yaml", "anthropic-tool.yaml", "gemini-tool.yaml"]
STREAMS = ["openai-simple_streaming.yaml", "anthropic-simple_streaming.yaml", "gemini-simple_streaming.yaml"]
TOOL_STREAMS = ["openai-tool_streaming.yaml", "anthropic-tool_streaming.yaml", "gemini-tool_streaming.yaml"]
GEN_ID = re.compile(r"^gen-\d{10}-[0-9A-Za-z]{20}$")


def interactions(name: str) -> list[dict[str, Any]]:
    """The request/response pairs of one go-vcr recording."""
    return list(yaml.safe_load(shared_fixture("recordings", name).read_text())["interactions"])


def shape(value: Any, path: str = "$") -> list[str]:
    """Every key path in document order, with the JSON type of each leaf."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in [f"{path}.{key}", *shape(item, f"{path}.{key}")]]
    if isinstance(value, list):
        return shape(value[0], f"{path}[]") if value else []
    kind = "null" if value is None else "number" if isinstance(value, int | float) else type(value).__name__
    return [f"{path}:{kind}"]


def without(paths: list[str], *fragments: str) -> list[str]:
    return [p for p in paths if not any(fragment in p for fragment in fragments)]


async def test_non_streamed_bodies_start_with_the_keepalive_whitespace(client: httpx2.AsyncClient) -> None:
    """The body is `"\\n         \\n"` then compact JSON, as every recorded body."""
    response = await client.post("/chat/completions", json=chat())
    assert response.content.startswith(b"\n         \n{")
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.content)["object"] == "chat.completion"


@pytest.mark.parametrize("name", SIMPLE + TOOLS)
async def test_non_streamed_bodies_have_the_recorded_keys_in_the_recorded_order(
    client: httpx2.AsyncClient, name: str
) -> None:
    """Replaying a recorded request gives a body with the recording's key paths, order and types."""
    for interaction in interactions(name):
        recorded = json.loads(interaction["response"]["body"])
        response = await client.post("/chat/completions", content=interaction["request"]["body"])
        ours = response.json()
        # Gemini attaches encrypted reasoning to every answer; the sandbox only does when reasoning.
        expected = without(shape(recorded), "reasoning_details")
        assert shape(ours) == expected, name
        assert ours["model"] == recorded["model"]
        assert response.content.startswith(b"\n         \n{")


async def test_the_recorded_openai_body_and_ours_match_byte_for_byte_apart_from_values(
    client: httpx2.AsyncClient,
) -> None:
    """With ids, times, texts and numbers masked, the OpenAI body is the recorded string."""
    interaction = interactions("openai-simple.yaml")[0]
    response = await client.post("/chat/completions", content=interaction["request"]["body"])

    def mask(text: str) -> str:
        text = re.sub(r'"(id|content)":"(?:[^"\\]|\\.)*"', r'"\1":"…"', text)
        return re.sub(r"(?<=[:,])-?\d+(\.\d+)?(e-?\d+)?(?=[,}])", "0", text)

    assert mask(response.text) == mask(interaction["response"]["body"])


async def test_answers_identify_the_generation_the_model_and_the_provider(client: httpx2.AsyncClient) -> None:
    """`id` is gen-<unix>-<20 base62>, echoed in X-Generation-Id; `model` is the canonical slug."""
    response = await client.post("/chat/completions", json=chat("anthropic/claude-sonnet-4.5"))
    body = response.json()
    assert GEN_ID.match(body["id"])
    assert response.headers["x-generation-id"] == body["id"]
    assert body["model"] == "anthropic/claude-4.5-sonnet-20250929"
    assert body["provider"] == "Anthropic"


def classify(chunk: dict[str, Any]) -> str:
    if "usage" in chunk:
        return "final"
    if chunk["choices"][0]["finish_reason"]:
        return "finish"
    delta = chunk["choices"][0]["delta"]
    if "tool_calls" in delta:
        return "tool_start" if "id" in delta["tool_calls"][0] else "tool_arguments"
    return "reasoning" if "reasoning" in delta else "content"


@pytest.mark.parametrize("name", STREAMS + TOOL_STREAMS)
async def test_streams_are_framed_like_the_recordings(client: httpx2.AsyncClient, name: str) -> None:
    """Processing comment, data events of the recorded shapes, finish, usage event, then [DONE]."""
    for interaction in interactions(name):
        recorded_raw = interaction["response"]["body"].encode("utf-8")
        async with client.stream("POST", "/chat/completions", content=interaction["request"]["body"]) as response:
            raw = await response.aread()
        assert response.headers["content-type"] == "text/event-stream"
        blocks = sse_blocks(raw)
        assert blocks[0] == ": OPENROUTER PROCESSING"
        assert blocks[-1] == "data: [DONE]"
        assert raw.endswith(b"data: [DONE]\n\n")
        recorded = {classify(chunk): shape(chunk) for chunk in sse_data(recorded_raw)}
        kinds = [classify(chunk) for chunk in sse_data(raw)]
        assert kinds[-2:] == ["finish", "final"]
        for chunk in sse_data(raw):
            kind = classify(chunk)
            if kind in recorded:
                assert shape(chunk) == recorded[kind], (name, kind)


async def test_tool_call_deltas_open_with_the_call_then_carry_argument_fragments(
    client: httpx2.AsyncClient,
) -> None:
    """The first tool delta has id, type, name and empty arguments; later ones only fragments."""
    request = interactions("anthropic-tool_streaming.yaml")[0]["request"]["body"]
    async with client.stream("POST", "/chat/completions", content=request) as response:
        chunks = sse_data(await response.aread())
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    first, rest = calls[0], calls[1:]
    assert list(first) == ["index", "id", "type", "function"]
    assert first["function"] == {"name": "weather", "arguments": ""}
    assert first["id"].startswith("call_")
    assert rest and all(
        list(call) == ["index", "function"] and list(call["function"]) == ["arguments"] for call in rest
    )
    arguments = json.loads("".join(call["function"]["arguments"] for call in rest))
    assert isinstance(arguments["location"], str)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"][0]["native_finish_reason"] == "tool_use"


async def test_a_stream_and_a_plain_answer_to_the_same_request_agree(client: httpx2.AsyncClient) -> None:
    """The streamed text joins to the non-streamed content, with the same token counts."""
    plain = (await client.post("/chat/completions", json=chat("openai/gpt-4.1-mini"))).json()
    async with client.stream("POST", "/chat/completions", json=chat("openai/gpt-4.1-mini", stream=True)) as r:
        chunks = sse_data(await r.aread())
    text = "".join(c["choices"][0]["delta"]["content"] or "" for c in chunks)
    assert text == plain["choices"][0]["message"]["content"]
    usage = chunks[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        plain["usage"]["prompt_tokens"],
        plain["usage"]["completion_tokens"],
    )
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"]  # same prompt again
    assert len({c["id"] for c in chunks}) == 1


async def test_the_same_request_gets_the_same_answer(client: httpx2.AsyncClient) -> None:
    """Content and token counts are a function of the request; another prompt gets another answer."""
    one = (await client.post("/chat/completions", json=chat(text="Tell me a fact"))).json()
    two = (await client.post("/chat/completions", json=chat(text="Tell me a fact"))).json()
    other = (await client.post("/chat/completions", json=chat(text="Tell me a joke"))).json()
    assert one["choices"] == two["choices"]
    assert one["usage"]["completion_tokens"] == two["usage"]["completion_tokens"]
    assert one["choices"][0]["message"]["content"] != other["choices"][0]["message"]["content"]
    assert 5 <= one["usage"]["completion_tokens"] <= 40


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 8, 13])
async def test_completion_tokens_never_exceed_max_tokens(client: httpx2.AsyncClient, limit: int) -> None:
    """Text, reasoning and tool calls are cut to max_tokens, with finish_reason "length"."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    bodies = [
        chat(max_tokens=limit),
        chat(max_completion_tokens=limit, stream=True),
        chat("anthropic/claude-haiku-4.5", max_tokens=limit, reasoning={"effort": "high"}),
        chat("openai/gpt-4o-mini", max_tokens=limit, tools=tools),
        chat("openai/gpt-4o-mini", max_tokens=limit, response_format={"type": "json_object"}),
    ]
    for body in bodies:
        response = await client.post("/chat/completions", json=body)
        if body.get("stream"):
            chunks = sse_data(response.content)
            usage, finish = chunks[-1]["usage"], chunks[-1]["choices"][0]["finish_reason"]
            assert sum(1 for c in chunks[:-2] if c["choices"][0]["delta"].get("content")) <= limit
        else:
            usage, finish = response.json()["usage"], response.json()["choices"][0]["finish_reason"]
        assert usage["completion_tokens"] <= limit
        assert finish in ("length", "stop", "tool_calls")
    truncated = (await client.post("/chat/completions", json=chat(max_tokens=1))).json()
    assert truncated["choices"][0]["finish_reason"] == "length"


async def test_a_missing_key_is_the_recorded_401(sandbox: Sandbox) -> None:
    """No Authorization header: 401 "No auth credentials found", exactly."""
    async with httpx2.AsyncClient() as anonymous:
        response = await anonymous.post(f"{sandbox.base_url}/chat/completions", json=chat())
    assert response.status_code == 401
    assert response.json() == {"error": {"message": "No auth credentials found", "code": 401}}


async def test_a_wrong_key_is_user_not_found(sandbox: Sandbox) -> None:
    """An unknown bearer key: 401 "User not found."."""
    async with httpx2.AsyncClient(headers={"Authorization": "Bearer sk-or-v1-wrong"}) as wrong:
        response = await wrong.post(f"{sandbox.base_url}/chat/completions", json=chat())
    assert response.json() == {"error": {"message": "User not found.", "code": 401}}


async def test_an_unknown_model_is_a_400_with_the_real_message(client: httpx2.AsyncClient) -> None:
    """`<id> is not a valid model ID`, with user_id, as OpenRouter answers."""
    response = await client.post("/chat/completions", json=chat("google/gemini-2.0-pro-exp-02-05:free"))
    body = response.json()
    assert response.status_code == 400
    assert body["error"] == {"message": "google/gemini-2.0-pro-exp-02-05:free is not a valid model ID", "code": 400}
    assert body["user_id"].startswith("user_")


async def test_deprecated_and_routing_fields_are_accepted_and_ignored(client: httpx2.AsyncClient) -> None:
    """usage, stream_options, transforms, route, provider and variants do not change the answer."""
    plain = (await client.post("/chat/completions", json=chat())).json()
    extras = {
        "usage": {"include": True},
        "stream_options": {"include_usage": True},
        "transforms": ["middle-out"],
        "route": "fallback",
        "provider": {"order": ["openai"]},
    }
    noisy = (await client.post("/chat/completions", json=chat("openai/gpt-4o-mini:nitro", **extras))).json()
    assert noisy["choices"] == plain["choices"]
    assert noisy["model"] == "openai/gpt-4o-mini"


async def test_a_legacy_prompt_is_answered_like_one_user_message(client: httpx2.AsyncClient) -> None:
    """`prompt` instead of `messages` works; neither is a 400."""
    answered = await client.post("/chat/completions", json={"model": "openai/gpt-4o-mini", "prompt": "hi"})
    missing = await client.post("/chat/completions", json={"model": "openai/gpt-4o-mini"})
    assert answered.status_code == 200
    assert missing.status_code == 400


async def test_prompts_beyond_the_context_window_are_refused(client: httpx2.AsyncClient) -> None:
    """Prompt plus max_tokens above context_length is OpenRouter's context-length 400."""
    body = chat("deepseek/deepseek-r1-distill-llama-70b", text="word " * 8000, max_tokens=100)
    response = await client.post("/chat/completions", json=body)
    assert response.status_code == 400
    assert "maximum context length is 8192 tokens" in response.json()["error"]["message"]


async def test_a_models_list_falls_back_when_the_first_model_fails(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """With `models`, a 429 on the first model is answered and billed by the next one."""
    sandbox.state.faults.add(model="openai/gpt-4o-mini", kind="rate_limit", count=1)
    body = chat("openai/gpt-4o-mini", models=["anthropic/claude-haiku-4.5"])
    answer = (await client.post("/chat/completions", json=body)).json()
    entry = sandbox.state.ledger[-1]
    assert answer["model"] == "anthropic/claude-4.5-haiku-20251001"
    assert (entry.requested_model, entry.served_model, entry.status) == (
        "openai/gpt-4o-mini",
        "anthropic/claude-haiku-4.5",
        200,
    )
    assert entry.failed_attempts == [{"model": "openai/gpt-4o-mini", "fault": "rate_limit", "status": 429}]
    assert entry.cost > 0


async def test_openrouter_auto_routes_to_a_real_model_deterministically(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """`openrouter/auto` answers with a catalog model (same pick each time) and records the router."""
    first = (await client.post("/chat/completions", json=chat("openrouter/auto"))).json()
    again = (await client.post("/chat/completions", json=chat("openrouter/auto"))).json()
    served = sandbox.state.catalog.get(first["model"])
    assert served is not None and not served.is_router
    assert first["model"] == again["model"]
    generation = (await client.get("/generation", params={"id": first["id"]})).json()["data"]
    assert generation["router"] == "openrouter/auto"
    assert sandbox.state.ledger[-1].requested_model == "openrouter/auto"
