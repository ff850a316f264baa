"""The client's connections, against the sandbox over loopback with the default transport.

Against OpenRouter a new connection is a new TLS handshake, tens of milliseconds before the answer.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import httpx2
import pytest
from aiohttp import web

from modelyard import errors
from modelyard.openrouter import ChatRequest, OpenRouterClient
from modelyard.sandbox import Sandbox, SandboxConfig
from tests.openrouter.raw_http import read_request

pytestmark = pytest.mark.anyio
KEY = "sk-or-v1-sandbox"
REQUEST = ChatRequest(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Tell me a story"}])


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    # Events a few ms apart, as a real model sends them.
    async with Sandbox.running(api_key=KEY, config=SandboxConfig(stream_chunk_delay_ms=3)) as sb:
        yield sb


async def test_plain_answers_in_a_row_share_one_connection(sandbox: Sandbox) -> None:
    """Five non-streamed answers: the sandbox accepts one connection."""
    async with OpenRouterClient(KEY, base_url=sandbox.base_url) as client:
        for _ in range(5):
            await client.chat(REQUEST)
    assert sandbox.state.connections == 1


async def test_a_stream_abandoned_midway_closes_its_connection_so_the_upstream_stops(sandbox: Sandbox) -> None:
    """Leaving a stream after its first chunk closes the connection; the next request opens another."""
    async with OpenRouterClient(KEY, base_url=sandbox.base_url) as client:
        await client.chat(REQUEST)
        stream = client.stream_chat(REQUEST)
        async for _ in stream:
            break
        await stream.aclose()
        await client.chat(REQUEST)
    assert sandbox.state.connections == 2


@pytest.mark.parametrize("transport", ["aiohttp (direct)", "httpx2"])
async def test_streamed_answers_in_a_row_share_one_connection(sandbox: Sandbox, transport: str) -> None:
    """Five streams read to `[DONE]`: the body's end that follows it is read too, so the connection is kept."""
    kwargs = {"transport": httpx2.AsyncHTTPTransport()} if transport == "httpx2" else {}
    async with OpenRouterClient(KEY, base_url=sandbox.base_url, **kwargs) as client:
        for _ in range(5):
            async for _ in client.stream_chat(REQUEST):
                pass
    assert sandbox.state.connections == 1


async def test_a_body_that_does_not_end_after_done_is_dropped_without_waiting_for_it() -> None:
    """An upstream that keeps the body open after `[DONE]` costs the stream at most a moment, not its stall."""
    chunk = {
        "id": "gen-1",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
    }

    stalled = anyio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
        with anyio.move_on_after(30):
            await stalled.wait()  # the body does not end while the client waits
        return response

    app = web.Application()
    app.router.add_post("/chat/completions", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with OpenRouterClient(KEY, base_url=f"http://127.0.0.1:{port}") as client:
            with anyio.fail_after(2):
                chunks = [c async for c in client.stream_chat(REQUEST)]
        assert [c.choices[0].delta.content for c in chunks] == ["hi"]
    finally:
        stalled.set()
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _server_that_drops_every_request() -> AsyncIterator[tuple[str, list[int]]]:
    """Reads each request whole, then closes its connection without answering. Yields its URL and
    [connections, requests]."""
    counts = [0, 0]

    async def handle(stream: anyio.abc.ByteStream) -> None:
        counts[0] += 1
        async with stream:
            await read_request(stream)
            counts[1] += 1

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        yield f"http://127.0.0.1:{port}/api/v1", counts
        tg.cancel_scope.cancel()


async def test_a_request_the_server_received_and_dropped_is_never_sent_twice() -> None:
    """A POST that reached the server may have been billed: it is not sent again, whatever happens."""
    async with (
        _server_that_drops_every_request() as (url, counts),
        OpenRouterClient(KEY, base_url=url) as client,
    ):
        with pytest.raises(errors.UpstreamError):
            await client.chat(REQUEST)
    assert counts == [1, 1]
