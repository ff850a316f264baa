"""Child-process bodies for the cross-process Redis store tests (importable, so 'spawn' can run them)."""

from __future__ import annotations

import threading
from decimal import Decimal
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import anyio

from modelyard.errors import BudgetExceededError
from modelyard.store import BudgetLimits, LedgerRow
from modelyard.store.redis import RedisStore

TTL_S = 600.0


def reserve_many(
    url: str, tries: int, amount: str, daily: str, now: float, start: Barrier, granted: Queue[int]
) -> None:
    """Open a store of its own, wait for every sibling, then try `tries` concurrent reservations."""
    start.wait(timeout=60)
    granted.put(anyio.run(_reserve_concurrently, url, tries, Decimal(amount), Decimal(daily), now))


async def _reserve_concurrently(url: str, tries: int, amount: Decimal, daily: Decimal, now: float) -> int:
    granted = 0

    async def one() -> None:
        nonlocal granted
        try:
            await store.reserve(amount, BudgetLimits(daily=daily), now=now, ttl_s=TTL_S)
        except BudgetExceededError:
            return
        granted += 1

    async with RedisStore(url) as store, anyio.create_task_group() as group:
        for _ in range(tries):
            group.start_soon(one)
    return granted


def commit_then_hold(url: str, costs: list[str], holds: list[str], now: float, ready: Queue[str]) -> None:
    """Commit one ledger row per cost (each through a reservation), keep `holds` reserved, then
    report ready and block until the parent kills this process."""
    anyio.run(_commit_then_hold, url, costs, holds, now)
    ready.put("ready")
    threading.Event().wait(120)


async def _commit_then_hold(url: str, costs: list[str], holds: list[str], now: float) -> None:
    limits = BudgetLimits(daily=Decimal(1))
    async with RedisStore(url) as store:
        for number, cost in enumerate(costs):
            reservation = await store.reserve(Decimal(cost), limits, now=now, ttl_s=TTL_S)
            row = LedgerRow(id=f"child-{number}", ts=now, requested_model="auto", cost=Decimal(cost))
            await store.commit(reservation.id, row)
        for amount in holds:
            await store.reserve(Decimal(amount), limits, now=now, ttl_s=TTL_S)
