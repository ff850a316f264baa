"""Injected faults: every kind, over real HTTP, and their count semantics."""

from __future__ import annotations

import itertools
import json
import time

import anyio
import httpx2
import pytest

from modelyard.sandbox import Sandbox
from tests.sandbox.conftest import chat, sse_blocks, sse_data

pytestmark = pytest.mark.anyio

MINI = "openai/gpt-4o-mini"


async def until_disconnected(sandbox: Sandbox) -> None:
    """Wait (polling, at most 2 s) until the last ledger entry says the client went away."""
    with anyio.fail_after(2):
        for _ in itertools.count():
            if sandbox.state.ledger[-1].client_disconnected:
                return
            await anyio.sleep(0.01)


async def test_the_next_two_requests_get_429_with_retry_after_then_it_vanishes(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """count=2: two 429s with Retry-After: 1, then a normal answer; failures are billed 0."""
    sandbox.state.faults.add(model=MINI, kind="rate_limit", count=2, retry_after=1)
    responses = [await client.post("/chat/completions", json=chat()) for _ in range(3)]
    assert [r.status_code for r in responses] == [429, 429, 200]
    assert responses[0].headers["retry-after"] == "1"
    error = responses[0].json()["error"]
    assert (error["code"], error["message"], error["metadata"]["provider_name"]) == (
        429,
        "Provider returned error",
        "OpenAI",
    )
    assert [(e.status, e.fault, e.cost) for e in sandbox.state.ledger[:2]] == [(429, "rate_limit", 0)] * 2
    assert len(sandbox.state.faults) == 0


async def test_a_platform_rate_limit_carries_the_x_ratelimit_headers(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """platform=true: X-RateLimit-* headers, echoed in metadata.headers, the reset in epoch ms."""
    sandbox.state.faults.add(model=MINI, kind="rate_limit", count=1, retry_after=2, platform=True)
    before = time.time()
    response = await client.post("/chat/completions", json=chat())
    echoed = response.json()["error"]["metadata"]["headers"]
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert echoed["X-RateLimit-Reset"] == response.headers["x-ratelimit-reset"]
    assert isinstance(echoed["X-RateLimit-Reset"], str)
    assert before * 1000 + 1500 < int(echoed["X-RateLimit-Reset"]) < time.time() * 1000 + 2500
    assert response.json()["error"]["message"].startswith("Rate limit exceeded: ")


@pytest.mark.parametrize(
    ("kind", "params", "status", "message"),
    [
        ("server_error", {}, 500, "Internal Server Error"),
        ("server_error", {"status": 529}, 529, "Internal Server Error"),
        ("bad_gateway", {}, 502, "Provider returned error"),
        ("unavailable", {"retry_after": 3}, 503, "Service temporarily unavailable"),
        ("timeout", {}, 408, "Operation timed out. Please try again later."),
        ("payload_too_large", {}, 413, "Request payload too large"),
        ("server_error", {"message": "custom words"}, 500, "custom words"),
    ],
)
async def test_status_faults_answer_with_their_status_and_envelope(
    sandbox: Sandbox, client: httpx2.AsyncClient, kind: str, params: dict[str, object], status: int, message: str
) -> None:
    """Each status fault is the documented error envelope with HTTP status == error.code."""
    sandbox.state.faults.add(model=MINI, kind=kind, count=1, **params)
    response = await client.post("/chat/completions", json=chat())
    body = response.json()
    assert response.status_code == body["error"]["code"] == status
    assert body["error"]["message"] == message
    assert body["user_id"].startswith("user_")
    if kind == "bad_gateway":
        assert set(body["error"]["metadata"]) == {"raw", "provider_name"}
    if kind == "unavailable":
        assert response.headers["retry-after"] == "3"


async def test_moderation_is_a_403_with_moderation_metadata(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """403 with reasons, flagged_input (at most 100 chars), provider_name and model_slug."""
    sandbox.state.faults.add(model="anthropic/claude-sonnet-4.5", kind="moderation", count=1)
    response = await client.post("/chat/completions", json=chat("anthropic/claude-sonnet-4.5", text="bad " * 100))
    metadata = response.json()["error"]["metadata"]
    assert response.status_code == 403
    assert metadata["reasons"] and metadata["provider_name"] == "Anthropic"
    assert metadata["model_slug"] == "anthropic/claude-4.5-sonnet-20250929"
    assert len(metadata["flagged_input"]) <= 100 and "..." in metadata["flagged_input"]


async def test_hang_never_answers_and_the_ledger_notes_the_client_leaving(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """A hung request times out on the client; the sandbox records that the client went away."""
    sandbox.state.faults.add(model=MINI, kind="hang", count=1)
    with pytest.raises(httpx2.ReadTimeout):
        await client.post("/chat/completions", json=chat(), timeout=0.2)
    await until_disconnected(sandbox)
    assert sandbox.state.ledger[-1].fault == "hang"
    assert (await client.post("/chat/completions", json=chat())).status_code == 200


async def test_reset_drops_the_connection_before_any_response(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """The client sees a connection error, not an HTTP answer."""
    sandbox.state.faults.add(model=MINI, kind="reset", count=1)
    with pytest.raises((httpx2.ReadError, httpx2.RemoteProtocolError)):
        await client.post("/chat/completions", json=chat())
    assert sandbox.state.ledger[-1].fault == "reset"
    assert sandbox.state.ledger[-1].cost == 0


async def test_reset_after_chunks_breaks_a_stream_midway(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """For a stream, reset with after_chunks sends that many events, then an RST."""
    sandbox.state.faults.add(model=MINI, kind="reset", count=1, after_chunks=2)
    received = b""
    with pytest.raises((httpx2.ReadError, httpx2.RemoteProtocolError)):
        async with client.stream("POST", "/chat/completions", json=chat(stream=True)) as response:
            async for part in response.aiter_bytes():
                received += part
    assert len(sse_data(received)) <= 2


async def test_an_error_inside_a_200_body_follows_the_keepalive(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """error_in_200: status 200, whitespace, then a top-level error object."""
    sandbox.state.faults.add(model=MINI, kind="error_in_200", count=1)
    response = await client.post("/chat/completions", json=chat())
    assert response.status_code == 200
    assert response.content.startswith(b"\n         \n{")
    assert response.json()["error"]["code"] == 502
    assert "choices" not in response.json()


async def test_a_mid_stream_error_ends_the_stream_with_finish_reason_error(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """N content events, then the §5.3 error event; no usage and no [DONE]."""
    sandbox.state.faults.add(model=MINI, kind="mid_stream_error", count=1, after_chunks=3, status=429)
    raw = (await client.post("/chat/completions", json=chat(stream=True))).content
    chunks = sse_data(raw)
    assert len(chunks) == 4
    last = chunks[-1]
    assert list(last) == ["id", "object", "created", "model", "provider", "error", "choices"]
    assert last["error"]["code"] == 429
    assert last["error"]["metadata"]["error_type"] == "rate_limit_exceeded"
    assert last["choices"] == [
        {"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "error"}
    ]
    assert b"[DONE]" not in raw
    assert sandbox.state.ledger[-1].cost == 0


async def test_a_mid_stream_error_without_streaming_is_an_error_in_200(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """Non-streamed, mid_stream_error behaves like error_in_200."""
    sandbox.state.faults.add(model=MINI, kind="mid_stream_error", count=1)
    response = await client.post("/chat/completions", json=chat())
    assert response.status_code == 200 and "error" in response.json()


async def test_a_truncated_stream_closes_without_finish_or_done(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """Some events, then the connection closes: no finish_reason, no usage, no [DONE]."""
    sandbox.state.faults.add(model=MINI, kind="truncated_stream", count=2, after_chunks=2)
    received = b""
    with pytest.raises(httpx2.RemoteProtocolError):
        async with client.stream("POST", "/chat/completions", json=chat(stream=True)) as response:
            async for part in response.aiter_bytes():
                received += part
    chunks = sse_data(received)
    assert len(chunks) == 2 and all(c["choices"][0]["finish_reason"] is None for c in chunks)
    assert b"[DONE]" not in received
    with pytest.raises(httpx2.RemoteProtocolError):
        await client.post("/chat/completions", json=chat())


async def test_malformed_json_is_a_200_that_does_not_parse(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """malformed_json: status 200 whose body (or data event) is not JSON."""
    sandbox.state.faults.add(model=MINI, kind="malformed_json", count=2)
    plain = await client.post("/chat/completions", json=chat())
    streamed = await client.post("/chat/completions", json=chat(stream=True))
    assert plain.status_code == streamed.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain.content)
    broken = [b for b in sse_blocks(streamed.content) if b.startswith("data: {")]
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken[-1][6:])


async def test_latency_delays_a_successful_answer(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """latency_ms adds a delay and combines with success (also for streams, before the first token)."""
    sandbox.state.faults.add(model=MINI, kind="latency", count=2, latency_ms=60)
    started = time.monotonic()
    plain = await client.post("/chat/completions", json=chat())
    middle = time.monotonic()
    streamed = await client.post("/chat/completions", json=chat(stream=True))
    ended = time.monotonic()
    fast_start = time.monotonic()
    await client.post("/chat/completions", json=chat())
    assert plain.status_code == streamed.status_code == 200
    assert middle - started >= 0.06 and ended - middle >= 0.06
    assert time.monotonic() - fast_start < 0.06
    assert sandbox.state.ledger[0].cost > 0


async def test_a_latency_fault_combines_with_an_error_fault(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """Latency and a status fault on the same model: the error arrives after the delay."""
    sandbox.state.faults.add(model=MINI, kind="latency", count=1, latency_ms=50)
    sandbox.state.faults.add(model=MINI, kind="server_error", count=1)
    started = time.monotonic()
    response = await client.post("/chat/completions", json=chat())
    assert response.status_code == 500
    assert time.monotonic() - started >= 0.05


async def test_a_star_fault_hits_every_model_and_a_model_fault_only_its_model(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """model "*" matches all; a model id (or its canonical slug) matches only that model."""
    sandbox.state.faults.add(model="anthropic/claude-4.5-haiku-20251001", kind="server_error", count=1)
    other = await client.post("/chat/completions", json=chat())
    haiku = await client.post("/chat/completions", json=chat("anthropic/claude-haiku-4.5"))
    sandbox.state.faults.add(kind="timeout", count=2)
    everyone = [await client.post("/chat/completions", json=chat(m)) for m in (MINI, "qwen/qwen3-32b")]
    assert (other.status_code, haiku.status_code) == (200, 500)
    assert [r.status_code for r in everyone] == [408, 408]


async def test_a_fault_without_count_stays_until_cleared(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """count None: every request hits it until faults.clear()."""
    sandbox.state.faults.add(model=MINI, kind="bad_gateway")
    statuses = [(await client.post("/chat/completions", json=chat())).status_code for _ in range(3)]
    sandbox.state.faults.clear()
    assert statuses == [502, 502, 502]
    assert (await client.post("/chat/completions", json=chat())).status_code == 200


async def test_faults_are_set_and_cleared_through_the_control_api(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """POST /_sandbox/faults arms a fault (bad kinds are 400); DELETE clears them."""
    async with httpx2.AsyncClient(base_url=sandbox.control_url) as control:
        armed = await control.post(
            "/faults", json={"model": MINI, "kind": "rate_limit", "count": 1, "retry_after": 0.05}
        )
        bad = await control.post("/faults", json={"kind": "volcano"})
        hit = await client.post("/chat/completions", json=chat())
        await control.post("/faults", json={"kind": "server_error"})
        listed = (await control.get("/state")).json()["faults"]
        cleared = await control.delete("/faults")
    assert armed.status_code == 201 and armed.json()["fault"]["count"] == 1
    assert bad.status_code == 400 and "volcano" in bad.json()["error"]["message"]
    assert hit.status_code == 429 and hit.headers["retry-after"] == "0.05"
    assert [f["kind"] for f in listed] == ["server_error"]
    assert cleared.json() == {"cleared": 1}
    assert (await client.post("/chat/completions", json=chat())).status_code == 200


async def test_a_streaming_client_that_leaves_is_recorded_and_not_billed(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """Closing a slow stream midway marks the ledger entry client_disconnected; nothing is billed."""
    sandbox.state.config.stream_chunk_delay_ms = 20
    async with client.stream("POST", "/chat/completions", json=chat(stream=True)) as response:
        async for _ in response.aiter_bytes():
            break
    await until_disconnected(sandbox)
    assert sandbox.state.ledger[-1].cost == 0
    assert sandbox.state.billed_total() == 0


async def test_a_slow_non_streamed_answer_sends_its_headers_and_a_keepalive_before_its_body(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """As OpenRouter: the generation id is known at once; the body (the same JSON) follows the latency."""
    sandbox.state.config.default_latency_ms = 300
    started = time.monotonic()
    async with client.stream("POST", "/chat/completions", json=chat()) as response:
        headed = time.monotonic() - started
        generation_id = response.headers["x-generation-id"]
        body = await response.aread()
    assert response.status_code == 200 and headed < 0.25 and time.monotonic() - started >= 0.3
    assert body.startswith(b"\n         \n{")
    assert json.loads(body)["id"] == generation_id
    assert sandbox.state.ledger[-1].cost > 0 and sandbox.state.generations.get(generation_id) is not None


async def test_a_slow_non_streamed_answer_is_billed_even_when_the_client_left_after_the_headers(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """The client stops waiting after the headers; the answer is still produced, billed and on record."""
    sandbox.state.config.default_latency_ms = 200
    async with client.stream("POST", "/chat/completions", json=chat()) as response:
        generation_id = response.headers["x-generation-id"]
    assert sandbox.state.generations.get(generation_id) is None  # not ready yet
    with anyio.fail_after(3):
        while sandbox.state.generations.get(generation_id) is None:  # noqa: ASYNC110 (set by the sandbox's own task)
            await anyio.sleep(0.02)
    entry = sandbox.state.ledger[-1]
    assert entry.generation_id == generation_id and entry.cost > 0


async def test_with_headers_first_off_a_slow_answer_arrives_whole_after_the_latency(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    sandbox.state.config.update({"default_latency_ms": 200, "headers_first": False})
    started = time.monotonic()
    async with client.stream("POST", "/chat/completions", json=chat()) as response:
        headed = time.monotonic() - started
        await response.aread()
    assert response.status_code == 200 and headed >= 0.2
    with pytest.raises(ValueError, match="true or false"):
        sandbox.state.config.update({"headers_first": "false"})
