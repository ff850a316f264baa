"""The one exception tree of modelyard.

```
ModelyardError
├── ConfigurationError            settings are missing or inconsistent (e.g. no API key)
├── UpstreamError                 OpenRouter (or the network to it) failed one request
│   ├── BadRequestError           400 (also an unknown model id upstream)
│   │   └── InvalidRequestError   400 that OpenRouter says is the request's own (every model would refuse it)
│   ├── AuthenticationError       401
│   ├── InsufficientCreditsError  402: the OpenRouter key is out of credit
│   ├── ForbiddenError            403 (moderation or guardrail block)
│   ├── UpstreamNotFoundError     404 (no endpoints for the model / request)
│   │   ├── PriceFilteredError    404: no endpoint of the model is priced within the `provider.max_price` sent
│   │   └── WrongBaseUrlError     404 from a path that is not OpenRouter's API (OPENROUTER_BASE_URL is wrong)
│   ├── RequestTimeoutError       408 and 524
│   ├── PayloadTooLargeError      413
│   ├── UnprocessableError        422
│   ├── RateLimitError            429
│   ├── ServerError               500 and any other 5xx
│   ├── BadGatewayError           502
│   ├── ServiceUnavailableError   503 and 529
│   ├── StreamError               an error chunk inside a 200 stream or body
│   ├── IncompleteStreamError     a stream that ended without a finish reason
│   ├── MalformedResponseError    a body that is not the JSON OpenRouter sends
│   ├── UpstreamConnectError      the connection could not be made or was reset
│   └── UpstreamTimeoutError      no answer within the read timeout
├── ModelNotFoundError            a model reference that names no model (lists the closest ids)
├── NoCandidatesError             every model was excluded by the request's constraints
├── BudgetExceededError           the worst-case cost does not fit a budget
├── SchemaValidationError         the answer is not JSON of the requested schema
└── AllCandidatesFailedError      every attempt failed; carries each attempt's error
```

Foreign errors (httpx2, json, sqlite) are mapped to these at the boundary that meets them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from modelyard.error_text import billed_note, budget_advice, dollars, with_note

__all__ = [
    "AllCandidatesFailedError",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigurationError",
    "ForbiddenError",
    "IncompleteStreamError",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "MalformedResponseError",
    "ModelNotFoundError",
    "ModelyardError",
    "NoCandidatesError",
    "PayloadTooLargeError",
    "PriceFilteredError",
    "RateLimitError",
    "RequestTimeoutError",
    "SchemaValidationError",
    "ServerError",
    "ServiceUnavailableError",
    "StoreUnavailableError",
    "StreamError",
    "UnprocessableError",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamNotFoundError",
    "UpstreamTimeoutError",
    "WrongBaseUrlError",
    "error_for_status",
]


class ModelyardError(Exception):
    """Base of every error modelyard raises on purpose.

    Attributes:
        billed: USD OpenRouter billed the failed request for all the same (answers the requested schema
            rejected before it failed); None when an attempt may have been billed at a cost not known yet.
        retry_after_s: seconds to wait before sending the request again, when the failure says (a
            `Retry-After`, a circuit breaker's cooldown); None when it does not.
    """

    billed: Decimal | None = Decimal(0)
    retry_after_s: float | None = None


class ConfigurationError(ModelyardError):
    """Settings are missing or inconsistent; the message says what to set."""


class StoreUnavailableError(ModelyardError):
    """The store does not answer (a Redis server that is down or unreachable); the message names it,
    without its password, and what to check."""


class UpstreamError(ModelyardError):
    """One request to OpenRouter failed.

    Attributes:
        status: the HTTP status (or the `code` of an error inside a 200 body), if any.
        code: OpenRouter's `error.code` as sent (an int, sometimes a string), if any.
        message: the human-readable message, with any secret scrubbed.
        metadata: OpenRouter's `error.metadata` (provider name, raw upstream text, headers...).
        retry_after (also `retry_after_s`): seconds to wait before retrying, from `Retry-After` or `metadata.headers`.
        model: the model the request was for, when known.
        status_in_message: the message is a sentence written for the user that quotes the status
            itself, so `str()` does not put it in front again.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
        model: str | None = None,
        status_in_message: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.retry_after = self.retry_after_s = retry_after
        self.model = model
        self.status_in_message = status_in_message

    @property
    def kind(self) -> str:
        """A short stable name for this failure (used in attempts and metrics)."""
        return _KIND_BY_CLASS.get(type(self), "upstream_error")

    def __str__(self) -> str:
        status = f"{self.status} " if self.status is not None and not self.status_in_message else ""
        return with_note(f"{status}{self.message}", billed_note(self.billed))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r})"


class BadRequestError(UpstreamError):
    """400: the request is invalid (also an unknown model id)."""


class InvalidRequestError(BadRequestError):
    """400 that OpenRouter itself says is about the request (its `invalid_request`/`invalid_prompt`), not one
    model's limit: every model would refuse it, so the request stops and the caller fixes it."""


class AuthenticationError(UpstreamError):
    """401: the API key is missing, invalid or disabled."""


class InsufficientCreditsError(UpstreamError):
    """402: the OpenRouter key is out of credit (or its limit is spent)."""


class ForbiddenError(UpstreamError):
    """403: forbidden, most often a moderation or guardrail block."""


class UpstreamNotFoundError(UpstreamError):
    """404: no model or no endpoint can serve this request."""


class PriceFilteredError(UpstreamNotFoundError):
    """404: OpenRouter found no endpoint of the model priced at or below the `provider.max_price` the attempt
    carried (its cheapest provider is down, or dearer than the catalog said): another model may well be."""


class WrongBaseUrlError(UpstreamNotFoundError):
    """404 from a path that is not OpenRouter's API (a web page, or a bare "Not Found"): the base URL is
    wrong, not the model, so no other model can help either."""


class RequestTimeoutError(UpstreamError):
    """408 or 524: OpenRouter or its edge timed out."""

    retryable = True


class PayloadTooLargeError(UpstreamError):
    """413: the request body is too large."""


class UnprocessableError(UpstreamError):
    """422: the request is well-formed but cannot be processed."""


class RateLimitError(UpstreamError):
    """429: rate limited by OpenRouter or the provider."""

    retryable = True


class ServerError(UpstreamError):
    """500 (or another 5xx): an internal error upstream."""

    retryable = True


class BadGatewayError(ServerError):
    """502: the provider is down or returned an invalid answer."""


class ServiceUnavailableError(ServerError):
    """503 or 529: no provider available right now, or overloaded."""


class StreamError(UpstreamError):
    """An `error` object inside a 200 answer: mid-stream or in a non-streamed body."""

    retryable = True


class IncompleteStreamError(UpstreamError):
    """The stream ended (or broke) before a finish reason arrived."""

    retryable = True


class MalformedResponseError(UpstreamError):
    """The body is not the JSON OpenRouter sends."""

    retryable = True


class UpstreamConnectError(UpstreamError):
    """The connection could not be made, or was reset."""

    retryable = True


class UpstreamTimeoutError(UpstreamError):
    """No answer arrived within the read timeout."""

    retryable = True


_KIND_BY_CLASS: dict[type[UpstreamError], str] = {
    UpstreamError: "upstream_error",
    BadRequestError: "bad_request",
    InvalidRequestError: "invalid_request",
    AuthenticationError: "authentication",
    InsufficientCreditsError: "insufficient_credits",
    ForbiddenError: "forbidden",
    UpstreamNotFoundError: "not_found",
    PriceFilteredError: "price_filtered",
    WrongBaseUrlError: "wrong_base_url",
    RequestTimeoutError: "request_timeout",
    PayloadTooLargeError: "payload_too_large",
    UnprocessableError: "unprocessable",
    RateLimitError: "rate_limited",
    ServerError: "server_error",
    BadGatewayError: "bad_gateway",
    ServiceUnavailableError: "service_unavailable",
    StreamError: "stream_error",
    IncompleteStreamError: "incomplete_stream",
    MalformedResponseError: "malformed_response",
    UpstreamConnectError: "connect_error",
    UpstreamTimeoutError: "timeout",
}

_CLASS_BY_STATUS: dict[int, type[UpstreamError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: ForbiddenError,
    404: UpstreamNotFoundError,
    408: RequestTimeoutError,
    413: PayloadTooLargeError,
    422: UnprocessableError,
    429: RateLimitError,
    500: ServerError,
    502: BadGatewayError,
    503: ServiceUnavailableError,
    524: RequestTimeoutError,
    529: ServiceUnavailableError,
}


def error_for_status(status: int) -> type[UpstreamError]:
    """The error class for an HTTP status (unknown 5xx are `ServerError`, other codes `UpstreamError`)."""
    if status in _CLASS_BY_STATUS:
        return _CLASS_BY_STATUS[status]
    if 500 <= status < 600:
        return ServerError
    if 400 <= status < 500:
        return BadRequestError
    return UpstreamError


class ModelNotFoundError(ModelyardError):
    """A model reference that names no model, or more than one.

    Attributes:
        reference: what the caller asked for.
        suggestions: the closest model ids, best first.
    """

    def __init__(self, reference: str, suggestions: Sequence[str], *, ambiguous: bool = False) -> None:
        self.reference = reference
        self.suggestions = list(suggestions)
        self.ambiguous = ambiguous
        what = "is ambiguous" if ambiguous else "is not a known model"
        hint = f"; did you mean: {', '.join(self.suggestions)}" if self.suggestions else ""
        super().__init__(f"{reference!r} {what}{hint}. Use list_models to see the ids.")


class NoCandidatesError(ModelyardError):
    """Every model was excluded by the request's constraints.

    Attributes:
        exclusions: model id -> why it was excluded (a sample when the catalog is large).
        retry_after_s: when only open circuit breakers stand in the way, the seconds until the first of them
            lets a trial request through.
    """

    def __init__(
        self, message: str, exclusions: Mapping[str, str] | None = None, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.exclusions = dict(exclusions or {})
        self.retry_after_s = retry_after_s


class BudgetExceededError(ModelyardError):
    """The worst-case cost of the request does not fit a budget.

    Attributes:
        budget: which budget refused (`per_request`, `daily`, `monthly`, `max_cost`).
        remaining: what is left of it, in USD.
        estimate: the worst-case cost of the cheapest candidate that was considered, in USD.
        limit, spent, held: the limit and what is spent and held by requests in flight (daily, monthly).
        source: where the limit comes from (`config`, `run-time`, `both`; None when not known), which decides
            who can lift it and how.
    """

    def __init__(
        self,
        budget: str,
        remaining: Decimal,
        estimate: Decimal | None,
        detail: str = "",
        *,
        limit: Decimal | None = None,
        spent: Decimal = Decimal(0),
        held: Decimal = Decimal(0),
        source: str | None = None,
    ) -> None:
        self.budget, self.remaining, self.estimate, self.detail = budget, remaining, estimate, detail
        self.limit, self.spent, self.held, self.source = limit, spent, held, source
        est = dollars(estimate) if estimate is not None else "unknown"
        extra = f" {detail}" if detail else ""
        super().__init__(
            f"Refused before sending: the {budget} budget has {dollars(remaining)} left, but the worst-case cost "
            f"of the cheapest eligible model is {est}.{extra} {budget_advice(self)}"
        )

    @classmethod
    def over_limit(
        cls, budget: str, amount: Decimal, *, limit: Decimal, spent: Decimal, held: Decimal, remaining: Decimal
    ) -> BudgetExceededError:
        """`amount` does not fit `limit`, of which `spent` is spent and `held` reserved: the message says all three."""
        detail = f"(limit {dollars(limit)}, spent {dollars(spent)}, held by requests in flight {dollars(held)})"
        return cls(budget, remaining, amount, detail, limit=limit, spent=spent, held=held)

    def from_source(self, source: str) -> BudgetExceededError:
        """The same refusal, its advice written for a limit that comes from `source`."""
        return BudgetExceededError(
            self.budget,
            self.remaining,
            self.estimate,
            self.detail,
            limit=self.limit,
            spent=self.spent,
            held=self.held,
            source=source,
        )


class SchemaValidationError(ModelyardError):
    """The model's answer is not valid JSON of the requested schema."""


class AllCandidatesFailedError(ModelyardError):
    """No candidate answered: every one failed, or a limit (`max_attempts`, `timeout_s`) stopped the chain first.

    Attributes:
        errors: (model id, error) per candidate that failed or was refused, in order.
        attempts: upstream attempts made; tried: candidate models one was sent to, of `candidates`.
        gave_up: what stopped the chain before every candidate was reached ("after max_attempts=6"), or None.
        billed: USD OpenRouter billed for the attempts all the same (answers the requested schema
            rejected); None when one may have been billed at a cost not known yet.
        retry_after_s: the shortest wait any failed model's upstream asked for; None when none asked.
    """

    def __init__(
        self,
        errors: Sequence[tuple[str, BaseException]],
        *,
        attempts: int | None = None,
        billed: Decimal | None = Decimal(0),
        tried: int | None = None,
        candidates: int | None = None,
        gave_up: str | None = None,
    ) -> None:
        self.errors = list(errors)
        self.attempts = attempts if attempts is not None else len(self.errors)
        self.billed, self.tried, self.candidates, self.gave_up = billed, tried, candidates, gave_up
        waits = [w for _, e in self.errors if isinstance(e, ModelyardError) and (w := e.retry_after_s) is not None]
        self.retry_after_s = min(waits) if waits else None
        head = f"All candidates failed ({self.attempts} attempt{'' if self.attempts == 1 else 's'}). "
        if gave_up is not None:
            head = f"Gave up {gave_up} ({tried} of {candidates} candidate models tried): "
        lines = "; ".join(f"{model}: {error}" for model, error in self.errors) or "no attempt was made"
        super().__init__(with_note(f"{head}{lines}", billed_note(billed)))

    def with_billed(self, billed: Decimal | None) -> AllCandidatesFailedError:
        """The same failure, its message written for another bill."""
        return AllCandidatesFailedError(
            self.errors,
            attempts=self.attempts,
            billed=billed,
            tried=self.tried,
            candidates=self.candidates,
            gave_up=self.gave_up,
        )
