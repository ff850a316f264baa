"""`test_connection` says when the key or the account has too little credit left for a request."""

from __future__ import annotations

from decimal import Decimal

import pytest
from mcp import Client

from modelyard.sandbox import Sandbox
from tests.tools.calls import answer, refusal

pytestmark = pytest.mark.anyio

# What a request at the default 4096 max_tokens needs on the sandbox's cheapest paid model (OpenRouter's 402
# pre-check: max_tokens at the completion price): mistralai/mistral-nemo, $0.00000003 a token.
CHEAPEST = Decimal("0.00012288")


async def test_a_key_limit_too_small_for_one_request_is_a_problem_and_execute_then_fails_with_402(
    client: Client, sandbox: Sandbox
) -> None:
    """A $0.0000001 limit was reported as credit_remaining with no problem; every paid call then failed."""
    sandbox.state.set_key_limit(Decimal("1e-07"))
    out = await answer(client, "test_connection")
    assert Decimal(str(out["credit_remaining"])) == Decimal("1e-07")
    assert out["problems"] == [
        "The key's limit has $0.0000001 left, less than the $0.00012288 OpenRouter needs for a request at the "
        "default max_tokens 4096 even to the cheapest paid model (mistralai/mistral-nemo): such requests will fail "
        "with 402 (out of credit); raise the key's limit at https://openrouter.ai/settings/keys."
    ]
    assert "out of credit" in await refusal(client, "execute", prompt="hi", model="mistralai/mistral-nemo")


async def test_a_spent_key_limit_is_a_problem(client: Client, sandbox: Sandbox) -> None:
    sandbox.state.set_key_limit(Decimal(0))
    out = await answer(client, "test_connection")
    assert out["problems"] == [
        "The key's limit is spent ($0 left): requests to paid models will fail with 402 (out of credit); raise "
        "the key's limit at https://openrouter.ai/settings/keys."
    ]


async def test_a_key_limit_that_holds_one_request_to_the_cheapest_model_is_no_problem(
    client: Client, sandbox: Sandbox
) -> None:
    """At the threshold exactly, the 402 pre-check lets the request through: no problem, and execute answers."""
    sandbox.state.set_key_limit(CHEAPEST)
    assert (await answer(client, "test_connection"))["problems"] == []
    await answer(client, "execute", prompt="hi", model="mistralai/mistral-nemo")


async def test_an_account_out_of_credit_is_a_problem_that_says_where_to_add_credit(
    client: Client, sandbox: Sandbox
) -> None:
    """The key has no limit of its own; the account's credit (`/credits`) is what runs out."""
    sandbox.state.config.total_credits = Decimal(0)
    out = await answer(client, "test_connection")
    assert out["credit_remaining"] is None and Decimal(str(out["account_credit_remaining"])) == 0
    assert out["problems"] == [
        "The account's credit is spent ($0 left): requests to paid models will fail with 402 (out of credit); "
        "add credit at https://openrouter.ai/settings/credits."
    ]
