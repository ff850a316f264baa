"""The chat calls' direct path (straight through aiohttp) answers exactly as the httpx2 path does.

Each canned reply is served twice: to a client on `httpx2.MockTransport` (the general path) and, over
real loopback HTTP, to a client on the default transport (the direct path). Both must give the same
answer, or the same error with the same message, and send the same request.
"""

from __future__ import annotations

import gzip
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest

from modelyard.errors import ModelyardError
from modelyard.openrouter import ChatRequest, OpenRouterClient
from modelyard.openrouter.transport import AiohttpTransport
from tests.openrouter.raw_http import Reply, loopback_server

KEY = "sk-or-v1-test-key-for-the-client-tests"
REQUEST = ChatRequest(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
USAGE = {"prompt_tokens": 19, "completion_tokens": 7, "total_tokens": 26, "cost": 0.00001255}
ANSWER = {
    "id": "gen-1",
    "model": "openai/gpt-4o-mini",
    "provider": "OpenAI",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Olá"}}],
    "usage": USAGE,
}
_JSON_TYPE = {"content-type": "application/json"}


def _json(status: int, body: Any, **headers: str) -> Reply:
    return status, {"content-type": "application/json", **headers}, json.dumps(body).encode()


def _chunk(content: str | None, finish: str | None = None, **extra: Any) -> str:
    choice = {"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": finish}
    return json.dumps({"id": "gen-1", "model": "openai/gpt-4o-mini", "choices": [choice], **extra})


def _sse(*events: str, end: str = "\n") -> Reply:
    lines = [f": OPENROUTER PROCESSING{end}{end}"] + [f"data: {event}{end}{end}" for event in events]
    return 200, {"content-type": "text/event-stream"}, "".join(lines).encode()


def _gzipped(reply: Reply) -> Reply:
    status, headers, body = reply
    return status, {**headers, "content-encoding": "gzip"}, gzip.compress(body)


WHOLE_STREAM = (_chunk("Ol"), _chunk("á"), _chunk("", "stop"), _chunk("", "stop", usage=USAGE), "[DONE]")
# Media types are case-insensitive (RFC 9110 §8.3.1); aiohttp lower-cases them, httpx2 does not.
MIXED_CASE_STREAM: Reply = (200, {"content-type": "Text/Event-Stream; Charset=UTF-8"}, _sse(*WHOLE_STREAM)[2])
CHAT_REPLIES: dict[str, Reply] = {
    "an answer": _json(200, ANSWER),
    "an answer after keep-alive blanks": (200, _JSON_TYPE, b"\n   \n" + json.dumps(ANSWER).encode()),
    "a compressed answer": _gzipped(_json(200, ANSWER)),
    "an answer with a 9 KB header": _json(200, ANSWER, **{"x-trace": "a" * 9000}),
    "a 429 with Retry-After": _json(429, {"error": {"code": 429, "message": "slow down"}}, **{"retry-after": "7"}),
    "a 502 HTML page": (502, {"content-type": "text/html"}, b"<html>Bad gateway</html>"),
    "a 402": _json(402, {"error": {"code": 402, "message": "Insufficient credits"}}),
    "a 401": _json(401, {"error": {"code": 401, "message": "User not found."}}),
    "OpenRouter's 404": _json(404, {"error": {"code": 404, "message": "No endpoints found that support tool use."}}),
    "an error inside a 200": _json(200, {"error": {"code": 502, "message": "provider down"}}),
    "malformed JSON": (200, {"content-type": "application/json"}, b'{"id": "gen-1", "choi'),
    "no choices": _json(200, {**ANSWER, "choices": []}),
}
STREAM_REPLIES: dict[str, Reply] = {
    "a whole stream": _sse(*WHOLE_STREAM),
    "a stream with CRLF line ends": _sse(*WHOLE_STREAM, end="\r\n"),
    "a stream with CR line ends": _sse(*WHOLE_STREAM, end="\r"),
    "a stream with U+2028 unescaped in its JSON": _sse(
        _chunk("line\u2028separated", "stop", usage=USAGE).replace("\\u2028", "\u2028"), "[DONE]"
    ),
    "a compressed stream with U+2028": _gzipped(
        _sse(_chunk("line\u2028separated", "stop", usage=USAGE).replace("\\u2028", "\u2028"), "[DONE]")
    ),
    "a compressed stream": _gzipped(_sse(*WHOLE_STREAM)),
    "a stream whose media type is in mixed case": MIXED_CASE_STREAM,
    "a mid-stream error chunk": _sse(_chunk("Ol"), json.dumps({"error": {"code": 502, "message": "gone"}})),
    "a stream without a finish reason": _sse(_chunk("Ol"), "[DONE]"),
    "an undecodable chunk": _sse(_chunk("Ol"), "{not json"),
    "a JSON error in a 200 instead of a stream": _json(200, {"error": {"code": 429, "message": "rate limited"}}),
    "a 400 before streaming": _json(400, {"error": {"code": 400, "message": "bad model"}}),
}


def _mock_client(reply: Reply, seen: list[tuple[dict[str, str], bytes]]) -> OpenRouterClient:
    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append((dict(request.headers), request.content))
        status, headers, body = reply
        return httpx2.Response(status, headers=headers, content=body)

    return OpenRouterClient(KEY, base_url="https://or.test/api/v1", transport=httpx2.MockTransport(handler))


@asynccontextmanager
async def _loopback_client(reply: Reply, seen: list[tuple[dict[str, str], bytes]]) -> AsyncIterator[OpenRouterClient]:
    async with loopback_server(reply, seen) as base_url, OpenRouterClient(KEY, base_url=base_url) as client:
        assert isinstance(client._direct, AiohttpTransport)  # the path under test
        yield client


async def _outcome(call: Callable[[], Any]) -> object:
    try:
        return await call()
    except ModelyardError as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "retry_after", None))


async def _chat(client: OpenRouterClient) -> object:
    async def answer() -> dict[str, Any]:
        return (await client.chat(REQUEST)).model_dump()

    return await _outcome(answer)


async def _stream(client: OpenRouterClient) -> object:
    async def chunks() -> list[dict[str, Any]]:
        return [chunk.model_dump() async for chunk in client.stream_chat(REQUEST)]

    return await _outcome(chunks)


async def _assert_both_paths_agree(reply: Reply, call: Callable[[OpenRouterClient], Awaitable[object]]) -> None:
    """The same outcome from the httpx2 path and the direct path, from the same request body."""
    mock_seen: list[tuple[dict[str, str], bytes]] = []
    direct_seen: list[tuple[dict[str, str], bytes]] = []
    async with _mock_client(reply, mock_seen) as client:
        expected = await call(client)
    async with _loopback_client(reply, direct_seen) as client:
        assert await call(client) == expected
    assert direct_seen[0][1] == mock_seen[0][1]


@pytest.mark.anyio
@pytest.mark.parametrize("name", CHAT_REPLIES)
async def test_a_chat_reply_gets_the_same_answer_or_error_on_both_paths(name: str) -> None:
    await _assert_both_paths_agree(CHAT_REPLIES[name], _chat)


@pytest.mark.anyio
@pytest.mark.parametrize("name", STREAM_REPLIES)
async def test_a_stream_reply_gets_the_same_chunks_or_error_on_both_paths(name: str) -> None:
    await _assert_both_paths_agree(STREAM_REPLIES[name], _stream)


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["httpx2", "direct"])
async def test_an_event_stream_whose_media_type_is_in_mixed_case_is_read_as_a_stream(path: str) -> None:
    """`Text/Event-Stream` is a stream on both paths, through plain httpx2's transport and aiohttp's."""
    transport = httpx2.AsyncHTTPTransport() if path == "httpx2" else None
    async with (
        loopback_server(MIXED_CASE_STREAM, []) as base_url,
        OpenRouterClient(KEY, base_url=base_url, transport=transport) as client,
    ):
        assert (client._direct is None) == (path == "httpx2")
        chunks = [chunk async for chunk in client.stream_chat(REQUEST)]
    assert "".join(chunk.text for chunk in chunks) == "Olá"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 26


@pytest.mark.anyio
async def test_the_direct_path_sends_the_headers_httpx2_would_send() -> None:
    mock_seen: list[tuple[dict[str, str], bytes]] = []
    direct_seen: list[tuple[dict[str, str], bytes]] = []
    async with _mock_client(CHAT_REPLIES["an answer"], mock_seen) as client:
        await client.chat(REQUEST)
    async with _loopback_client(CHAT_REPLIES["an answer"], direct_seen) as client:
        await client.chat(REQUEST)
    transport_set = {"host", "content-length"}
    expected = {k.lower(): v for k, v in mock_seen[0][0].items() if k.lower() not in transport_set}
    sent = {k.lower(): v for k, v in direct_seen[0][0].items() if k.lower() not in transport_set}
    assert sent == expected
    assert sent["authorization"] == f"Bearer {KEY}" and sent["content-type"] == "application/json"


@pytest.mark.anyio
async def test_a_refused_connection_on_the_direct_path_is_a_connect_error_without_the_key() -> None:
    async with OpenRouterClient(KEY, base_url="http://127.0.0.1:9/api/v1", connect_timeout=2) as client:
        outcome = await _chat(client)
    assert isinstance(outcome, tuple) and outcome[0] == "UpstreamConnectError"
    assert KEY not in repr(outcome)


@pytest.mark.anyio
async def test_a_closed_client_refuses_chat_instead_of_opening_a_new_pool() -> None:
    async with _loopback_client(CHAT_REPLIES["an answer"], []) as client:
        await client.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await client.chat(REQUEST)


@pytest.mark.anyio
async def test_a_plain_http_upstream_never_builds_a_tls_context_and_https_builds_one_and_uses_it() -> None:
    import trustme

    ca = trustme.CA()
    made: list[ssl.SSLContext] = []

    def tls_context() -> ssl.SSLContext:
        context = ssl.create_default_context()
        ca.configure_trust(context)  # only the test's CA: the request succeeds only with this context
        made.append(context)
        return context

    answers = []
    for server_ca in (None, ca):
        async with (
            loopback_server(CHAT_REPLIES["an answer"], ca=server_ca) as base_url,
            OpenRouterClient(KEY, base_url=base_url, transport=AiohttpTransport(tls_context=tls_context)) as client,
        ):
            answers += [await client.chat(REQUEST), await client.chat(REQUEST)]
        assert len(made) == (0 if server_ca is None else 1)
    assert [answer.choices[0].message.content for answer in answers] == ["Olá"] * 4
