"""`credits()`: the account's purchased credit and its usage from `GET /credits`, as exact USD.

Since 2026 only a management key may read `/credits`; an ordinary key gets OpenRouter's 403, raised as
the `ForbiddenError` it is (callers show the account's credit only when it can be read). Each case runs
over an injected transport, or against the sandbox over loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx2
import pytest

from modelyard import errors
from modelyard.openrouter import OpenRouterClient
from modelyard.sandbox import Sandbox
from tests.sandbox.conftest import chat

pytestmark = pytest.mark.anyio

KEY = "sk-or-v1-sandbox"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.running(api_key=KEY) as sb:
        yield sb


def _answering(body: dict[str, Any], seen: list[httpx2.Request]) -> httpx2.MockTransport:
    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=body)

    return httpx2.MockTransport(handler)


async def test_credits_reads_the_references_answer_as_exact_dollars_and_what_is_left() -> None:
    """The reference's example (§7.2): $100.5 bought, $25.75 used, so $74.75 left, with no float in between."""
    seen: list[httpx2.Request] = []
    transport = _answering({"data": {"total_credits": 100.5, "total_usage": 25.75}}, seen)
    async with OpenRouterClient(KEY, base_url="https://or.test/api/v1", transport=transport) as client:
        credits = await client.credits()
    assert (credits.total_credits, credits.total_usage) == (Decimal("100.5"), Decimal("25.75"))
    assert credits.remaining == Decimal("74.75")
    assert seen[0].url == "https://or.test/api/v1/credits" and seen[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    "data", [{"total_credits": None, "total_usage": 1}, {"total_usage": 1}, {}], ids=["null", "missing", "empty"]
)
async def test_credits_without_a_total_leave_what_is_left_unknown_not_zero(data: dict[str, Any]) -> None:
    transport = _answering({"data": data}, [])
    async with OpenRouterClient(KEY, base_url="https://or.test/api/v1", transport=transport) as client:
        credits = await client.credits()
    assert credits.total_credits is None and credits.remaining is None


async def test_credits_that_are_no_record_are_a_malformed_answer() -> None:
    transport = _answering({"data": [1, 2]}, [])
    async with OpenRouterClient(KEY, base_url="https://or.test/api/v1", transport=transport) as client:
        with pytest.raises(errors.MalformedResponseError, match="not a credits record"):
            await client.credits()


async def test_credits_from_the_sandbox_are_its_purchases_less_what_it_billed(sandbox: Sandbox) -> None:
    async with (
        OpenRouterClient(KEY, base_url=sandbox.base_url) as client,
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        await http.post(f"{sandbox.base_url}/chat/completions", json=chat())
        credits = await client.credits()
    billed = sandbox.state.billed_total()
    assert billed > 0 and (credits.total_credits, credits.total_usage) == (Decimal(100), billed)
    assert credits.remaining == Decimal(100) - billed


async def test_a_key_that_may_not_read_the_accounts_credit_gets_openrouters_403(sandbox: Sandbox) -> None:
    """An ordinary key in 2026 (the sandbox's `credits_need_management_key`): a ForbiddenError, not a crash."""
    sandbox.state.config.credits_need_management_key = True
    async with OpenRouterClient(KEY, base_url=sandbox.base_url) as client:
        with pytest.raises(errors.ForbiddenError) as caught:
            await client.credits()
    assert caught.value.status == 403 and "Only management keys can perform this operation" in str(caught.value)


async def test_credits_without_a_key_says_how_to_set_one() -> None:
    async with OpenRouterClient(None, base_url="https://or.test/api/v1") as client:
        with pytest.raises(errors.ConfigurationError, match="OPENROUTER_API_KEY"):
            await client.credits()
