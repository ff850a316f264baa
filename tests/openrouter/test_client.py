"""The client over an injected transport: every call, every failure kind, no key leaks."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx2
import pytest

from modelyard import errors
from modelyard.openrouter import ChatRequest, OpenRouterClient

KEY = "sk-or-v1-test-key-for-the-client-tests"
CHUNK = {
    "id": "gen-1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "openai/gpt-4o-mini",
    "provider": "OpenAI",
}
USAGE = {"prompt_tokens": 19, "completion_tokens": 7, "total_tokens": 26, "cost": 0.00001255}
REQUEST = ChatRequest(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

Handler = Callable[[httpx2.Request], httpx2.Response]


def _client(handler: Handler, *, key: str | None = KEY, now: float = 1_000.0) -> OpenRouterClient:
    return OpenRouterClient(
        key, base_url="https://or.test/api/v1", transport=httpx2.MockTransport(handler), clock=lambda: now
    )


def _error(
    status: int, message: str, metadata: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Handler:
    body: dict[str, Any] = {"error": {"message": message, "code": status}, "user_id": "user_x"}
    if metadata is not None:
        body["error"]["metadata"] = metadata
    return lambda request: httpx2.Response(status, json=body, headers=headers)


def _sse(*events: dict[str, Any] | str) -> Handler:
    parts = [": OPENROUTER PROCESSING\n\n"]
    parts += [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
    content = "".join(parts).encode()
    return lambda request: httpx2.Response(200, content=content, headers={"content-type": "text/event-stream"})


def _chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": finish}
    return {**CHUNK, "choices": [choice], **extra}


async def _collect(client: OpenRouterClient) -> list[Any]:
    return [chunk async for chunk in client.stream_chat(REQUEST)]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "error_class", "retryable"),
    [
        (400, errors.BadRequestError, False),
        (401, errors.AuthenticationError, False),
        (402, errors.InsufficientCreditsError, False),
        (403, errors.ForbiddenError, False),
        (404, errors.UpstreamNotFoundError, False),
        (408, errors.RequestTimeoutError, True),
        (413, errors.PayloadTooLargeError, False),
        (422, errors.UnprocessableError, False),
        (429, errors.RateLimitError, True),
        (500, errors.ServerError, True),
        (502, errors.BadGatewayError, True),
        (503, errors.ServiceUnavailableError, True),
        (524, errors.RequestTimeoutError, True),
        (529, errors.ServiceUnavailableError, True),
    ],
)
async def test_each_error_status_maps_to_its_typed_error(
    status: int, error_class: type[errors.UpstreamError], retryable: bool
) -> None:
    """An error envelope with status N raises the class for N, carrying status, code and message."""
    async with _client(_error(status, "Provider returned error", {"provider_name": "OpenAI"})) as client:
        with pytest.raises(error_class) as caught:
            await client.chat(REQUEST)
    error = caught.value
    assert (error.status, error.code, error.retryable) == (status, status, retryable)
    assert "Provider returned error" in error.message and "OpenAI" in error.message
    assert error.metadata == {"provider_name": "OpenAI"} and error.model == "openai/gpt-4o-mini"


@pytest.mark.anyio
async def test_moderation_403_says_why_it_was_flagged() -> None:
    """A 403 moderation block carries its reasons in the message and the metadata."""
    metadata = {"reasons": ["violence"], "flagged_input": "...", "provider_name": "OpenAI", "model_slug": "x"}
    async with _client(_error(403, "Input was flagged", metadata)) as client:
        with pytest.raises(errors.ForbiddenError, match="moderation: violence"):
            await client.chat(REQUEST)


@pytest.mark.anyio
async def test_retry_after_is_read_from_the_header() -> None:
    """A 429 with `Retry-After: 7` carries retry_after 7 seconds."""
    async with _client(_error(429, "Rate limit exceeded", headers={"Retry-After": "7"})) as client:
        with pytest.raises(errors.RateLimitError) as caught:
            await client.chat(REQUEST)
    assert caught.value.retry_after == 7


@pytest.mark.anyio
async def test_retry_after_falls_back_to_the_rate_limit_reset_in_metadata() -> None:
    """`metadata.headers.X-RateLimit-Reset` is epoch milliseconds: it becomes seconds from now."""
    metadata = {
        "headers": {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1030000"},
        "provider_name": None,
    }
    async with _client(_error(429, "Rate limit exceeded: free-models-per-day", metadata), now=1_000.0) as client:
        with pytest.raises(errors.RateLimitError) as caught:
            await client.chat(REQUEST)
    assert caught.value.retry_after == pytest.approx(30.0)


@pytest.mark.anyio
async def test_a_non_json_error_page_still_maps_by_status() -> None:
    """An HTML 502 from the edge becomes BadGatewayError with an excerpt of the page."""
    async with _client(lambda r: httpx2.Response(502, text="<html>Bad gateway</html>")) as client:
        with pytest.raises(errors.BadGatewayError, match="Bad gateway"):
            await client.chat(REQUEST)


@pytest.mark.anyio
async def test_an_error_inside_a_200_body_is_raised_not_returned() -> None:
    """Whitespace keep-alives then `{"error": ...}` with HTTP 200 raises StreamError."""
    body = b'\n         \n{"error":{"code":502,"message":"Provider returned error"}}'
    async with _client(lambda r: httpx2.Response(200, content=body)) as client:
        with pytest.raises(errors.StreamError) as caught:
            await client.chat(REQUEST)
    assert caught.value.code == 502 and caught.value.retryable


@pytest.mark.anyio
async def test_an_error_inside_a_200_with_a_final_code_is_not_retryable() -> None:
    """A 402 reported inside a 200 body is a failure no retry fixes."""
    body = b'{"error":{"code":402,"message":"Insufficient credits"}}'
    async with _client(lambda r: httpx2.Response(200, content=body)) as client:
        with pytest.raises(errors.StreamError) as caught:
            await client.chat(REQUEST)
    assert not caught.value.retryable


@pytest.mark.anyio
async def test_malformed_json_raises_malformed_response() -> None:
    """A 200 whose body is not JSON raises MalformedResponseError with an excerpt."""
    async with _client(lambda r: httpx2.Response(200, content=b"{not json")) as client:
        with pytest.raises(errors.MalformedResponseError, match="not json"):
            await client.chat(REQUEST)


@pytest.mark.anyio
async def test_a_response_with_no_choices_is_malformed() -> None:
    """A 200 body with an empty choices list cannot be used and says so."""
    body = {"id": "gen-1", "model": "m", "choices": [], "usage": USAGE}
    async with _client(lambda r: httpx2.Response(200, json=body)) as client:
        with pytest.raises(errors.MalformedResponseError, match="no choices"):
            await client.chat(REQUEST)


@pytest.mark.anyio
async def test_connect_errors_and_read_timeouts_map_to_their_types() -> None:
    """A refused connection is UpstreamConnectError, a read timeout UpstreamTimeoutError."""

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    def stall(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    async with _client(refuse) as client:
        with pytest.raises(errors.UpstreamConnectError):
            await client.chat(REQUEST)
    async with _client(stall) as client:
        with pytest.raises(errors.UpstreamTimeoutError):
            await _collect(client)


@pytest.mark.anyio
async def test_a_closed_port_on_loopback_is_a_connect_error() -> None:
    """A real refused TCP connection maps to UpstreamConnectError."""
    async with OpenRouterClient(KEY, base_url="http://127.0.0.1:9/api/v1", connect_timeout=2) as client:
        with pytest.raises(errors.UpstreamConnectError):
            await client.chat(REQUEST)


@pytest.mark.anyio
async def test_stream_yields_text_then_usage_from_the_2026_final_chunk() -> None:
    """The 2026 shape repeats the finish choice in the usage chunk; text and usage are both read."""
    handler = _sse(_chunk("Ol"), _chunk("á"), _chunk("", "stop"), _chunk("", "stop", usage=USAGE), "[DONE]")
    async with _client(handler) as client:
        chunks = await _collect(client)
    assert "".join(c.text for c in chunks) == "Olá"
    assert chunks[-1].usage is not None and chunks[-1].usage.cost == Decimal("0.00001255")


@pytest.mark.anyio
async def test_stream_accepts_the_usage_chunk_with_empty_choices() -> None:
    """The documented shape sends usage with `choices: []` after the finish chunk."""
    handler = _sse(_chunk("hi"), _chunk("", "stop"), {**CHUNK, "choices": [], "usage": USAGE}, "[DONE]")
    async with _client(handler) as client:
        chunks = await _collect(client)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 26


@pytest.mark.anyio
async def test_a_mid_stream_error_chunk_raises_stream_error() -> None:
    """A chunk with a top-level error and finish_reason "error" raises StreamError with its code."""
    error_chunk = {
        **_chunk("", "error"),
        "error": {"code": 429, "message": "Rate limit exceeded", "metadata": {"error_type": "rate_limit_exceeded"}},
    }
    async with _client(_sse(_chunk("partial"), error_chunk)) as client:
        with pytest.raises(errors.StreamError, match="Rate limit exceeded") as caught:
            await _collect(client)
    assert caught.value.code == 429 and caught.value.retryable


@pytest.mark.anyio
async def test_a_stream_that_ends_without_a_finish_reason_is_incomplete() -> None:
    """Chunks then end-of-body, no finish reason and no [DONE], raises IncompleteStreamError."""
    async with _client(_sse(_chunk("a"), _chunk("b"))) as client:
        with pytest.raises(errors.IncompleteStreamError):
            await _collect(client)


def _sse_then_broken(*events: dict[str, Any]) -> Handler:
    """The events, then the connection breaks (no `[DONE]`)."""
    lines = [f"data: {json.dumps(e)}\n\n".encode() for e in events]

    class Broken(httpx2.AsyncByteStream):
        async def __aiter__(self) -> Any:
            for line in lines:
                yield line
            raise httpx2.ReadError("connection reset by peer")

    return lambda request: httpx2.Response(200, stream=Broken(), headers={"content-type": "text/event-stream"})


@pytest.mark.anyio
async def test_a_stream_broken_after_its_finish_and_usage_is_a_whole_billed_answer() -> None:
    """Finish reason and usage arrived, then the connection broke before `[DONE]`: the answer stands
    (OpenRouter billed it; failing it would pay for it twice and record it never)."""
    async with _client(_sse_then_broken(_chunk("hi"), _chunk("", "stop", usage=USAGE))) as client:
        chunks = await _collect(client)
    assert chunks[-1].usage is not None and chunks[-1].finish_reason == "stop"


@pytest.mark.anyio
async def test_a_stream_broken_before_its_usage_is_incomplete() -> None:
    """A finish reason alone is not enough: without the usage the cost is unknown, so it is a failure."""
    async with _client(_sse_then_broken(_chunk("hi"), _chunk("", "stop"))) as client:
        with pytest.raises(errors.IncompleteStreamError):
            await _collect(client)


@pytest.mark.anyio
async def test_an_undecodable_stream_chunk_is_malformed() -> None:
    """A `data:` line that is not JSON raises MalformedResponseError."""
    async with _client(_sse(_chunk("a"), "{oops")) as client:
        with pytest.raises(errors.MalformedResponseError):
            await _collect(client)


@pytest.mark.anyio
async def test_a_stream_request_refused_before_streaming_raises_the_status_error() -> None:
    """Errors before the first byte come back as JSON with a proper status (§5.1)."""
    async with _client(_error(401, "User not found.")) as client:
        with pytest.raises(errors.AuthenticationError, match="User not found"):
            await _collect(client)


@pytest.mark.anyio
async def test_the_api_key_never_appears_in_errors_reprs_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Even when the upstream echoes the key, messages, reprs and log lines carry only a mask."""
    caplog.set_level(logging.DEBUG)
    async with _client(_error(401, f"Bad key {KEY}")) as client:
        with pytest.raises(errors.AuthenticationError) as caught:
            await client.chat(REQUEST)
        assert KEY not in repr(client) and KEY not in str(vars(client).get("_http"))
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)
    assert KEY not in caplog.text


@pytest.mark.anyio
async def test_a_key_pasted_with_its_line_end_is_sent_without_it() -> None:
    """A key copied with its newline, or read from a file with Windows line ends, still works."""
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers["authorization"])
        return httpx2.Response(401, json={"error": {"message": "no", "code": 401}})

    async with _client(handler, key=f"  {KEY}\r\n") as client:
        with pytest.raises(errors.AuthenticationError):
            await client.chat(REQUEST)
    assert seen == [f"Bearer {KEY}"]


@pytest.mark.parametrize("inside", ["\n", " ", "\x00", "é"])
def test_a_key_with_a_character_no_header_can_carry_is_refused_at_once_without_echoing_it(inside: str) -> None:
    """Where the HTTP library would refuse the header at the first request, quoting the key in its error."""
    with pytest.raises(errors.ConfigurationError, match="copy it again") as caught:
        OpenRouterClient(KEY[:10] + inside + KEY[10:])
    assert KEY[:10] not in str(caught.value) and KEY[10:] not in str(caught.value)


@pytest.mark.anyio
async def test_chat_without_a_key_says_how_to_set_one() -> None:
    """With no key, chat raises ConfigurationError naming OPENROUTER_API_KEY and the sandbox."""
    async with _client(lambda r: httpx2.Response(200), key=None) as client:
        with pytest.raises(errors.ConfigurationError, match="OPENROUTER_API_KEY"):
            await client.chat(REQUEST)


@pytest.mark.anyio
async def test_requests_carry_the_bearer_key_attribution_headers_and_only_set_fields() -> None:
    """The body leaves unset fields out; headers carry auth and app attribution."""
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(
            200,
            json={
                "id": "gen-1",
                "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
                "usage": USAGE,
            },
        )

    async with _client(handler) as client:
        answer = await client.chat(REQUEST.model_copy(update={"max_tokens": 50}))
    assert answer.choices[0].message.content == "ok"
    request = seen[0]
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["x-title"] == "modelyard" and "http-referer" in request.headers
    assert json.loads(request.content) == {
        "model": "openai/gpt-4o-mini",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }
