"""When to retry the same model, how long to wait first, and when to stop the whole request.

`RetryPolicy` answers two questions for the router, which owns the loop and the sleeping:
`should_retry` (is another attempt on *this* model worth it?) and `delay_s` (how long to wait before
it). `is_final` says that no other model can help either (the key is bad or out of credit, the base
URL is not OpenRouter's API, or OpenRouter says the request itself is invalid).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from modelyard.errors import (
    AuthenticationError,
    InsufficientCreditsError,
    InvalidRequestError,
    UpstreamError,
    WrongBaseUrlError,
)

__all__ = ["RetryPolicy", "is_final"]

# Statuses (or error codes inside a 200 body) that no retry can fix, whatever the error class says.
_NEVER_RETRY = frozenset({400, 401, 402, 403, 404, 413, 422})
# 401 (bad key) and 402 (key out of credit) hold for every model: falling back cannot help.
_FINAL = frozenset({401, 402})


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Same-model retries with exponential backoff, full jitter and `Retry-After`.

    Attributes:
        max_retries: retries of the same model after its first attempt.
        base_delay_s: the backoff ceiling of the first retry; it doubles on each retry.
        max_delay_s: the highest backoff ceiling.
        max_retry_after_s: a `Retry-After` longer than this is not waited for: move to the next model.
        random: returns a float in [0, 1); injected so tests can pin the jitter.
    """

    max_retries: int = 2
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    max_retry_after_s: float = 60.0
    random: Callable[[], float] = field(default=random.random, repr=False)

    def should_retry(self, error: BaseException, retries_done: int) -> bool:
        """True when `error` is transient and the same model should be tried again.

        Args:
            error: what the last attempt raised.
            retries_done: retries of this model already made (0 after the first attempt).
        """
        if not isinstance(error, UpstreamError) or not error.retryable:
            return False
        if _status(error) in _NEVER_RETRY or retries_done >= self.max_retries:
            return False
        return error.retry_after is None or error.retry_after <= self.max_retry_after_s

    def delay_s(self, error: BaseException, retries_done: int) -> float:
        """Seconds to wait before the next retry: full jitter, but never less than `Retry-After`.

        Args:
            error: what the last attempt raised.
            retries_done: retries of this model already made (0 before the first retry).
        """
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** max(0, retries_done))
        delay = self.random() * ceiling
        retry_after = error.retry_after if isinstance(error, UpstreamError) else None
        return max(delay, retry_after) if retry_after is not None else delay


def is_final(error: BaseException) -> bool:
    """True when the whole request must stop now: the key is invalid (401) or out of credit (402), the
    base URL answers 404s that are not OpenRouter's (`WrongBaseUrlError`), or OpenRouter says the request
    itself is invalid (`InvalidRequestError`).

    Such errors hold for every model, so no fallback can help. An error object inside an HTTP 200
    body carries its code in `code` rather than `status`; both are checked.
    """
    if isinstance(error, AuthenticationError | InsufficientCreditsError | WrongBaseUrlError | InvalidRequestError):
        return True
    return isinstance(error, UpstreamError) and _status(error) in _FINAL


def _status(error: UpstreamError) -> int | None:
    """The HTTP status, else the numeric `code` of an error inside a 200 body."""
    if error.status is not None:
        return error.status
    try:
        return int(error.code) if error.code is not None else None
    except ValueError:
        return None
