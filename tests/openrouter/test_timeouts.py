"""The read, pool and connect timeouts mean the same on both HTTP paths: httpx2's and the direct one (aiohttp).

A read timeout bounds each wait for the upstream, never the reader's own work between two reads; a
request that waits for a free connection past its pool timeout is a timeout, not a connect error; a
connection that cannot be made in time is a connect error. Each case runs on both paths, against
loopback servers whose timing the test sets.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest

from modelyard import errors
from modelyard.openrouter import ChatRequest, OpenRouterClient
from modelyard.openrouter.transport import AiohttpTransport
from tests.openrouter.raw_http import read_request

pytestmark = pytest.mark.anyio
KEY = "sk-or-v1-test-key-for-the-timeout-tests"
REQUEST = ChatRequest(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
USAGE = {"prompt_tokens": 19, "completion_tokens": 7, "total_tokens": 26}
PATHS = ["direct", "httpx2"]
Handler = Callable[[anyio.abc.ByteStream], Awaitable[None]]


def _event(content: str, finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": finish}
    chunk = {"id": "gen-1", "model": "openai/gpt-4o-mini", "choices": [choice], **extra}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _streaming(gaps: Sequence[float]) -> Handler:
    """Answers one request with an event stream: a chunk at once, another after each of `gaps` seconds,
    then the last chunk (finish reason and usage), `[DONE]` and the body's end, all at once."""

    async def handle(stream: anyio.abc.ByteStream) -> None:
        await read_request(stream)
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        await stream.send(head + _http_chunk(_event("0")))
        for n, gap in enumerate(gaps, 1):
            await anyio.sleep(gap)
            await stream.send(_http_chunk(_event(str(n))))
        last = _event("", "stop", usage=USAGE) + b"data: [DONE]\n\n"
        await stream.send(_http_chunk(last) + b"0\r\n\r\n")

    return handle


def _stream_then_stall(connections: list[int]) -> Handler:
    """Counts connections in `connections`; on each, answers a stream whole, then the next request with
    headers and a body that never comes."""

    async def handle(stream: anyio.abc.ByteStream) -> None:
        connections.append(1)
        await _streaming([])(stream)
        await read_request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        await anyio.sleep_forever()

    return handle


async def _silent(stream: anyio.abc.ByteStream) -> None:
    """Accepts the connection and never says a word (a TLS handshake that never completes)."""
    await anyio.sleep_forever()


@contextlib.asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[int]:
    """A loopback TCP server running `handler` on each connection (until the peer leaves); yields its port."""

    async def serve(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
                await handler(stream)

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


def _client(path: str, url: str, **kwargs: Any) -> OpenRouterClient:
    """A client on the direct path (the default transport) or on plain httpx2's transport."""
    limits = kwargs.get("limits") or httpx2.Limits(max_connections=256, max_keepalive_connections=256)
    transport = httpx2.AsyncHTTPTransport(limits=limits) if path == "httpx2" else None
    client = OpenRouterClient(KEY, base_url=url, transport=transport, **kwargs)
    assert isinstance(client._direct, AiohttpTransport) == (path == "direct")
    return client


async def _read_slowly(client: OpenRouterClient, busy_s: float) -> list[str]:
    """The stream's texts, read by a consumer that works `busy_s` seconds after each chunk."""
    texts = []
    async for chunk in client.stream_chat(REQUEST):
        texts.append(chunk.text)
        await anyio.sleep(busy_s)
    return texts


@pytest.mark.parametrize("path", PATHS)
async def test_a_reader_busier_than_the_read_timeout_between_chunks_gets_a_prompt_stream_whole(path: str) -> None:
    """The upstream sends its chunks 0.02 s apart; the reader works 0.5 s on each, the read timeout is 0.3 s.
    (Held before the per-wait timing too: aiohttp's `sock_read` restarts at every arrival.)"""
    async with (
        _server(_streaming([0.02, 0.02, 0.02])) as port,
        _client(path, f"http://127.0.0.1:{port}", timeout=0.3) as client,
    ):
        with anyio.fail_after(10):
            assert await _read_slowly(client, busy_s=0.5) == ["0", "1", "2", "3", ""]


@pytest.mark.parametrize("path", PATHS)
async def test_the_read_timeout_counts_the_readers_wait_for_a_chunk_not_its_work_between_chunks(path: str) -> None:
    """Chunks 0.6 s apart, a 0.4 s read timeout, a reader that works 0.55 s on each: it never waits more
    than about 0.05 s, so nothing times out (httpx2 times each read; aiohttp's `sock_read` timed the gap)."""
    async with (
        _server(_streaming([0.6, 0.6])) as port,
        _client(path, f"http://127.0.0.1:{port}", timeout=0.4) as client,
    ):
        with anyio.fail_after(10):
            assert await _read_slowly(client, busy_s=0.55) == ["0", "1", "2", ""]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("busy_s", [0.0, 0.2])
async def test_an_upstream_that_stalls_past_the_read_timeout_times_out_once_the_reader_waits_that_long(
    path: str, busy_s: float
) -> None:
    """A stall of 30 s after the first chunk, a 0.3 s read timeout: the reader's wait ends 0.3 s after it began."""
    async with _server(_streaming([30.0])) as port, _client(path, f"http://127.0.0.1:{port}", timeout=0.3) as client:
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(errors.UpstreamTimeoutError):
            await _read_slowly(client, busy_s=busy_s)
        assert busy_s + 0.25 <= time.monotonic() - started < busy_s + 1.5


@pytest.mark.parametrize("path", PATHS)
async def test_after_a_stream_its_connection_times_out_the_next_answers_stalled_body(path: str) -> None:
    """The stream's reads are timed per wait; the connection's next answer, read whole, still has its read
    timeout (0.3 s) on the same connection."""
    connections: list[int] = []
    async with (
        _server(_stream_then_stall(connections)) as port,
        _client(path, f"http://127.0.0.1:{port}", timeout=0.3) as client,
    ):
        assert [chunk.text async for chunk in client.stream_chat(REQUEST)] == ["0", ""]
        with anyio.fail_after(10), pytest.raises(errors.UpstreamTimeoutError):
            await client.chat(REQUEST)
    assert len(connections) == 1


@pytest.mark.parametrize("path", PATHS)
async def test_a_request_that_waits_past_its_pool_timeout_for_the_only_connection_is_a_timeout(path: str) -> None:
    """A pool of one connection, held by a stream that goes on for 3 s: a second call gets no connection
    within its timeouts (0.3 s each) and fails as a timeout, as httpx2's `PoolTimeout` does, not as a
    connect error."""
    limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
    async with (
        _server(_streaming([0.1] * 30)) as port,
        _client(path, f"http://127.0.0.1:{port}", timeout=0.3, connect_timeout=0.3, limits=limits) as client,
    ):
        stream = client.stream_chat(REQUEST)
        try:
            assert (await anext(stream)).text == "0"  # the stream holds the pool's only connection
            with anyio.fail_after(10), pytest.raises(errors.UpstreamTimeoutError, match=r"(?i)pool"):
                await client.chat(REQUEST)
        finally:
            await stream.aclose()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("read_timeout", "connect_timeout"), [(5.0, 0.3), (0.2, 0.5)])
async def test_a_tls_handshake_that_never_completes_is_a_connect_error_after_the_connect_timeout(
    path: str, read_timeout: float, connect_timeout: float
) -> None:
    """No pool wait, so a connection not made in time is a connect error, also when the read (and pool)
    timeout is shorter than the connect timeout: the connect gets its own `connect_timeout`."""
    async with (
        _server(_silent) as port,
        _client(path, f"https://127.0.0.1:{port}", timeout=read_timeout, connect_timeout=connect_timeout) as client,
    ):
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(errors.UpstreamConnectError) as caught:
            await client.chat(REQUEST)
        assert connect_timeout - 0.05 <= time.monotonic() - started < connect_timeout + 2.0
    assert str(caught.value) == (
        f"Could not connect to https://127.0.0.1:{port} within connect_timeout_s={connect_timeout}s: "
        "is OPENROUTER_BASE_URL right and the server up?"
    )


@pytest.mark.parametrize("path", PATHS)
async def test_a_name_lookup_that_never_answers_is_a_connect_error_after_the_connect_timeout(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looking the host up is part of connecting (httpx2's connect timeout bounds it): a lookup that
    never answers is a connect error after the connect timeout, not a pool timeout after the read (and
    pool) timeout plus the connect timeout."""
    release = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode()
        if host == "dns-never-answers.test":
            release.wait(10)
            raise socket.gaierror(socket.EAI_AGAIN, "lookup gave up")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        async with _client(path, "http://dns-never-answers.test", timeout=0.3, connect_timeout=0.5) as client:
            started = time.monotonic()
            with anyio.fail_after(10), pytest.raises(errors.UpstreamConnectError) as caught:
                await client.chat(REQUEST)
            assert 0.45 <= time.monotonic() - started < 0.75
        named = "Could not connect to http://dns-never-answers.test within connect_timeout_s=0.5s: "
        assert str(caught.value).startswith(named)
    finally:
        release.set()
