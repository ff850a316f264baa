"""The failures OpenRouter reports inside a 200 answer, and the reading of a stream's events up to its end.

An HTTP 200 is not yet an answer: the body, a choice or a stream chunk can carry an `error` object, a
`finish_reason` of "error" means the answer broke off, and a stream can end without a finish reason. This
module turns each into its typed error. It is apart from the client, which sends the request and maps
HTTP statuses and transport failures, because these checks read the answer's content, not its transport,
and are the same whichever path (aiohttp's or httpx2's) carried it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import httpx2
from pydantic import ValidationError

from modelyard.errors import IncompleteStreamError, MalformedResponseError
from modelyard.openrouter.failures import Scrubber, error_from_body, malformed
from modelyard.openrouter.schemas import ChatChunk, ChatResponse
from modelyard.openrouter.sse import DONE, iter_sse_data

__all__ = ["checked_chunks", "checked_response"]

_DRAIN_S = 0.1


def checked_response(result: ChatResponse, model: str | None, scrub: Scrubber) -> ChatResponse:
    """`result`, or the error OpenRouter reported inside its 200 body."""
    if result.error is not None:
        raise error_from_body(result.error, model=model, scrub=scrub, where="inside a 200 answer")
    choice = result.first_choice
    if choice is None:
        raise MalformedResponseError("OpenRouter answered with no choices", model=model)
    if choice.error is not None:
        raise error_from_body(choice.error, model=model, scrub=scrub, where="in the choice")
    if choice.finish_reason == "error":
        raise IncompleteStreamError("The answer ended with finish_reason 'error'", model=model)
    return result


async def checked_chunks(lines: AsyncIterator[str], model: str | None, scrub: Scrubber) -> AsyncIterator[ChatChunk]:
    """The chunks of an event stream's lines, checked: an error inside one is raised."""
    finished = billed = False
    try:
        async for data in iter_sse_data(lines):
            if data == DONE:
                await _drain(lines)
                break
            chunk = _parse_chunk(data, model)
            if chunk.error is not None:
                raise error_from_body(chunk.error, model=model, scrub=scrub, where="mid-stream")
            if chunk.finish_reason == "error":
                raise IncompleteStreamError("The stream ended with finish_reason 'error'", model=model)
            finished = finished or chunk.finish_reason is not None
            billed = billed or chunk.usage is not None
            yield chunk
    except httpx2.HTTPError:
        if not (finished and billed):
            raise
        # The finish reason and the usage both arrived: the answer is whole and billed, and only the
        # `[DONE]` line was lost. Failing it would pay for it twice (the retry) and record it never.
        return
    if not finished:
        raise IncompleteStreamError("The stream ended without a finish reason", model=model)


def _parse_chunk(data: str, model: str | None) -> ChatChunk:
    try:
        return ChatChunk.model_validate_json(data)
    except ValidationError:
        raise malformed(data, model=model, reason="undecodable stream chunk") from None


async def _drain(lines: AsyncIterator[str]) -> None:
    """Read what follows a stream's `[DONE]`: normally only the end of the chunked body, which may
    arrive a moment later. Reading it lets the connection go back to the pool instead of being
    closed, and a new connection to OpenRouter is a new TLS handshake.

    The answer is whole by now, so nothing here may fail it: whatever else arrives is ignored, a body
    that has not ended within `_DRAIN_S` is dropped with its connection, and a caller's deadline
    waits those few milliseconds rather than throw away an answer that was billed.
    """
    with anyio.CancelScope(shield=True), anyio.move_on_after(_DRAIN_S), contextlib.suppress(httpx2.HTTPError):
        async for _ in lines:
            pass
