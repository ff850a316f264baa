"""What an upstream error tells the agent: how long OpenRouter asks it to wait, and whether a 400 is the
request's own mistake (stop) or one model's limit (fall back).

The 400 rule is deliberately narrow (reference §6.4, §6.5): only OpenRouter's own verdict that the request
is invalid (`error_type` `invalid_request`/`invalid_prompt`, no provider named, no upstream `raw`) holds for
every model. A provider's 400 can be its own strictness (one provider's tool-schema rule), and a model id,
context length or max_tokens 400 is about the model, so those still fall back.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from modelyard import errors
from modelyard.openrouter.failures import Scrubber, error_from_response
from modelyard.routing.retry import RetryPolicy, is_final

URL = "https://openrouter.ai/api/v1/chat/completions"
NOW = 1_788_220_740.0


def _error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> errors.UpstreamError:
    response = httpx2.Response(status, json=body, headers=headers or {}, request=httpx2.Request("POST", URL))
    return error_from_response(response, model="openai/gpt-4o", scrub=Scrubber(None), clock=lambda: NOW)


def _upstream_429() -> dict[str, Any]:
    raw = "openai/gpt-4o is temporarily rate-limited upstream. Please retry shortly."
    return {"error": {"message": "Provider returned error", "code": 429, "metadata": {"raw": raw}}, "user_id": "u"}


def test_a_429_with_retry_after_says_how_long_openrouter_asks_to_wait() -> None:
    """`Retry-After: 120` is in the text the agent reads, and in `retry_after_s`, beside OpenRouter's words."""
    error = _error(429, _upstream_429(), {"Retry-After": "120"})
    assert str(error).startswith("429 rate limited: OpenRouter asks to wait 120 s. Provider returned error")
    assert "Please retry shortly" in str(error)
    assert error.retry_after_s == 120


def test_a_platform_429_says_the_wait_until_its_reset_as_a_long_one_reads() -> None:
    """A daily cap's reset (epoch milliseconds in `metadata.headers`) is said in seconds, and roughly in hours."""
    reset = str(int((NOW + 6 * 3600) * 1000))
    metadata = {"headers": {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}}
    body = {"error": {"message": "Rate limit exceeded: free-models-per-day.", "code": 429, "metadata": metadata}}
    error = _error(429, body)
    assert "rate limited: OpenRouter asks to wait 21600 s (about 6 h)." in str(error)
    assert error.retry_after_s == pytest.approx(21600)


def test_a_503_with_retry_after_says_the_wait_too() -> None:
    body = {"error": {"message": "Service temporarily unavailable", "code": 503}}
    error = _error(503, body, {"Retry-After": "30"})
    assert str(error) == "503 unavailable: OpenRouter asks to wait 30 s. Service temporarily unavailable"


def test_a_429_without_a_wait_promises_none() -> None:
    error = _error(429, _upstream_429())
    assert "asks to wait" not in str(error) and error.retry_after_s is None


def test_an_error_that_is_not_upstream_has_no_wait_to_give() -> None:
    assert errors.SchemaValidationError("not JSON").retry_after_s is None


def _openrouters_own_400(error_type: str) -> dict[str, Any]:
    message = "Invalid tool parameters schema: tools[0].function.parameters.type must be a JSON Schema type"
    return {"error": {"message": message, "code": 400, "metadata": {"error_type": error_type}}, "user_id": "u"}


@pytest.mark.parametrize("error_type", ["invalid_request", "invalid_prompt"])
def test_openrouters_own_verdict_that_the_request_is_invalid_stops_the_request(error_type: str) -> None:
    """Every model would refuse it: the error is final and says it is the request's to fix."""
    error = _error(400, _openrouters_own_400(error_type))
    assert isinstance(error, errors.InvalidRequestError) and is_final(error)
    assert not RetryPolicy().should_retry(error, 0)
    assert str(error).startswith(f"400 OpenRouter rejected the request itself ({error_type}: Invalid tool param")
    assert "the fallback stops" in str(error) and "Fix the request" in str(error)


def test_a_string_code_invalid_prompt_is_the_requests_mistake_too() -> None:
    """The shape OpenRouter's Responses API sends: the kind in `code`, a string."""
    body = {"error": {"message": "Invalid request", "code": "invalid_prompt"}}
    assert isinstance(_error(400, body), errors.InvalidRequestError)


MODEL_400S: dict[str, dict[str, Any]] = {
    "unknown model id": {"error": {"message": "x/y is not a valid model ID", "code": 400}, "user_id": "u"},
    "context length": {
        "error": {
            "message": "This endpoint's maximum context length is 8192 tokens.",
            "code": 400,
            "metadata": {"error_type": "context_length_exceeded"},
        }
    },
    "a provider's own tool-schema rule": {
        "error": {
            "message": "Provider returned error",
            "code": 400,
            "metadata": {
                "error_type": "invalid_request",
                "provider_name": "DeepSeek",
                "raw": "Invalid tool parameters schema : field `anyOf`: missing field `type`",
            },
        }
    },
    "no error type at all": {"error": {"message": "Invalid request parameters", "code": 400}},
}


@pytest.mark.parametrize("body", MODEL_400S.values(), ids=list(MODEL_400S))
def test_a_400_that_may_be_about_the_model_still_falls_back(body: dict[str, Any]) -> None:
    error = _error(400, body)
    assert type(error) is errors.BadRequestError and not is_final(error)


# --------------------------------------------------------------------------- a 404 of provider.max_price


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {"error": {"code": 404, "message": "No endpoints found matching your price limits (provider.max_price)."}},
            id="said in the message",
        ),
        pytest.param(
            {
                "error": {
                    "code": 404,
                    "message": "No endpoints found for openai/gpt-4o.",
                    "availability": {"code": "constraint_filtered", "constraint": {"field": "provider.max_price"}},
                },
                "user_id": "u",
            },
            id="said in the availability block",
        ),
        pytest.param(
            {"error": {"code": 404, "message": "No endpoints found.", "metadata": {"excluded_by": ["max_price"]}}},
            id="said in the metadata",
        ),
    ],
)
def test_a_404_saying_a_price_filtered_every_endpoint_is_a_price_filtered_error(body: dict[str, Any]) -> None:
    """Wherever OpenRouter says a price did it, the 404 is `PriceFilteredError`: not final, never retried on
    the same model (its price will not change in a second), so the fallback moves to the next model."""
    error = _error(404, body)
    assert isinstance(error, errors.PriceFilteredError) and isinstance(error, errors.UpstreamNotFoundError)
    assert error.kind == "price_filtered"
    assert not is_final(error) and not RetryPolicy().should_retry(error, 0)


@pytest.mark.parametrize(
    "message",
    [
        "No endpoints found that support tool use. To learn more about provider routing, visit: "
        "https://openrouter.ai/docs/provider-routing",
        "No endpoints found matching your data policy (Free model publication). Configure: "
        "https://openrouter.ai/settings/privacy",
        "Model openai/gpt-4o not found",
    ],
)
def test_a_404_for_another_reason_is_not_a_price_filtered_error(message: str) -> None:
    """Tool use, a data policy, an unknown model: a plain not-found, as before."""
    error = _error(404, {"error": {"code": 404, "message": message}, "user_id": "u"})
    assert type(error) is errors.UpstreamNotFoundError


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {"error": {"code": 404, "message": "No endpoints found for acme/price-oracle."}, "user_id": "u"},
            id="a model id with price in it",
        ),
        pytest.param(
            {
                "error": {
                    "code": 404,
                    "message": "No endpoints found for acme/price-oracle.",
                    "availability": {
                        "code": "constraint_filtered",
                        "requested_models": ["acme/price-oracle"],
                        "constraint": {"field": "provider.data_collection"},
                        "docs_url": "https://openrouter.ai/docs/guides/routing/provider-selection",
                    },
                },
                "user_id": "u",
            },
            id="a data policy, for such a model",
        ),
        pytest.param(
            {"error": {"code": 404, "message": "No endpoints found. See https://openrouter.ai/docs/price-changes"}},
            id="a link to a pricing page",
        ),
    ],
)
def test_a_404_that_only_names_a_model_or_page_with_price_in_it_is_not_a_price_filtered_error(
    body: dict[str, Any],
) -> None:
    """A model id (or a URL) is no mention of a price: such a 404 is a plain not-found, else, under a limit, the
    attempt's error would be rewritten to blame a `provider.max_price` that filtered nothing."""
    response = httpx2.Response(404, json=body, request=httpx2.Request("POST", URL))
    error = error_from_response(response, model="acme/price-oracle", scrub=Scrubber(None), clock=lambda: NOW)
    assert type(error) is errors.UpstreamNotFoundError
