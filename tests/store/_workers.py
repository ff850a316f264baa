"""Child-process bodies for the cross-process store tests (importable, so 'spawn' can run them)."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import anyio

from modelyard.errors import BudgetExceededError
from modelyard.store import BudgetLimits, LedgerRow, SQLiteStore

TTL_S = 600.0


def reserve_many(
    path: Path, tries: int, amount: str, daily: str, now: float, start: Barrier, granted: Queue[int]
) -> None:
    """Open the store, wait for every sibling, then try `tries` concurrent reservations."""
    store = SQLiteStore(path)
    start.wait(timeout=60)
    granted.put(anyio.run(_reserve_concurrently, store, tries, Decimal(amount), Decimal(daily), now))


async def _reserve_concurrently(store: SQLiteStore, tries: int, amount: Decimal, daily: Decimal, now: float) -> int:
    granted = 0

    async def one() -> None:
        nonlocal granted
        try:
            await store.reserve(amount, BudgetLimits(daily=daily), now=now, ttl_s=TTL_S)
        except BudgetExceededError:
            return
        granted += 1

    async with store, anyio.create_task_group() as group:
        for _ in range(tries):
            group.start_soon(one)
    return granted


def commit_then_hold(path: Path, costs: list[str], holds: list[str], now: float, ready: Queue[str]) -> None:
    """Commit one ledger row per cost (each through a reservation), keep `holds` reserved, then
    report ready and block until the parent kills this process."""
    anyio.run(_commit_then_hold, SQLiteStore(path), costs, holds, now)
    ready.put("ready")
    threading.Event().wait(120)


async def _commit_then_hold(store: SQLiteStore, costs: list[str], holds: list[str], now: float) -> None:
    limits = BudgetLimits(daily=Decimal(1))
    for number, cost in enumerate(costs):
        reservation = await store.reserve(Decimal(cost), limits, now=now, ttl_s=TTL_S)
        row = LedgerRow(id=f"child-{number}", ts=now, requested_model="auto", cost=Decimal(cost))
        await store.commit(reservation.id, row)
    for amount in holds:
        await store.reserve(Decimal(amount), limits, now=now, ttl_s=TTL_S)


def spend_until_refused(path: Path, amount: str, daily: str, now: float, start: Barrier, spent: Queue[str]) -> None:
    """Open the store, wait for every sibling, then spend `amount` per request, 8 at a time, until refused."""
    store = SQLiteStore(path)
    start.wait(timeout=60)
    spent.put(str(anyio.run(_spend_until_refused, store, Decimal(amount), Decimal(daily), now)))


async def _spend_until_refused(store: SQLiteStore, amount: Decimal, daily: Decimal, now: float) -> Decimal:
    total = Decimal(0)

    async def worker() -> None:
        nonlocal total
        for _ in range(100_000):
            try:
                reservation = await store.reserve(amount, BudgetLimits(daily=daily), now=now, ttl_s=TTL_S)
            except BudgetExceededError:
                return
            row = LedgerRow(id=uuid.uuid4().hex, ts=now, requested_model="auto", cost=amount)
            await store.commit(reservation.id, row)
            total += amount

    async with store, anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(worker)
    return total
