"""Budget under fire: hundreds of concurrent `execute` calls, cheap and expensive, with faults, against a daily
budget that fits about a tenth of them."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from modelyard.sandbox import Sandbox
from tests.reliability.harness import Figures, by_size, ledger_cost, money, spend_totals, stdio_server, text_of
from tests.server.conftest import server_env

pytestmark = [pytest.mark.anyio, pytest.mark.reliability]

KEY = "sk-or-v1-budget"
EXPENSIVE, MIDDLE, CHEAP = "openai/gpt-4o", "anthropic/claude-haiku-4.5", "openai/gpt-4o-mini"
MAX_TOKENS = 64
REFUSAL = re.compile(
    r"Refused before sending: the daily budget has \$(?P<left>[0-9.]+) left, but the worst-case cost of the "
    r"cheapest eligible model is \$(?P<estimate>[0-9.]+)\."
)
# Calls whose models all failed (faults), or whose only model's breaker the faults had opened.
ALL_FAILED = re.compile(
    r"^Error executing tool execute: (All candidates failed \(\d+ attempts?\)\. |No model meets the constraints: "
    r".*paused by a circuit breaker|Gave up after max_attempts=\d+ \(\d+ of \d+ candidate models tried\): )",
    re.DOTALL,
)


@dataclass(frozen=True)
class Fire:
    calls: int
    share_that_fits: float = 0.10


def _arguments(index: int) -> dict[str, Any]:
    """A third expensive-first with a cheap fallback, a third mid-priced, a third cheap only."""
    base = {"prompt": f"Budget request {index}: one line on tides.", "max_tokens": MAX_TOKENS, "cache": "off"}
    chains = [{"model": EXPENSIVE, "models": [CHEAP]}, {"model": MIDDLE}, {"model": CHEAP}]
    return {**base, **chains[index % 3]}


async def _costs(client: Any, calls: int) -> tuple[Decimal, Decimal]:
    """(sum of every call's actual cost, sum of their worst cases), from one calibration call of each kind.

    The sandbox answers deterministically, so a kind's cost barely varies; the calibration runs on its own store.
    """
    actual, worst = {}, {}
    for kind in range(3):
        plan = (await client.call_tool("plan_route", _arguments(kind))).structured_content
        answer = (await client.call_tool("execute", _arguments(kind))).structured_content
        assert plan is not None and answer is not None
        worst[kind], actual[kind] = money(plan["estimated_cost"]), money(answer["cost"])
    total = sum((actual[i % 3] for i in range(calls)), Decimal(0))
    return total, sum((worst[i % 3] for i in range(calls)), Decimal(0))


async def _once_reconciled(client: Any) -> dict[str, Any] | None:
    """The budget once no hold is left: an answer that broke after it began (malformed JSON here) keeps
    its hold until the server has read OpenRouter's record of what it cost (about a second)."""
    status: dict[str, Any] | None = None
    for _ in range(100):
        status = (await client.call_tool("get_budget", {})).structured_content
        if status is None or money(status["reserved"]) == 0:
            break
        await anyio.sleep(0.1)
    return status


def _arm_faults(sandbox: Sandbox, calls: int) -> None:
    share = max(2, calls // 50)
    sandbox.state.faults.add(model=EXPENSIVE, kind="rate_limit", count=share, retry_after=0.05)
    sandbox.state.faults.add(model=EXPENSIVE, kind="server_error", count=share)
    sandbox.state.faults.add(model=MIDDLE, kind="error_in_200", count=share)
    sandbox.state.faults.add(model=CHEAP, kind="malformed_json", count=share)
    sandbox.state.faults.add(model="*", kind="latency", latency_ms=30, count=calls)


@pytest.mark.parametrize("size", by_size(Fire(calls=150), Fire(calls=500)))
async def test_concurrent_calls_never_spend_past_the_daily_budget_and_every_refusal_names_it(
    size: Fire, tmp_path: Path
) -> None:
    """Billed ≤ daily budget under concurrency and faults; each refusal names the budget, what is left and the cost."""
    store = tmp_path / "s.db"
    async with Sandbox.running(api_key=KEY) as sandbox:
        env = server_env(tmp_path, sandbox.base_url, key=KEY)
        calibration = {**env, "MODELYARD_STORE": f"sqlite:///{tmp_path / 'calibration.db'}"}
        with anyio.fail_after(120):
            async with stdio_server(calibration, tmp_path, tmp_path / "calibration.log") as server:
                all_of_them, worst = await _costs(server.client, size.calls)
        budget = (all_of_them * Decimal(str(size.share_that_fits))).quantize(Decimal("0.000001"))
        calibration_billed = sandbox.state.billed_total()
        env["MODELYARD_BUDGET__DAILY"] = str(budget)
        _arm_faults(sandbox, size.calls)
        texts: list[str] = []
        results: list[dict[str, Any]] = []
        began = time.monotonic()
        with anyio.fail_after(300):
            async with stdio_server(env, tmp_path, tmp_path / "server.log") as server:

                async def one(index: int) -> None:
                    result = await server.client.call_tool("execute", _arguments(index))
                    if result.is_error:
                        texts.append(text_of(result))
                    else:
                        assert result.structured_content is not None
                        results.append(result.structured_content)

                async with anyio.create_task_group() as group:
                    for index in range(size.calls):
                        group.start_soon(one, index)
                elapsed = time.monotonic() - began
                status = await _once_reconciled(server.client)
        billed = sandbox.state.billed_total() - calibration_billed
        faulted = sum(1 for entry in sandbox.state.ledger if entry.fault)

    refusals = [text for text in texts if REFUSAL.search(text)]
    upstream_failures = [text for text in texts if ALL_FAILED.match(text)]
    unclear = [text for text in texts if text not in refusals and text not in upstream_failures]
    spent = spend_totals(store)
    Figures(
        "budget",
        {
            "calls": size.calls,
            "daily_budget": str(budget),
            "cost_of_all_calls": str(all_of_them),
            "sum_of_worst_cases": str(worst),
            "answered": len(results),
            "refused": len(refusals),
            "upstream_failures": len(upstream_failures),
            "faults": faulted,
            "billed": str(billed),
            "billed_share_of_budget": round(float(billed / budget), 3),
            "wall_s": round(elapsed, 1),
        },
    ).show()
    assert len(results) + len(texts) == size.calls
    assert unclear == [], unclear[:3]
    assert billed <= budget
    assert ledger_cost(store) == billed
    assert all(total <= budget for total in spent.values())
    assert status is not None and money(status["spent_today"]) == billed and money(status["reserved"]) == 0
    assert len(refusals) >= size.calls // 10, "the budget should have refused a good share of the calls"
    assert results, "the budget should have let some calls through"
    for text in refusals:
        found = REFUSAL.search(text)
        assert found is not None
        assert Decimal(found["left"]) < Decimal(found["estimate"])  # it says why: what is left is not enough
        assert Decimal(found["left"]) <= budget
