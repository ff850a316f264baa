"""Issue 8's fleet: THREE `modelyard serve --transport streamable-http` processes against one Redis and one
sandbox act as one service.

- N concurrent `execute` calls spread across them with a daily budget that fits ~10% of them: the sandbox
  bills no more than the budget, every other call is a clear refusal, and `get_metrics` on ANY instance
  shows the whole fleet's totals. N is the issue's 1,000 (SCALEOUT_CALLS overrides it).
- The same deterministic prompt sent to all three at once makes ONE upstream call.
- An instance SIGKILLed mid-load loses no ledger row: every request the sandbox billed and answered to a
  live instance is in Redis's ledger. The one window no store can close is a response the killed process
  had received (or was receiving) but not yet committed: those requests are billed upstream but never
  answered to anyone, and the test bounds them by the calls in flight on that instance when it died.
  Its reservations then expire after request_timeout_s x max_attempts + reservation_margin_s.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from modelyard.store.redis import RedisStore
from tests.scaleout.fleet import Sandbox, fleet_instances, server_env, structured, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

CALLS = int(os.environ.get("SCALEOUT_CALLS", "1000"))  # the size: ~8 s on a 2-core machine
MODEL = "openai/gpt-4o-mini"
CACHED_MODEL = "openai/gpt-4.1-nano"
SLOW_MODEL = "openai/gpt-4.1-mini"
PROMPT_PRICE, COMPLETION_PRICE = Decimal("0.00000015"), Decimal("0.0000006")
MAX_TOKENS = 16
INSTANCES = 3


def _entries(ledger: dict[str, Any], model: str | None = None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = ledger["entries"]
    return [entry for entry in entries if model is None or entry["requested_model"] == model]


async def test_three_instances_one_budget_one_cache_one_ledger(sandbox: Sandbox, store: str, tmp_path: Path) -> None:
    """N concurrent executes over three instances never bill beyond one daily budget of ~N/10 worst cases;
    one deterministic prompt sent to all three at once reaches the sandbox once; every instance's metrics
    count the whole fleet."""
    rough_worst = MAX_TOKENS * COMPLETION_PRICE + 64 * PROMPT_PRICE
    daily = rough_worst * (CALLS // 10)
    env = server_env(tmp_path, sandbox.base_url, store, MODELYARD_BUDGET__DAILY=str(daily))
    outcomes: Counter[str] = Counter()
    odd: list[str] = []

    async def one(client: Client, number: int) -> None:
        arguments = {"prompt": f"Request {number:04d}: name a prime.", "model": MODEL, "max_tokens": MAX_TOKENS}
        result = await client.call_tool("execute", arguments)
        if not result.is_error:
            outcomes["answered"] += 1
        elif "Refused before sending" in text_of(result):
            outcomes["refused"] += 1
        else:
            odd.append(text_of(result))

    with anyio.fail_after(300):
        async with fleet_instances(env, tmp_path, INSTANCES) as (_, clients):
            same = {"prompt": "What is the capital of Peru?", "model": CACHED_MODEL, "temperature": 0, "max_tokens": 32}
            answers: list[dict[str, Any]] = []

            async def ask(client: Client) -> None:
                answers.append(structured(await client.call_tool("execute", same)))

            async with anyio.create_task_group() as group:
                for client in clients:
                    group.start_soon(ask, client)
            upstream_same = len(_entries(await sandbox.ledger(), CACHED_MODEL))

            started = time.monotonic()
            async with anyio.create_task_group() as group:
                for number in range(CALLS):
                    group.start_soon(one, clients[number % INSTANCES], number)
            elapsed = time.monotonic() - started
            ledger = await sandbox.ledger()
            metrics = [structured(await client.call_tool("get_metrics", {})) for client in clients]
            budgets = [structured(await client.call_tool("get_budget", {})) for client in clients]
    billed = Decimal(ledger["totals"]["billed"])
    print(
        f"\nfleet: {CALLS} calls over {INSTANCES} instances in {elapsed:.1f}s; answered {outcomes['answered']}, "
        f"refused {outcomes['refused']}; billed {billed} <= daily {daily}; upstream calls for one prompt "
        f"sent to all three: {upstream_same}"
    )
    assert upstream_same == 1, "one upstream call for the same deterministic prompt across the fleet"
    assert len({answer["content"] for answer in answers}) == 1
    assert sorted(answer["cached"] for answer in answers) == [False, True, True]
    assert not odd, odd[:3]
    assert outcomes["answered"] + outcomes["refused"] == CALLS
    assert CALLS // 20 <= outcomes["answered"] < CALLS // 5, outcomes
    assert 0 < billed <= daily
    assert len({budget["spent_today"] for budget in budgets}) == 1
    total = CALLS + len(clients)  # the load plus the three deterministic calls (one computed, two cache hits)
    assert [m["total_requests"] for m in metrics] == [total] * INSTANCES, "every instance sees the whole fleet"
    assert [m["cache_hits"] for m in metrics] == [2] * INSTANCES


async def test_an_instance_killed_mid_load_loses_no_ledger_row_and_its_reservations_expire(
    sandbox: Sandbox, store: str, tmp_path: Path
) -> None:
    """SIGKILL one of three instances while it has requests in flight (its model answers after 2.5 s):
    every billed request answered to a survivor is in Redis's ledger, the rows lost are at most the calls
    in flight on the killed instance, and its reservations expire after their short TTL."""
    timeout_s, attempts, margin_s = 6.0, 1, 1.0  # holds outlive the load (~2 s), then expire
    ttl_s = timeout_s * attempts + margin_s
    env = server_env(
        tmp_path,
        sandbox.base_url,
        store,
        MODELYARD_BUDGET__DAILY="100",
        MODELYARD_REQUEST_TIMEOUT_S=str(timeout_s),
        MODELYARD_MAX_ATTEMPTS=str(attempts),
        MODELYARD_RESERVATION_MARGIN_S=str(margin_s),
    )
    calls = 150
    in_flight = [0] * INSTANCES
    answered: list[str] = []
    failed_on = Counter[int]()
    killed, busy = anyio.Event(), anyio.Event()
    in_flight_at_kill = victim_answers = 0

    await sandbox.fault(model=SLOW_MODEL, kind="latency", latency_ms=2500)  # the victim's upstream is slow
    with anyio.fail_after(180):
        async with fleet_instances(env, tmp_path, INSTANCES) as (instances, clients):
            victim = INSTANCES - 1

            async def one(index: int, number: int) -> None:
                model = SLOW_MODEL if index == victim else MODEL
                arguments = {"prompt": f"Kill test {number:03d}.", "model": model, "max_tokens": MAX_TOKENS}
                in_flight[index] += 1
                try:
                    result = await clients[index].call_tool("execute", arguments)
                except Exception:  # the killed instance's calls end with a transport error
                    failed_on[index] += 1
                    return
                finally:
                    in_flight[index] -= 1
                if result.is_error:
                    failed_on[index] += 1
                else:
                    answered.append(str(structured(result)["generation_id"]))
                    if index == victim:
                        nonlocal victim_answers
                        victim_answers += 1
                        if victim_answers >= 3 and in_flight[victim] >= 5:  # some committed, others in flight
                            busy.set()

            async def kill_when_busy() -> None:
                nonlocal in_flight_at_kill
                await busy.wait()
                in_flight_at_kill = in_flight[victim]
                instances[victim].process.send_signal(signal.SIGKILL)
                await instances[victim].process.wait()
                killed.set()

            async def victim_share() -> None:
                """The victim's calls through a client of their own: its death tears that client down
                (an exception group out of the MCP client's tasks), which must not end the test."""
                try:
                    async with (
                        httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=60)) as http,
                        Client(streamable_http_client(instances[victim].url, http_client=http)) as client,
                    ):
                        clients[victim] = client
                        async with anyio.create_task_group() as share:
                            for number in range(victim, calls, INSTANCES):
                                share.start_soon(one, victim, number)
                                await anyio.sleep(0.02)  # staggered, so some finish while others are in flight
                except Exception:  # the whole client died with its server
                    failed_on[victim] += 1

            async with anyio.create_task_group() as group:
                group.start_soon(kill_when_busy)
                group.start_soon(victim_share)
                for number in range(calls):
                    if number % INSTANCES != victim:
                        group.start_soon(one, number % INSTANCES, number)
            (await sandbox.http.delete(f"{sandbox.control}/faults")).raise_for_status()
            async with RedisStore(store) as redis:
                held_after_load = (await redis.totals(now=time.time())).reserved
                rows = await redis.rows()
                metrics = [structured(await clients[index].call_tool("get_metrics", {})) for index in range(victim)]
                with anyio.fail_after(ttl_s + 10):
                    while (await redis.totals(now=time.time())).reserved:  # noqa: ASYNC110 - polls Redis
                        await anyio.sleep(0.25)
                expired_after = time.time()
    billed = {entry["generation_id"] for entry in _entries(await sandbox.ledger()) if entry["status"] == 200}
    stored = {row.detail.get("generation_id") for row in rows}
    lost = billed - stored
    print(
        f"\nkill: {calls} calls, {in_flight_at_kill} in flight on the killed instance; billed {len(billed)}, "
        f"rows in Redis {len(stored)}, billed but not in Redis {len(lost)}; reserved after load "
        f"{held_after_load}, expired within {ttl_s}s TTL"
    )
    assert killed.is_set() and in_flight_at_kill > 0
    assert failed_on[0] == failed_on[1] == 0, "the survivors answered every call sent to them"
    assert set(answered) <= stored, "every answered request is in Redis's ledger"
    assert len(lost) <= in_flight_at_kill, "only requests in flight on the killed instance can be unrecorded"
    assert held_after_load > 0, "the killed instance's holds outlive it until they expire"
    assert expired_after > 0
    assert metrics[0]["total_requests"] == metrics[1]["total_requests"] == len(rows)
