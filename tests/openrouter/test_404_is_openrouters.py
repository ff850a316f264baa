"""Which 404s are OpenRouter's own (fall back to the next model) and which say the base URL is wrong (stop).

OpenRouter's envelope for an authenticated request carries `user_id` (reference §6.1, §6.5; the sandbox's API
errors too, and only its answers outside `/api/v1` leave it out), and a 2026 availability error carries
`error_type`/`availability`: each marks the body as OpenRouter's whatever its message. A bare "Not Found"
envelope has been seen from the live router about a model (`GET /models/{id}/endpoints` for an unknown id),
so the message alone must not decide it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from modelyard import errors
from modelyard.openrouter.failures import Scrubber, error_from_response
from modelyard.routing.retry import is_final

URL = "https://openrouter.ai/api/v1/chat/completions"


def _error(body: bytes) -> errors.UpstreamError:
    response = httpx2.Response(404, content=body, request=httpx2.Request("POST", URL))
    return error_from_response(response, model="m", scrub=Scrubber("sk-or-v1-secret"), clock=lambda: 0.0)


OPENROUTERS: dict[str, Any] = {
    "bare Not Found, with user_id": {"error": {"message": "Not Found", "code": 404}, "user_id": "user_2x"},
    "empty message, with user_id": {"error": {"message": "", "code": 404}, "user_id": "user_2x"},
    "availability error": {
        "error": {
            "message": "Not found",
            "code": 404,
            "error_type": "not_found",
            "availability": {"code": "model_not_found", "retryable": False},
        }
    },
}


@pytest.mark.parametrize("body", OPENROUTERS.values(), ids=list(OPENROUTERS))
def test_openrouters_own_404_is_not_a_wrong_base_url(body: dict[str, Any]) -> None:
    error = _error(json.dumps(body).encode())
    assert type(error) is errors.UpstreamNotFoundError and not is_final(error)


NOT_OPENROUTERS = {
    "html page": b"<!DOCTYPE html><html><title>Not Found | OpenRouter</title></html>",
    "empty": b"",
    "plain text": b"404 page not found",
    "sandbox outside /api/v1": b'{"error":{"message":"Not Found","code":404}}',
}


@pytest.mark.parametrize("body", NOT_OPENROUTERS.values(), ids=list(NOT_OPENROUTERS))
def test_a_404_that_is_not_openrouters_still_says_to_check_the_base_url(body: bytes) -> None:
    error = _error(body)
    assert type(error) is errors.WrongBaseUrlError and is_final(error)
