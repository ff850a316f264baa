"""Map every way an OpenRouter call can fail to one typed error of `modelyard.errors`.

This is the boundary where foreign errors (httpx2 exceptions, undecodable bodies, error envelopes,
errors inside HTTP 200 answers) become ours. The API key is scrubbed from every message.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Mapping
from typing import Any

import httpx2
from pydantic import ValidationError

from modelyard.errors import (
    IncompleteStreamError,
    MalformedResponseError,
    StreamError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeoutError,
    error_for_status,
)
from modelyard.openrouter.schemas import ErrorBody, ErrorEnvelope

__all__ = [
    "Scrubber",
    "error_from_body",
    "error_from_response",
    "error_from_transport",
    "malformed",
    "retry_after_seconds",
]

# Codes inside a 200 body that no retry can fix (OpenRouter reuses HTTP statuses as error codes).
_FINAL_CODES = frozenset({400, 401, 402, 403, 404, 413, 422})
_RAW_EXCERPT = 300


class Scrubber:
    """Removes a secret from any text before it leaves the client."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret or None

    def __call__(self, text: str) -> str:
        if self._secret and self._secret in text:
            return text.replace(self._secret, "sk-or-***")
        return text


def retry_after_seconds(headers: Mapping[str, str], metadata: Mapping[str, Any] | None, now: float) -> float | None:
    """Seconds to wait, from `Retry-After` (header or `metadata.headers`), else `X-RateLimit-Reset`.

    `X-RateLimit-Reset` in OpenRouter's error metadata is epoch *milliseconds* as a string (§6.5).
    """
    meta_headers = _lower_keys((metadata or {}).get("headers"))
    all_headers = {**meta_headers, **{k.lower(): v for k, v in headers.items()}}
    if (value := all_headers.get("retry-after")) is not None:
        return _parse_retry_after(str(value), now)
    if (reset := all_headers.get("x-ratelimit-reset")) is not None:
        try:
            return max(0.0, float(reset) / 1000.0 - now)
        except ValueError:
            return None
    return None


def _lower_keys(value: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _parse_retry_after(value: str, now: float) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now)


def error_from_response(
    response: httpx2.Response, *, model: str | None, scrub: Scrubber, clock: Callable[[], float]
) -> UpstreamError:
    """The error for a non-2xx response whose body has been read."""
    status = response.status_code
    body = _envelope(response.content)
    if body is None:
        text = response.content.decode("utf-8", "replace").strip()[:_RAW_EXCERPT]
        message = f"HTTP {status} from OpenRouter" + (f": {text}" if text else "")
        metadata: dict[str, Any] = {}
        code: int | str | None = status
    else:
        message, metadata, code = _describe(body), body.metadata or {}, body.code
    return error_for_status(status)(
        scrub(message),
        status=status,
        code=code,
        metadata=metadata,
        retry_after=retry_after_seconds(response.headers, metadata, clock()),
        model=model,
    )


def error_from_body(body: ErrorBody, *, model: str | None, scrub: Scrubber, where: str) -> StreamError:
    """The error for an `error` object inside a 200 answer (a body or a stream chunk)."""
    error = StreamError(
        scrub(f"{_describe(body)} ({where})"),
        code=body.code,
        metadata=body.metadata,
        model=model,
    )
    error.retryable = _as_int(body.code) not in _FINAL_CODES
    return error


def error_from_transport(
    exc: httpx2.HTTPError, *, model: str | None, scrub: Scrubber, streaming_started: bool = False
) -> UpstreamError:
    """The error for a failure below HTTP: connect, reset, timeout, protocol."""
    detail = scrub(f"{type(exc).__name__}: {exc}".rstrip(": "))
    if isinstance(exc, httpx2.TimeoutException) and not isinstance(exc, httpx2.ConnectTimeout):
        return UpstreamTimeoutError(f"No answer from OpenRouter in time ({detail})", model=model)
    if streaming_started:
        return IncompleteStreamError(f"The stream broke before it finished ({detail})", model=model)
    return UpstreamConnectError(f"Could not reach OpenRouter ({detail})", model=model)


def malformed(content: bytes | str, *, model: str | None, reason: str) -> MalformedResponseError:
    """The error for a body that is not the JSON OpenRouter sends."""
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    excerpt = text.strip()[:120]
    return MalformedResponseError(f"Malformed answer from OpenRouter ({reason}): {excerpt!r}", model=model)


def _envelope(content: bytes) -> ErrorBody | None:
    try:
        return ErrorEnvelope.model_validate_json(content).error
    except ValidationError:
        return None


def _describe(body: ErrorBody) -> str:
    """OpenRouter's message, plus the parts of its metadata that say what actually happened."""
    message = body.message or "OpenRouter returned an error"
    metadata = body.metadata or {}
    extras: list[str] = []
    if provider := metadata.get("provider_name"):
        extras.append(f"provider {provider}")
    if reasons := metadata.get("reasons"):
        extras.append(f"moderation: {', '.join(map(str, reasons))}")
    if raw := metadata.get("raw"):
        extras.append(f"upstream said: {str(raw)[:_RAW_EXCERPT]}")
    return f"{message} [{'; '.join(extras)}]" if extras else message


def _as_int(code: int | str | None) -> int | None:
    try:
        return int(code) if code is not None else None
    except ValueError:
        return None
