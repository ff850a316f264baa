"""Crash: kill -9 the server while requests are in flight, restart it on the same store, and check what survived."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from modelyard.sandbox import Sandbox
from modelyard.store.sqlite import SQLiteStore
from tests.reliability.harness import (
    Figures,
    by_size,
    http_server,
    http_session,
    integrity,
    ledger_cost,
    money,
    read_store,
    spend_totals,
    stdio_server,
    text_of,
)
from tests.server.conftest import server_env

pytestmark = [pytest.mark.anyio, pytest.mark.reliability]

KEY = "sk-or-v1-crash"
MODEL = "openai/gpt-4o-mini"
LATENCY_MS = 1500  # every answer takes this long, so requests are in flight when the kill comes
REQUEST_TIMEOUT_S = 3.0
MAX_ATTEMPTS = 1
TTL_S = REQUEST_TIMEOUT_S * MAX_ATTEMPTS + 60.0  # the Router's reservation TTL for these settings
COMMIT_WINDOW_S = 1.0  # the most a billed answer may take to become a ledger row under this load


@dataclass(frozen=True)
class Crash:
    in_flight: int
    wait_for_expiry: bool  # wait the real TTL out (full size), or read expires_at and ask the store (CI)


def _arguments(index: int) -> dict[str, Any]:
    return {"prompt": f"Crash request {index}: one word.", "model": MODEL, "max_tokens": 32, "cache": "off"}


async def _steady_flow(url: str, workers: int, counter: list[int]) -> None:
    """`workers` loops over two sessions, each keeping one execute in flight, until cancelled or the server dies."""

    async def worker(client: Any, index: int) -> None:
        await anyio.sleep(index / workers * LATENCY_MS / 1000)  # staggered: answers land all the time
        while True:
            try:
                await client.call_tool("execute", _arguments(index))
            except Exception:
                return  # the server was killed under this call
            counter[0] += 1
            index += workers

    async def session(numbers: range) -> None:
        async with http_session(url, read_s=30) as client, anyio.create_task_group() as group:
            for number in numbers:
                group.start_soon(worker, client, number)

    try:
        async with anyio.create_task_group() as group:
            for half in range(2):
                group.start_soon(session, range(half, workers, 2))
    except Exception:
        return  # the sessions' own teardown fails once the server is gone


def _generation_ids(store: Path) -> dict[str, Decimal]:
    """generation id -> cost of every ledger row that has a cost."""
    rows = read_store(store, "SELECT detail, cost FROM ledger WHERE cost IS NOT NULL")
    return {json.loads(detail)["generation_id"]: Decimal(cost) for detail, cost in rows}


@pytest.mark.parametrize("size", by_size(Crash(in_flight=40, wait_for_expiry=False), Crash(100, True)))
async def test_a_kill_9_mid_flight_loses_no_committed_row_leaks_no_reservation_and_budgets_still_hold(
    size: Crash, tmp_path: Path
) -> None:
    """kill -9 with requests in flight: the store is intact, billed answers that reached it are rows, holds expire."""
    store = tmp_path / "s.db"
    per_call_worst = Decimal("0.0000504")  # plan_route's worst case for _arguments on MODEL (checked below)
    budget = per_call_worst * size.in_flight * 3
    async with Sandbox.running(api_key=KEY) as sandbox:
        env = server_env(
            tmp_path,
            sandbox.base_url,
            key=KEY,
            MODELYARD_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S),
            MODELYARD_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
            MODELYARD_MAX_RETRIES="0",
            MODELYARD_BUDGET__DAILY=str(budget),
        )
        sandbox.state.faults.add(model="*", kind="latency", latency_ms=LATENCY_MS)
        answered = [0]
        with anyio.fail_after(120):
            async with http_server(env, tmp_path, tmp_path / "server.log") as server:
                async with http_session(server.url) as probe:
                    plan = (await probe.call_tool("plan_route", _arguments(0))).structured_content
                    assert plan is not None and money(plan["estimated_cost"]) <= per_call_worst
                async with anyio.create_task_group() as group:
                    group.start_soon(_steady_flow, server.url, size.in_flight, answered)
                    # Let a first wave be billed and recorded, then kill while the next wave is in flight.
                    while answered[0] < size.in_flight or _pending(sandbox) < size.in_flight * 0.9:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                    in_flight = _pending(sandbox)
                    os.kill(server.pid, signal.SIGKILL)
                    killed_at = time.time()
                    await anyio.sleep(0.5)
                    group.cancel_scope.cancel()
        # The upstream finishes what it had accepted: those answers are billed with no one to record them.
        await anyio.sleep(LATENCY_MS / 1000 + 0.5)
        billed_before_restart = sandbox.state.billed_total()
        billed = {e.generation_id: (e.cost, e.time) for e in sandbox.state.ledger if e.cost > 0}

        assert integrity(store) == "ok"
        rows = _generation_ids(store)
        held = read_store(store, "SELECT amount, expires_at FROM reservations")
        missing = {gid: info for gid, info in billed.items() if gid not in rows}
        lost = sum((cost for cost, _ in missing.values()), Decimal(0))
        # Every committed row is intact and matches what the upstream billed for that generation, exactly.
        assert set(rows) <= set(billed)
        assert all(rows[gid] == billed[gid][0] for gid in rows)
        assert sum(spend_totals(store).values()) == 2 * ledger_cost(store)  # day + month totals match the rows
        # A billed answer with no row was still being answered (or committed) when the process died.
        for _, arrived in missing.values():
            assert arrived + LATENCY_MS / 1000 >= killed_at - COMMIT_WINDOW_S, (arrived, killed_at)
        assert len(missing) <= in_flight + size.in_flight
        # The dead process's holds cover what it left unrecorded, and all expire one TTL after they were taken.
        assert len(held) >= len(missing) > 0
        assert sum(Decimal(amount) for amount, _ in held) >= lost
        assert all(expires <= killed_at + TTL_S for _, expires in held)
        latest_expiry = max(expires for _, expires in held)

        sandbox.state.faults.clear()
        if size.wait_for_expiry:
            await anyio.sleep(max(0.0, latest_expiry - time.time()) + 1.0)
        else:
            async with SQLiteStore(store) as direct:
                assert (await direct.totals(now=latest_expiry - 1)).reserved > 0
                assert (await direct.totals(now=latest_expiry + 0.001)).reserved == 0
        refused: list[str] = []
        with anyio.fail_after(180):
            async with stdio_server(env, tmp_path, tmp_path / "restart.log") as server:
                before = (await server.client.call_tool("get_budget", {})).structured_content
                assert before is not None
                for index in range(size.in_flight * 25):  # bounded: stops at the third refusal
                    result = await server.client.call_tool("execute", _arguments(10_000 + index))
                    if result.is_error:
                        refused.append(text_of(result))
                        if len(refused) >= 3:
                            break
                after = (await server.client.call_tool("get_budget", {})).structured_content
        assert after is not None
        billed_total = sandbox.state.billed_total()

    Figures(
        "crash",
        {
            "in_flight_at_kill": in_flight,
            "answered_before_kill": answered[0],
            "ledger_rows_with_cost_at_kill": len(rows),
            "billed_at_restart": len(billed),
            "billed_without_row": len(missing),
            "billed_without_row_usd": str(lost),
            "reservations_left": len(held),
            "held_usd": str(sum(Decimal(a) for a, _ in held)),
            "waited_for_expiry": size.wait_for_expiry,
            "reserved_after_restart": before["reserved"],
            "daily_budget": str(budget),
            "spent_after_burst": after["spent_today"],
            "billed_total": str(billed_total),
            "refusals_after_restart": len(refused),
        },
    ).show()
    assert integrity(store) == "ok"
    if size.wait_for_expiry:
        assert money(before["reserved"]) == 0  # the dead process's holds expired: nothing leaks
    else:
        assert money(before["reserved"]) == sum(Decimal(a) for a, _ in held)  # still counted until they expire
    assert refused and all("daily budget" in text for text in refused)
    assert money(after["spent_today"]) <= budget
    assert ledger_cost(store) == money(after["spent_today"]) == billed_total - lost
    assert billed_total <= budget + lost  # only what the dead process left unrecorded can go past the budget
    assert billed_before_restart == sum((cost for cost, _ in billed.values()), Decimal(0))


def _pending(sandbox: Sandbox) -> int:
    """Chat requests the sandbox has accepted and not yet answered."""
    return sum(1 for entry in sandbox.state.ledger if entry.status is None)
