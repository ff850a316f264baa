"""RetryPolicy and is_final: which failures are retried, how long to wait, when to stop everything."""

from __future__ import annotations

import pytest

from modelyard.errors import (
    AuthenticationError,
    BadGatewayError,
    BadRequestError,
    ForbiddenError,
    IncompleteStreamError,
    InsufficientCreditsError,
    MalformedResponseError,
    ModelNotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    ServiceUnavailableError,
    StreamError,
    UnprocessableError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamNotFoundError,
    UpstreamTimeoutError,
    WrongBaseUrlError,
)
from modelyard.routing.retry import RetryPolicy, is_final

TRANSIENT: list[UpstreamError] = [
    RateLimitError("x", status=429),
    RequestTimeoutError("x", status=408),
    RequestTimeoutError("x", status=524),
    ServerError("x", status=500),
    BadGatewayError("x", status=502),
    ServiceUnavailableError("x", status=503),
    ServiceUnavailableError("x", status=529),
    StreamError("x", code=502),
    IncompleteStreamError("x"),
    MalformedResponseError("x"),
    UpstreamConnectError("x"),
    UpstreamTimeoutError("x"),
]

PERMANENT: list[UpstreamError] = [
    BadRequestError("x", status=400),
    AuthenticationError("x", status=401),
    InsufficientCreditsError("x", status=402),
    ForbiddenError("x", status=403),
    UpstreamNotFoundError("x", status=404),
    PayloadTooLargeError("x", status=413),
    UnprocessableError("x", status=422),
    UpstreamError("x"),
]


def _fixed(value: float) -> RetryPolicy:
    return RetryPolicy(random=lambda: value)


@pytest.mark.parametrize("error", TRANSIENT, ids=repr)
def test_transient_upstream_errors_are_retried(error: UpstreamError) -> None:
    """429, 408/524, 5xx, stream, malformed, connect and timeout errors earn a same-model retry."""
    assert RetryPolicy().should_retry(error, 0)


@pytest.mark.parametrize("error", PERMANENT, ids=repr)
def test_request_and_account_errors_are_never_retried(error: UpstreamError) -> None:
    """400/401/402/403/404/413/422 (and a plain UpstreamError) are never retried."""
    assert not RetryPolicy().should_retry(error, 0)


def test_a_retryable_class_carrying_a_final_status_is_not_retried() -> None:
    """An error inside a 200 body whose code is 402 is not retried even if marked retryable."""
    error = StreamError("out of credit", code=402)
    assert not RetryPolicy().should_retry(error, 0)


def test_errors_that_are_not_upstream_errors_are_not_retried() -> None:
    """Our own errors and foreign exceptions say nothing transient about the model."""
    assert not RetryPolicy().should_retry(ModelNotFoundError("gpt-9", []), 0)
    assert not RetryPolicy().should_retry(RuntimeError("boom"), 0)


def test_max_retries_bounds_the_same_model_retries() -> None:
    """With max_retries=2, retries 0 and 1 are allowed and the third is not."""
    policy = RetryPolicy(max_retries=2)
    error = ServerError("x", status=500)
    assert [policy.should_retry(error, done) for done in range(4)] == [True, True, False, False]


def test_zero_max_retries_never_retries() -> None:
    """max_retries=0 moves to the next model after the first failure."""
    assert not RetryPolicy(max_retries=0).should_retry(RateLimitError("x", status=429), 0)


def test_a_retry_after_within_the_limit_is_retried() -> None:
    """A Retry-After up to max_retry_after_s is worth waiting for."""
    policy = RetryPolicy(max_retry_after_s=60)
    assert policy.should_retry(RateLimitError("x", status=429, retry_after=60), 0)


def test_a_retry_after_beyond_the_limit_moves_to_the_next_model() -> None:
    """A Retry-After longer than max_retry_after_s is not waited for."""
    policy = RetryPolicy(max_retry_after_s=60)
    assert not policy.should_retry(RateLimitError("x", status=429, retry_after=61), 0)


def test_backoff_is_full_jitter_over_an_exponential_ceiling() -> None:
    """delay = random() * min(max_delay_s, base_delay_s * 2**retries_done)."""
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=20.0, random=lambda: 0.5)
    error = ServerError("x", status=500)
    assert [policy.delay_s(error, done) for done in range(8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.parametrize("done", range(10))
def test_jitter_stays_between_zero_and_the_ceiling(done: int) -> None:
    """The lowest random gives 0 and the highest approaches the capped ceiling."""
    error = ServerError("x", status=500)
    ceiling = min(20.0, 0.5 * 2**done)
    assert _fixed(0.0).delay_s(error, done) == 0.0
    assert 0.0 < _fixed(0.999999).delay_s(error, done) <= ceiling


def test_retry_after_sets_a_floor_under_the_jittered_delay() -> None:
    """The delay is never shorter than the Retry-After the upstream asked for."""
    error = RateLimitError("x", status=429, retry_after=2)
    assert _fixed(0.0).delay_s(error, 0) == 2.0
    assert _fixed(0.5).delay_s(error, 0) == 2.0


def test_retry_after_longer_than_max_delay_is_still_honoured() -> None:
    """A permitted Retry-After beats max_delay_s: waiting less would only earn another 429."""
    error = RateLimitError("x", status=429, retry_after=45)
    assert RetryPolicy(max_delay_s=20, random=lambda: 1.0).delay_s(error, 5) == 45.0


def test_jitter_above_retry_after_is_kept() -> None:
    """When the jittered backoff exceeds Retry-After, the backoff is used."""
    error = RateLimitError("x", status=429, retry_after=1)
    assert _fixed(0.5).delay_s(error, 3) == 2.0


@pytest.mark.parametrize(
    "error",
    [
        InsufficientCreditsError("x", status=402),
        AuthenticationError("x", status=401),
        StreamError("x", code=402),
        StreamError("x", code="401"),
        UpstreamError("x", status=402),
    ],
    ids=repr,
)
def test_a_bad_or_empty_key_is_final(error: UpstreamError) -> None:
    """401 and 402 (as a status or as the code inside a 200 body) stop the whole request."""
    assert is_final(error)


def test_a_wrong_base_url_is_final_and_never_retried() -> None:
    """A 404 from a path that is not OpenRouter's API holds for every model, as a bad key does."""
    error = WrongBaseUrlError("x", status=404)
    assert is_final(error) and not _fixed(0.5).should_retry(error, 0)


@pytest.mark.parametrize(
    "error",
    [
        *TRANSIENT,
        BadRequestError("x", status=400),
        ForbiddenError("x", status=403),
        UpstreamNotFoundError("x", status=404),
        StreamError("x", code=404),
        StreamError("x", code="oops"),
    ],
    ids=repr,
)
def test_other_failures_are_not_final(error: UpstreamError) -> None:
    """Other failures leave room for a retry or the next model."""
    assert not is_final(error)


def test_foreign_exceptions_are_not_final() -> None:
    """is_final only judges upstream errors."""
    assert not is_final(ValueError("x"))
