"""A store whose commits fail for a while, as a store that is locked or down fails them, then work."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal

import anyio

from modelyard.store.base import BudgetLimits, LedgerRow, Reservation, SpendTotals, Store


def locked() -> Exception:
    """What a SQLite store raises when another process holds its write lock past the busy timeout."""
    return sqlite3.OperationalError("database is locked")


class FlakyStore:
    """A real store (`inner`) whose next `failures` commits raise `error()` without writing anything.

    `calls` lists every reserve and commit in the order they were made (`commit!` for a failed one);
    `gate`, when set, is waited for at the start of each commit.
    """

    def __init__(self, inner: Store, failures: int = 0, error: Callable[[], Exception] = locked) -> None:
        self.inner = inner
        self.failures = failures
        self._error = error
        self.calls: list[str] = []
        self.gate: anyio.Event | None = None

    async def reserve(self, amount: Decimal, limits: BudgetLimits, *, now: float, ttl_s: float) -> Reservation:
        self.calls.append("reserve")
        return await self.inner.reserve(amount, limits, now=now, ttl_s=ttl_s)

    async def release(self, reservation_id: str) -> None:
        await self.inner.release(reservation_id)

    async def commit(self, reservation_id: str | None, row: LedgerRow) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.failures > 0:
            self.failures -= 1
            self.calls.append("commit!")
            raise self._error()
        self.calls.append("commit")
        await self.inner.commit(reservation_id, row)

    async def totals(self, *, now: float) -> SpendTotals:
        return await self.inner.totals(now=now)

    async def rows(self, *, since: float | None = None, limit: int | None = None) -> list[LedgerRow]:
        return await self.inner.rows(since=since, limit=limit)

    async def get_value(self, key: str) -> str | None:
        return await self.inner.get_value(key)

    async def set_value(self, key: str, value: str) -> None:
        await self.inner.set_value(key, value)

    async def healthy(self) -> bool:
        return await self.inner.healthy()

    async def aclose(self) -> None:
        await self.inner.aclose()
