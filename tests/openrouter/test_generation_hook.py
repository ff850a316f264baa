"""`on_generation`: a 200 answer's generation id is told as soon as its headers arrive, on both paths."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx2
import pytest

from modelyard import errors
from modelyard.openrouter import ChatRequest, OpenRouterClient
from modelyard.sandbox import Sandbox

pytestmark = pytest.mark.anyio

KEY = "sk-or-v1-sandbox"
MINI = "openai/gpt-4o-mini"
REQUEST = ChatRequest(model=MINI, messages=[{"role": "user", "content": "hi"}], max_tokens=8)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.running(api_key=KEY) as sb:
        yield sb


@pytest.fixture(params=["direct", "httpx2"])
async def client(request: pytest.FixtureRequest, sandbox: Sandbox) -> AsyncIterator[OpenRouterClient]:
    """The default transport (chat goes straight through aiohttp) and plain httpx2's."""
    transport = httpx2.AsyncHTTPTransport() if request.param == "httpx2" else None
    async with OpenRouterClient(KEY, base_url=sandbox.base_url, transport=transport, timeout=0.3) as made:
        yield made


async def test_a_200_answer_tells_its_generation_id(client: OpenRouterClient) -> None:
    told: list[str] = []
    answer = await client.chat(REQUEST, on_generation=told.append)
    streamed = [chunk async for chunk in client.stream_chat(REQUEST, on_generation=told.append)]
    assert told == [answer.id, streamed[0].id] and all(t.startswith("gen-") for t in told)


async def test_the_id_is_told_before_a_slow_body_times_out(sandbox: Sandbox, client: OpenRouterClient) -> None:
    """The headers (and the id) come at once; the body after the latency, later than the read timeout."""
    sandbox.state.faults.add(model=MINI, kind="latency", count=1, latency_ms=600)
    told: list[str] = []
    with anyio.fail_after(10), pytest.raises(errors.UpstreamTimeoutError):
        await client.chat(REQUEST, on_generation=told.append)
    assert told == [sandbox.state.ledger[-1].generation_id]


async def test_an_error_status_tells_nothing(sandbox: Sandbox, client: OpenRouterClient) -> None:
    sandbox.state.faults.add(model=MINI, kind="rate_limit", count=2, retry_after=1)
    told: list[str] = []
    with pytest.raises(errors.RateLimitError):
        await client.chat(REQUEST, on_generation=told.append)
    with pytest.raises(errors.RateLimitError):
        async for _ in client.stream_chat(REQUEST, on_generation=told.append):
            pass
    assert told == []
