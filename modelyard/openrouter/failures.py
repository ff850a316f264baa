"""Map every way an OpenRouter call can fail to one typed error of `modelyard.errors`.

This is the boundary where foreign errors (httpx2 exceptions, undecodable bodies, error envelopes,
errors inside HTTP 200 answers) become ours. The API key is scrubbed from every message.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import httpx2
from pydantic import ValidationError

from modelyard.errors import (
    IncompleteStreamError,
    InvalidRequestError,
    MalformedResponseError,
    PriceFilteredError,
    StreamError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeoutError,
    WrongBaseUrlError,
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
# What a wait is said as, by status: the sentence the agent reads before OpenRouter's own message.
_WAITED_FOR = {429: "rate limited", 503: "unavailable", 529: "overloaded"}
# OpenRouter's own verdict that a 400 is about the request, whatever the model (reference §6.4's `error_type`;
# its Responses API sends the kind as a string `code`). Only when no provider is named and no upstream `raw`
# is quoted: a provider's 400 can be that provider's own strictness (one rejects a tool schema others take),
# and an unknown model id, a context length or max_tokens 400 is about the model. Those still fall back.
_REQUEST_ERROR_TYPES = frozenset({"invalid_request", "invalid_prompt"})


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
    """The error for a non-2xx response whose body has been read.

    A 404 that is not OpenRouter's own is `WrongBaseUrlError` (see `_is_openrouters_404`), and a 401's
    message says to check the key: each names the setting to fix.
    """
    status = response.status_code
    envelope = _parsed_envelope(response.content)
    body = envelope.error if envelope is not None else None
    if status == 404 and not _is_openrouters_404(envelope):
        return _wrong_base_url(response.request.url, model=model, scrub=scrub)
    if body is None:
        said = response.content.decode("utf-8", "replace").strip()[:_RAW_EXCERPT]
        message = f"HTTP {status} from OpenRouter" + (f": {said}" if said else "")
        metadata: dict[str, Any] = {}
        code: int | str | None = status
    else:
        said = message = _describe(body)
        metadata, code = body.metadata or {}, body.code
    if status == 401:
        message = (
            f"OpenRouter rejected the API key ({status} {said or response.reason_phrase}): check OPENROUTER_API_KEY"
        )
    retry_after = retry_after_seconds(response.headers, metadata, clock())
    if retry_after is not None and status in _WAITED_FOR:
        message = f"{_WAITED_FOR[status]}: OpenRouter asks to wait {_seconds(retry_after)}. {message}"
    kind = error_for_status(status)
    if status == 400 and (verdict := _request_verdict(body)) is not None:
        kind, message = InvalidRequestError, _requests_own_mistake(verdict, said)
    elif status == 404 and body is not None and _names_a_price(body):
        kind = PriceFilteredError
    return kind(
        scrub(message),
        status=status,
        code=code,
        metadata=metadata,
        retry_after=retry_after,
        model=model,
        status_in_message=status == 401,
    )


def _seconds(wait: float) -> str:
    """A wait as the agent reads it: whole seconds (tenths below 10 s), and roughly in minutes or hours when long."""
    text = f"{math.ceil(wait)} s" if wait >= 10 else f"{math.ceil(wait * 10) / 10:g} s"
    if wait >= 3600:
        return f"{text} (about {wait / 3600:.0f} h)"
    return f"{text} (about {wait / 60:.0f} min)" if wait >= 600 else text


def _request_verdict(body: ErrorBody | None) -> str | None:
    """OpenRouter's own `invalid_request`/`invalid_prompt` verdict on a 400's body, if that is what it is."""
    if body is None:
        return None
    metadata = body.metadata or {}
    if metadata.get("provider_name") or metadata.get("raw"):
        return None
    extra = body.model_extra or {}
    for kind in (metadata.get("error_type"), extra.get("error_type"), body.code):
        if isinstance(kind, str) and kind in _REQUEST_ERROR_TYPES:
            return kind
    return None


_SLASHED = re.compile(r"[^\s\"']*/[^\s\"']*")
"""A word with a slash in it: a model id (`author/slug`) or a URL."""


def _names_a_price(body: ErrorBody) -> bool:
    """Whether a 404 says a price filtered the endpoints out (`provider.max_price`), wherever it says it: its
    message, its metadata, or a 2026 availability block (`constraint.field`, reference §6.1). OpenRouter's
    wording for it is not documented, so any mention of a price counts; its other 404s (tool use, a data
    policy, an unknown model) name none. Model ids and URLs (any word with a slash) are no mention: a 404
    for `acme/price-oracle`, or one linking a pricing page, says nothing of what filtered its endpoints."""
    said = [body.message, json.dumps(body.metadata or {}), json.dumps(body.model_extra or {}, default=str)]
    return any("price" in _SLASHED.sub(" ", text).lower() for text in said)


def _requests_own_mistake(verdict: str, said: str) -> str:
    return (
        f"OpenRouter rejected the request itself ({verdict}: {said}): every model would, so the fallback stops "
        "(after one other model, to rule out a limit of this one). Fix the request and send it again."
    )


def _wrong_base_url(url: httpx2.URL, *, model: str | None, scrub: Scrubber) -> WrongBaseUrlError:
    shown = url.copy_with(query=None, userinfo=b"")  # a query or a password is no part of what to fix
    message = (
        f"The upstream answered 404 Not Found at {shown}, which is not an OpenRouter API path: check "
        "OPENROUTER_BASE_URL (it should end in /api/v1, e.g. https://openrouter.ai/api/v1)"
    )
    return WrongBaseUrlError(scrub(message), status=404, code=404, model=model, status_in_message=True)


def _is_openrouters_404(envelope: ErrorEnvelope | None) -> bool:
    """Whether a 404's body is OpenRouter's own, about the model or the request ("No endpoints found that
    support tool use", "Model x not found"): its JSON error envelope saying what was not found.

    The envelope is OpenRouter's whatever its message when it names the caller (`user_id`, as every
    authenticated error does) or carries more than a message and a code (`metadata`, a 2026 availability
    error's `error_type`/`availability`): a bare "Not Found" has been reported from the live router about
    an unknown model (`GET /models/{id}/endpoints`), so the message alone cannot decide it.
    A server's 404 for a path it does not serve is anything else: a web page (openrouter.ai's site answers
    `/v1/...` with one), another API's JSON, nothing, or an envelope with only the bare reason phrase
    (the sandbox's answer outside `/api/v1`).
    """
    if envelope is None:
        return False
    body = envelope.error
    if envelope.user_id or body.metadata or body.model_extra:
        return True
    return body.message.strip().rstrip(".").lower() not in ("", "not found")


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
    if isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout) and (origin := _origin(exc)) is not None:
        return UpstreamConnectError(scrub(_could_not_connect(origin, exc)), model=model)
    return UpstreamConnectError(f"Could not reach OpenRouter ({detail})", model=model)


def _could_not_connect(origin: str, exc: httpx2.ConnectError | httpx2.ConnectTimeout) -> str:
    """The same sentence for a connection refused, not found or not made in time: the URL, why, what to check."""
    if isinstance(exc, httpx2.ConnectTimeout):
        limit = _connect_timeout(exc)
        why = "in time" if limit is None else f"within connect_timeout_s={limit:g}s"
    else:
        why = f"({_connect_failure(exc)})"
    return f"Could not connect to {origin} {why}: is OPENROUTER_BASE_URL right and the server up?"


def _connect_timeout(exc: httpx2.HTTPError) -> float | None:
    """The connect timeout of the request that failed, from its `timeout` extension (both transports set it)."""
    timeouts = exc.request.extensions.get("timeout")
    limit = timeouts.get("connect") if isinstance(timeouts, Mapping) else None
    return float(limit) if isinstance(limit, int | float) else None


def _origin(exc: httpx2.HTTPError) -> str | None:
    """`scheme://host[:port]` of the request that failed, if it is known."""
    try:
        url = exc.request.url
    except RuntimeError:  # an exception raised without its request
        return None
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"


def _connect_failure(exc: BaseException) -> str:
    """Why a connection could not be made, from the OS error behind `exc` (both transports chain it)."""
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"host not found: {cause.strerror or cause}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause}"
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


def malformed(content: bytes | str, *, model: str | None, reason: str) -> MalformedResponseError:
    """The error for a body that is not the JSON OpenRouter sends."""
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    excerpt = text.strip()[:120]
    return MalformedResponseError(f"Malformed answer from OpenRouter ({reason}): {excerpt!r}", model=model)


def _parsed_envelope(content: bytes) -> ErrorEnvelope | None:
    try:
        return ErrorEnvelope.model_validate_json(content)
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
