"""The bytes of each injected fault: error envelopes, broken 200s, broken streams, dropped sockets."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any

import anyio

from modelyard.sandbox.catalog import CatalogModel
from modelyard.sandbox.faults import Fault
from modelyard.sandbox.http import CloseConnection, Hang, Reply, Reset, Response, StreamResponse
from modelyard.sandbox.replies import Reply as Answer
from modelyard.sandbox.wire import (
    DONE,
    KEEPALIVE,
    PROCESSING,
    Generation,
    WireUsage,
    completion_body,
    dumps,
    error_body,
    error_chunk,
    error_response,
    reply_chunks,
)

__all__ = ["fault_reply", "status_response"]

_ERROR_TYPES = {
    408: "timeout",
    429: "rate_limit_exceeded",
    500: "server",
    502: "provider_unavailable",
    503: "provider_overloaded",
    529: "provider_overloaded",
}
_DEFAULT_AFTER_CHUNKS = 2
_MALFORMED = b"<html><head><title>502 Bad Gateway</title></head><body>upstream sent garbage</body></html>"


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _flagged_input(messages: Sequence[Mapping[str, Any]]) -> str:
    text = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            text = content if isinstance(content, str) else dumps(content)
            break
    return text if len(text) <= 100 else f"{text[:48]}...{text[-49:]}"


def _rate_limit(fault: Fault, model: CatalogModel, now: float) -> Response:
    retry_after = fault.retry_after if fault.retry_after is not None else 1.0
    headers = [("Retry-After", _seconds(retry_after))]
    metadata: dict[str, Any]
    if not fault.platform:
        raw = f"{model.id} is temporarily rate-limited upstream. Please retry shortly."
        metadata = {"raw": raw, "provider_name": model.provider}
        return error_response(429, fault.message or "Provider returned error", metadata, headers=headers)
    reset_ms = str(int((now + retry_after) * 1000))
    limits = {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset_ms}
    message = fault.message or (
        f"Rate limit exceeded: limit_rpm/{model.id}/sandbox. High demand for {model.id} on OpenRouter - "
        "limited to 20 requests per minute. Please retry shortly."
    )
    metadata = {"headers": limits, "provider_name": None}
    return error_response(429, message, metadata, headers=headers + list(limits.items()))


def status_response(fault: Fault, model: CatalogModel, messages: Sequence[Mapping[str, Any]], now: float) -> Response:
    """The error answer of a status fault (429, 5xx, 408, 403, 413)."""
    kind = fault.kind
    if kind == "rate_limit":
        return _rate_limit(fault, model, now)
    if kind == "moderation":
        reason = "harassment"
        message = fault.message or (
            f'{model.id} requires moderation on {model.provider}. Your input was flagged for "{reason}". '
            "No credits were charged."
        )
        metadata = {
            "reasons": [reason],
            "flagged_input": _flagged_input(messages),
            "provider_name": model.provider,
            "model_slug": model.slug,
        }
        return error_response(403, message, metadata)
    if kind == "bad_gateway":
        metadata = {"raw": "upstream connection error", "provider_name": model.provider}
        return error_response(fault.status or 502, fault.message or "Provider returned error", metadata)
    if kind == "unavailable":
        headers = [("Retry-After", _seconds(fault.retry_after))] if fault.retry_after is not None else []
        message = fault.message or "Service temporarily unavailable"
        return error_response(fault.status or 503, message, {"provider_name": model.provider}, headers=headers)
    if kind == "timeout":
        return error_response(fault.status or 408, fault.message or "Operation timed out. Please try again later.")
    if kind == "payload_too_large":
        return error_response(413, fault.message or "Request payload too large")
    return error_response(fault.status or 500, fault.message or "Internal Server Error")


def _in_200_error(fault: Fault, generation: Generation) -> dict[str, Any]:
    status = fault.status or 502
    metadata = {"error_type": _ERROR_TYPES.get(status, "server"), "provider_name": generation.model.provider}
    return error_body(status, fault.message or "Provider returned error", metadata)


async def _events(
    generation: Generation, answer: Answer, after: int, pause_s: float, delay_s: float
) -> AsyncGenerator[bytes, None]:
    yield PROCESSING
    if delay_s:
        await anyio.sleep(delay_s)
    for index, line in enumerate(reply_chunks(generation, answer)):
        if index >= after:
            break
        if index and pause_s:
            await anyio.sleep(pause_s)
        yield line


async def _broken_stream(
    fault: Fault, generation: Generation, answer: Answer, pause_s: float, delay_s: float
) -> AsyncGenerator[bytes, None]:
    after = fault.after_chunks if fault.after_chunks is not None else _DEFAULT_AFTER_CHUNKS
    async for line in _events(generation, answer, after, pause_s, delay_s):
        yield line
    if fault.kind == "mid_stream_error":
        body = _in_200_error(fault, generation)["error"]
        yield error_chunk(generation, body["code"], body["message"], body["metadata"])
        return
    if fault.kind == "malformed_json":
        yield b'data: {"id":"' + generation.id.encode() + b'","choices":[{"delta":\n\n'
        yield DONE
        return
    raise CloseConnection(reset=fault.kind == "reset")


async def _truncated_body(body: bytes, delay_s: float) -> AsyncGenerator[bytes, None]:
    yield KEEPALIVE
    if delay_s:
        await anyio.sleep(delay_s)
    yield body[len(KEEPALIVE) : len(body) // 2]
    raise CloseConnection()


def fault_reply(
    fault: Fault,
    *,
    generation: Generation,
    answer: Answer,
    usage: WireUsage,
    stream: bool,
    pause_s: float,
    delay_s: float,
    on_disconnect: Callable[[], None],
) -> tuple[Reply, int | None]:
    """The answer of a fault that strikes after the request was accepted, and its HTTP status."""
    headers = [("X-Generation-Id", generation.id)]
    if fault.kind == "hang":
        return Hang(on_disconnect=on_disconnect), None
    if fault.kind == "reset" and (not stream or fault.after_chunks is None):
        return Reset(), None
    if stream:
        chunks = _broken_stream(fault, generation, answer, pause_s, delay_s)
        return StreamResponse(200, chunks, headers=headers, on_disconnect=on_disconnect), 200
    if fault.kind == "truncated_stream":
        body = completion_body(generation, answer, usage)
        chunks = _truncated_body(body, delay_s)
        return StreamResponse(200, chunks, "application/json", headers, on_disconnect), 200
    if fault.kind == "malformed_json":
        return Response(200, KEEPALIVE + _MALFORMED, headers=headers), 200
    body = KEEPALIVE + dumps(_in_200_error(fault, generation)).encode("utf-8")
    return Response(200, body, headers=headers), 200
