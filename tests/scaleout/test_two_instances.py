"""Two `modelyard serve --transport streamable-http` processes sharing one Redis act as one: one budget
that holds under concurrent load across both, one ledger, one cache and one set of breakers."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.scaleout.fleet import Sandbox, fleet, server_env, structured, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

MODEL = "openai/gpt-4o-mini"
PROMPT_PRICE, COMPLETION_PRICE = Decimal("0.00000015"), Decimal("0.0000006")
MAX_TOKENS = 16
CALLS = 100


def _prompt(number: int) -> str:
    return f"Request {number:03d}: name one prime number."


async def _requests_to(sandbox: Sandbox, model: str | None = None) -> int:
    entries: list[dict[str, Any]] = (await sandbox.ledger())["entries"]
    return sum(1 for entry in entries if model is None or entry["requested_model"] == model)


async def test_100_concurrent_executes_across_two_instances_never_spend_beyond_one_daily_budget(
    sandbox: Sandbox, store: str, tmp_path: Path
) -> None:
    """100 executes split over both instances against a daily budget of ~10 worst cases: the sandbox bills
    no more than the budget, some calls are refused, and both instances report the same spend and ledger."""
    rough_worst = MAX_TOKENS * COMPLETION_PRICE + 64 * PROMPT_PRICE
    daily = rough_worst * 10
    env = server_env(tmp_path, sandbox.base_url, store, MODELYARD_BUDGET__DAILY=str(daily))
    outcomes: list[str] = []

    async def one(client: Client, number: int) -> None:
        arguments = {"prompt": _prompt(number), "model": MODEL, "max_tokens": MAX_TOKENS}
        result = await client.call_tool("execute", arguments)
        if not result.is_error:
            outcomes.append("answered")
        else:
            outcomes.append("refused" if "Refused before sending" in text_of(result) else text_of(result))

    with anyio.fail_after(240):
        async with fleet(env, tmp_path) as (a, b):
            plan = structured(await a.call_tool("plan_route", {"prompt": _prompt(0), "model": MODEL, "max_tokens": 16}))
            worst = Decimal(str(plan["estimated_cost"]))
            assert 5 <= daily / worst <= 15, f"the budget should fit about 10 worst cases of {worst}"
            async with anyio.create_task_group() as group:
                for number in range(CALLS):
                    group.start_soon(one, (a, b)[number % 2], number)
            billed = Decimal((await sandbox.ledger())["totals"]["billed"])
            budgets = [structured(await client.call_tool("get_budget", {})) for client in (a, b)]
            metrics = [structured(await client.call_tool("get_metrics", {})) for client in (a, b)]
    granted = outcomes.count("answered")
    assert 0 < billed <= daily
    assert 5 <= granted < CALLS, f"{granted} of {CALLS} were answered"
    assert outcomes.count("refused") == CALLS - granted, [o for o in outcomes if o not in ("answered", "refused")]
    assert budgets[0]["spent_today"] == budgets[1]["spent_today"]
    assert Decimal(str(budgets[0]["spent_today"])) <= daily
    assert [m["total_requests"] for m in metrics] == [CALLS, CALLS], "each instance sees the whole fleet's ledger"
    assert [m["successes"] for m in metrics] == [granted] * 2


async def test_a_cache_entry_ledger_rows_and_an_open_breaker_are_shared_between_instances(
    sandbox: Sandbox, store: str, tmp_path: Path
) -> None:
    """A's deterministic answer is a cache hit on B with no second upstream call; B's metrics count A's
    requests; a breaker opened by failures seen through A is open on B, which then sends nothing there."""
    env = server_env(tmp_path, sandbox.base_url, store, MODELYARD_MAX_RETRIES="0")
    broken = "openai/gpt-4.1-nano"
    deterministic = {"prompt": "What is the capital of France?", "model": MODEL, "temperature": 0, "max_tokens": 32}
    with anyio.fail_after(120):
        async with fleet(env, tmp_path) as (a, b):
            first = structured(await a.call_tool("execute", deterministic))
            second = structured(await b.call_tool("execute", deterministic))
            assert (first["cached"], second["cached"]) == (False, True)
            assert second["content"] == first["content"] and second["cost"] == 0
            assert await _requests_to(sandbox, MODEL) == 1, "the sandbox received the request once"

            await sandbox.fault(model=broken, kind="server_error")
            for _ in range(5):  # the breaker's threshold: five consecutive 5xx
                assert (await a.call_tool("execute", {"prompt": "hi", "model": broken})).is_error
            sent = await _requests_to(sandbox, broken)
            assert sent == 5
            state = None
            with anyio.fail_after(10):
                while state != "open":
                    await anyio.sleep(0.2)
                    by_model = structured(await b.call_tool("get_metrics", {}))["by_model"]
                    state = next((m["breaker"] for m in by_model if m["model"] == broken), None)
            spared = await b.call_tool("execute", {"prompt": "hi", "model": broken})
            assert spared.is_error and "breaker" in text_of(spared).lower(), text_of(spared)
            assert await _requests_to(sandbox, broken) == sent, "B sent nothing to the model A found down"

            totals = [structured(await client.call_tool("get_metrics", {})) for client in (a, b)]
    assert [m["total_requests"] for m in totals] == [8, 8], "2 cached-path calls + 5 failures + 1 refusal"
    assert [m["cache_hits"] for m in totals] == [1, 1]
