"""One attempt: the body sent upstream, the streamed answer assembled, and the answer's JSON check."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from modelyard.errors import SchemaValidationError
from modelyard.openrouter import ChatRequest, ChatResponse, OpenRouterClient
from modelyard.openrouter.catalog_schemas import ModelList
from modelyard.routing.attempt import check_json, stream_model, wire_request
from modelyard.routing.catalog import CatalogEntry
from modelyard.routing.request import RouteRequest
from modelyard.routing.result import RouteResult
from modelyard.routing.router import Router
from modelyard.settings import Settings
from modelyard.store import SQLiteStore
from tests.conftest import shared_fixture
from tests.routing.catalog_factory import GPT_4O_MINI, catalog, model, small_catalog

BASE_URL = "https://openrouter.test/api/v1"
KEY = "sk-or-v1-test"
CODEX = "openai/gpt-5.2-codex"
GEMINI = "google/gemini-3.1-flash-lite-preview"


def _ask(**fields: Any) -> RouteRequest:
    return RouteRequest(messages=[{"role": "user", "content": "hi"}], **fields)


def _entry(params: tuple[str, ...], model_id: str = CODEX) -> CatalogEntry:
    return catalog([model(model_id, params=params)]).entries[model_id]


def _interactions(name: str) -> list[dict[str, Any]]:
    """The interactions of one recording (skips the test when the shared fixtures are absent)."""
    return list(yaml.safe_load(shared_fixture("recordings", name).read_text())["interactions"])


def _echoed_assistant(interaction: dict[str, Any]) -> dict[str, Any]:
    """The assistant turn a recorded follow-up request sends back."""
    messages = json.loads(interaction["request"]["body"])["messages"]
    return next(m for m in messages if m["role"] == "assistant")


def _replaying(interaction: dict[str, Any]) -> httpx2.MockTransport:
    response = interaction["response"]
    headers = {name: values[0] for name, values in (response.get("headers") or {}).items()}
    return httpx2.MockTransport(
        lambda _: httpx2.Response(response["code"], headers=headers, content=response["body"].encode())
    )


def _sse(*deltas: dict[str, Any], finish: str = "stop", native: str = "end_turn") -> httpx2.MockTransport:
    """A stream of one chunk per delta, then the finish chunk with usage, as OpenRouter frames it."""
    head = {"id": "gen-1-abc", "object": "chat.completion.chunk", "created": 1_777_000_000, "model": "lab/m"}
    chunks = [{**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    last = {"index": 0, "delta": {"content": ""}, "finish_reason": finish, "native_finish_reason": native}
    chunks.append({**head, "choices": [last], "usage": {"prompt_tokens": 3, "completion_tokens": 5}})
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    headers = {"content-type": "text/event-stream"}
    return httpx2.MockTransport(lambda _: httpx2.Response(200, headers=headers, content=body.encode()))


async def _streamed(transport: httpx2.MockTransport, body: ChatRequest | None = None) -> ChatResponse:
    """The answer `stream_model` assembles from what `transport` streams."""
    body = body or ChatRequest(model="lab/m", messages=[{"role": "user", "content": "hi"}])
    async with OpenRouterClient(KEY, base_url=BASE_URL, transport=transport) as client:
        items = [item async for item in stream_model(client, body)]
    answer = items[-1]
    assert isinstance(answer, ChatResponse)
    return answer


async def _routed(
    tmp_path: Path, row: dict[str, Any], answer: Callable[[dict[str, Any]], httpx2.Response], request: RouteRequest
) -> tuple[RouteResult, list[dict[str, Any]]]:
    """`request` routed through a Router whose catalog is `row` alone; its result and the bodies it posted."""
    sent: list[dict[str, Any]] = []

    def upstream(http: httpx2.Request) -> httpx2.Response:
        if http.url.path.endswith("/models"):
            return httpx2.Response(200, json={"data": [row]})
        if http.url.path.endswith("/chat/completions"):
            sent.append(json.loads(http.content))
            return answer(sent[-1])
        return httpx2.Response(404, json={"error": {"code": 404, "message": "not here"}})

    settings = Settings(openrouter_api_key=KEY, openrouter_base_url=BASE_URL, store=f"sqlite:///{tmp_path / 'l.db'}")
    async with OpenRouterClient(KEY, base_url=BASE_URL, transport=httpx2.MockTransport(upstream)) as client:
        store = SQLiteStore(tmp_path / "l.db")
        try:
            result = await Router(client, store, settings).execute(request)
        finally:
            await store.aclose()
    return result, sent


# --------------------------------------------------------------------------- the body sent


def test_a_model_that_lists_only_max_completion_tokens_gets_its_cap_as_max_completion_tokens() -> None:
    """OpenRouter drops a parameter the model does not list (reference §3.1): the cap must be one it lists."""
    body = wire_request(_ask(), _entry(("max_completion_tokens", "tools")), 4000).to_body()
    assert body["max_completion_tokens"] == 4000
    assert "max_tokens" not in body


@pytest.mark.parametrize(
    "params",
    [("max_tokens", "max_completion_tokens"), ("max_tokens",), ("temperature",), ()],
    ids=["both", "max_tokens only", "neither", "none listed"],
)
def test_any_other_model_gets_its_cap_as_max_tokens(params: tuple[str, ...]) -> None:
    """A model that lists `max_tokens`, or neither parameter, is capped with `max_tokens` as before."""
    body = wire_request(_ask(), _entry(params), 4000).to_body()
    assert body["max_tokens"] == 4000
    assert "max_completion_tokens" not in body


def test_the_model_sent_is_the_entrys_wire_id_with_its_routing_variant() -> None:
    """A `:floor` entry is sent as asked, variant and all."""
    entry = small_catalog().entries[GPT_4O_MINI]
    floor = CatalogEntry(entry.info, entry.quality, entry.quality_source, entry.tier, variant=":floor")
    assert wire_request(_ask(), floor, 16).model == f"{GPT_4O_MINI}:floor"


def test_a_price_cap_is_sent_as_provider_max_price_and_none_sends_no_provider_object() -> None:
    """`provider.max_price` exactly as given (decimal strings); without one the body has no `provider` at all."""
    entry = small_catalog().entries[GPT_4O_MINI]
    caps = {"prompt": "0.15", "completion": "0.6", "request": "0"}
    assert wire_request(_ask(), entry, 16, max_price=caps).to_body()["provider"] == {"max_price": caps}
    assert "provider" not in wire_request(_ask(), entry, 16).to_body()


def test_every_snapshot_model_that_lists_a_cap_parameter_is_sent_one_it_lists() -> None:
    """Across the real August 2026 catalog (six models list only `max_completion_tokens`)."""
    rows = ModelList.model_validate_json(shared_fixture("models-2026-08-19.json").read_bytes()).data
    caps = {"max_tokens", "max_completion_tokens"}
    capped = [row for row in rows if caps & set(row.supported_parameters)]
    assert {row.id for row in capped if "max_tokens" not in row.supported_parameters} == {
        "openai/gpt-3.5-turbo-0613",
        "openai/gpt-5.1-codex",
        "openai/gpt-5.1-codex-max",
        "openai/gpt-5.1-codex-mini",
        "openai/gpt-5.2-chat",
        CODEX,
    }
    entries = catalog(capped).entries
    for row in capped:
        sent = caps & set(wire_request(_ask(), entries[row.id], 9).to_body())
        assert len(sent) == 1 and sent <= set(row.supported_parameters), row.id


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_the_router_posts_a_codex_models_cap_as_max_completion_tokens(tmp_path: Path, stream: bool) -> None:
    """End to end, both attempt paths: the body posted for a codex model carries the reserved cap in the
    parameter it lists."""
    row = model(CODEX, prompt="0.00000125", completion="0.00001", params=("max_completion_tokens", "tools"))
    answer = {
        "id": "gen-1-abc",
        "model": CODEX,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "cost": 0.00001},
    }

    def reply(body: dict[str, Any]) -> httpx2.Response:
        if not body.get("stream"):
            return httpx2.Response(200, json=answer)
        chunk = {**answer, "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
        content = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=content)

    request = _ask(model=CODEX, max_tokens=500, cache="off", stream=stream)
    result, sent = await _routed(tmp_path, row.model_dump(mode="json"), reply, request)
    assert result.content == "hi"
    assert [(b.get("max_completion_tokens"), "max_tokens" in b) for b in sent] == [(500, False)]


# --------------------------------------------------------------------------- the streamed answer


@pytest.mark.anyio
async def test_a_streamed_gemini_tool_call_is_assembled_with_what_the_next_turn_sends_back() -> None:
    """gemini-tool_streaming.yaml: the thought signature (first delta's `reasoning_details`), the finish
    chunk's `native_finish_reason` and the chunks' `created` survive assembly; the signature is exactly
    what the recorded follow-up request sends back on the assistant turn."""
    first, follow_up = _interactions("gemini-tool_streaming.yaml")[:2]
    body = ChatRequest.model_validate(json.loads(first["request"]["body"]))
    answer = await _streamed(_replaying(first), body)
    choice, echoed = answer.choices[0], _echoed_assistant(follow_up)
    assert choice.message.tool_calls and choice.message.tool_calls[0].id == echoed["tool_calls"][0]["id"]
    assert choice.message.reasoning_details == echoed["reasoning_details"]
    assert (choice.finish_reason, choice.native_finish_reason) == ("tool_calls", "STOP")
    assert answer.created == 1777319826


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["gemini-simple", "gemini-tool", "gemini-multi_tool"])
async def test_a_streamed_answer_keeps_the_reasoning_details_finish_and_time_a_whole_one_has(name: str) -> None:
    """Each Gemini recording streamed and whole: the assembled answer has the same fields set."""
    streamed = await _streamed(_replaying(_interactions(f"{name}_streaming.yaml")[0]))
    whole_interaction = _interactions(f"{name}.yaml")[0]
    async with OpenRouterClient(KEY, base_url=BASE_URL, transport=_replaying(whole_interaction)) as client:
        whole = await client.chat(ChatRequest.model_validate(json.loads(whole_interaction["request"]["body"])))
    assert streamed.created is not None and whole.created is not None
    for answer in (streamed, whole):
        choice = answer.choices[0]
        assert choice.native_finish_reason == "STOP"
        assert choice.message.reasoning_details and choice.message.reasoning_details[0]["type"] == "reasoning.encrypted"
        assert choice.message.reasoning_details[0]["format"] == "google-gemini-v1"


@pytest.mark.anyio
async def test_reasoning_fragments_of_one_block_join_into_one_detail_with_its_late_signature() -> None:
    """Anthropic thinking as OpenRouter streams it: the text in pieces sharing an `index`, the signature in
    a last text-less fragment (after the answer text has begun); a second block has the next `index`."""
    fmt = {"type": "reasoning.text", "format": "anthropic-claude-v1"}
    answer = await _streamed(
        _sse(
            {"reasoning": "Let", "reasoning_details": [{**fmt, "text": "Let", "index": 0}]},
            {"reasoning": " me add.", "reasoning_details": [{**fmt, "text": " me add.", "index": 0}]},
            {"content": "4"},
            {"reasoning_details": [{**fmt, "signature": "EvgC", "index": 0}]},
            {"reasoning_details": [{**fmt, "text": "Done.", "index": 1, "signature": None}]},
            {"reasoning_details": [{**fmt, "signature": "Ekg", "index": 1}]},
        )
    )
    message = answer.choices[0].message
    assert message.content == "4" and message.reasoning == "Let me add."
    assert message.reasoning_details == [
        {**fmt, "text": "Let me add.", "index": 0, "signature": "EvgC"},
        {**fmt, "text": "Done.", "index": 1, "signature": "Ekg"},
    ]
    assert (answer.created, answer.choices[0].native_finish_reason) == (1_777_000_000, "end_turn")


@pytest.mark.anyio
async def test_summaries_join_but_whole_blocks_that_share_an_index_stay_apart() -> None:
    """A summary streamed in pieces is one detail; two encrypted blocks at one `index` (one per tool call,
    another `id` each) and a detail without an `index` are kept as sent, in order."""
    summary = {"type": "reasoning.summary", "format": "openai-responses-v1", "index": 0}
    sealed = {"type": "reasoning.encrypted", "format": "google-gemini-v1", "index": 0}
    loose = {"type": "reasoning.text", "text": "aside"}
    answer = await _streamed(
        _sse(
            {"reasoning_details": [{**summary, "summary": "Adding "}]},
            {"reasoning_details": [{**summary, "summary": "two numbers."}, {**sealed, "data": "QUJD", "id": "t1"}]},
            {"reasoning_details": [{**sealed, "data": "REVG", "id": "t2"}, loose]},
        )
    )
    assert answer.choices[0].message.reasoning_details == [
        {**summary, "summary": "Adding two numbers."},
        {**sealed, "data": "QUJD", "id": "t1"},
        {**sealed, "data": "REVG", "id": "t2"},
        loose,
    ]


@pytest.mark.anyio
async def test_a_stream_without_reasoning_details_assembles_none() -> None:
    """No detail streamed, none made up: the message's `reasoning_details` stays unset, as a whole answer's."""
    answer = await _streamed(_sse({"content": "Olá"}, {"content": "!"}))
    assert answer.choices[0].message.content == "Olá!"
    assert answer.choices[0].message.reasoning_details is None


# --------------------------------------------------------------------------- what the caller gets back


@pytest.mark.anyio
@pytest.mark.parametrize("recording", ["gemini-tool.yaml", "gemini-tool_streaming.yaml"])
async def test_a_routed_gemini_tool_call_returns_the_reasoning_details_its_next_turn_sends_back(
    tmp_path: Path, recording: str
) -> None:
    """Interaction 2 of each recording sends the assistant turn back with its `reasoning_details`: an
    `execute` caller running a tool loop can do the same only if the result carries them."""
    first, follow_up = _interactions(recording)[:2]
    row = json.loads(shared_fixture("models-2026-08-19.json").read_text())["data"]
    recorded = first["response"]
    headers = {name: values[0] for name, values in (recorded.get("headers") or {}).items()}
    body = json.loads(first["request"]["body"])
    request = _ask(model=GEMINI, tools=body["tools"], cache="off", stream=bool(body.get("stream")))
    result, _ = await _routed(
        tmp_path,
        next(r for r in row if r["id"] == GEMINI),
        lambda _: httpx2.Response(200, headers=headers, content=recorded["body"].encode()),
        request.model_copy(update={"messages": body["messages"]}),
    )
    echoed = _echoed_assistant(follow_up)
    assert result.tool_calls and result.tool_calls[0]["id"] == echoed["tool_calls"][0]["id"]
    assert result.reasoning_details == echoed["reasoning_details"]


# --------------------------------------------------------------------------- the JSON check


def test_an_answer_nested_too_deeply_to_read_fails_the_check_not_the_server() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(SchemaValidationError, match="nested too deeply to read"):
        check_json(deep, {"type": "json_object"}, "m")


def test_an_answer_nested_too_deeply_to_check_against_a_recursive_schema_fails_the_check() -> None:
    recursive = {
        "type": "json_schema",
        "json_schema": {"name": "tree", "schema": {"type": "array", "items": {"$ref": "#"}}},
    }
    deep = json.dumps(json.loads("[" * 900 + "]" * 900))
    with pytest.raises(SchemaValidationError, match="nested too deeply to check"):
        check_json(deep, recursive, "m")


def test_an_answer_that_fits_the_schema_passes() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object", "required": ["a"]}}}
    check_json('{"a": 1}', schema, "m")
