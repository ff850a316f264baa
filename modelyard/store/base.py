"""The persistence interface: ledger, budget reservations, and a small key-value area.

Every backend (SQLite embedded, Redis shared) implements `Store`. The budget check is the store's
job because only the store can make "check the remaining budget and reserve" one atomic step
across processes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Literal, Protocol

__all__ = [
    "MEMORY",
    "BudgetLimits",
    "LedgerRow",
    "Reservation",
    "SpendTotals",
    "Store",
    "new_id",
]

MEMORY: Final = ":memory:"
"""The path of a private in-memory SQLite database (gone on close; for tests and one-shot runs)."""

CostSource = Literal["upstream", "computed", "cache"]
"""Where a ledger row's cost came from: OpenRouter's `usage.cost`, the catalog prices, or a cache hit ($0)."""


def new_id() -> str:
    """A random 128-bit id as 32 hex digits, for ledger rows and reservations (a quarter of `uuid4().hex`'s cost)."""
    return os.urandom(16).hex()


Status = Literal["ok", "error", "refused", "cancelled"]


@dataclass(frozen=True, kw_only=True)
class BudgetLimits:
    """Spending limits in USD; None means no limit."""

    daily: Decimal | None = None
    monthly: Decimal | None = None
    per_request: Decimal | None = None


@dataclass(frozen=True, kw_only=True)
class Reservation:
    """Money held for one in-flight request until it is committed or released."""

    id: str
    amount: Decimal
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class SpendTotals:
    """What was spent (committed ledger cost) in the UTC day and month, and what is held (live
    reservations), in USD."""

    spent_today: Decimal
    spent_month: Decimal
    reserved: Decimal


@dataclass(kw_only=True)
class LedgerRow:
    """One request as it was answered (or refused). `cost` None means unknown, never 0."""

    id: str
    ts: float
    requested_model: str
    model: str | None = None
    provider: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal | None = None
    cost_source: CostSource | None = None
    latency_ms: float | None = None
    attempts: int = 0
    cache_hit: bool = False
    saved: Decimal | None = None
    status: Status = "ok"
    error: str | None = None
    streamed: bool = False
    detail: dict[str, object] = field(default_factory=dict)


class Store(Protocol):
    """Persistence for the ledger, reservations and small values. All methods are safe to call
    concurrently, from several tasks and several processes sharing the same backing store."""

    async def reserve(
        self,
        amount: Decimal,
        limits: BudgetLimits,
        *,
        now: float,
        ttl_s: float,
    ) -> Reservation:
        """Atomically check that `amount` fits every limit and hold it.

        Fits means: `amount <= per_request`, `spent_today + reserved + amount <= daily` and
        `spent_month + reserved + amount <= monthly` (UTC day and month of `now`), counting only
        reservations that have not expired at `now`.

        Raises:
            BudgetExceededError: naming the limit that refused, what remains of it and `amount`.
        """
        ...

    async def release(self, reservation_id: str) -> None:
        """Free a reservation without recording spend (the request failed before any cost).

        A cancelled caller still finishes the write; the cancellation reaches it afterwards.
        """
        ...

    async def renew(self, reservation_ids: Sequence[str], *, expires_at: float, now: float) -> set[str]:
        """Keep the holds of requests still in flight: push each live one's expiry to `expires_at` (never
        earlier than it was), all in one write. Returns the ids renewed.

        A hold that is gone (settled, released, purged) or has expired at `now` is left alone, never
        revived: others may have stopped counting it already.
        """
        ...

    async def commit(self, reservation_id: str | None, row: LedgerRow) -> None:
        """Atomically drop the reservation (if any) and append the ledger row (its cost counts as spend).

        A cancelled caller still finishes the write (the row of money spent is never lost); the
        cancellation reaches it afterwards.
        """
        ...

    async def totals(self, *, now: float) -> SpendTotals:
        """Spend of the UTC day and month of `now`, and the live reservations."""
        ...

    async def rows(self, *, since: float | None = None, limit: int | None = None) -> list[LedgerRow]:
        """Ledger rows with `ts >= since`, oldest first (the newest `limit` when a limit is given)."""
        ...

    async def get_value(self, key: str) -> str | None:
        """A stored value (catalog snapshot, budget overrides), or None."""
        ...

    async def set_value(self, key: str, value: str) -> None:
        """Store a value under a key, replacing any old one."""
        ...

    async def healthy(self) -> bool:
        """True when the backing store answers."""
        ...

    async def aclose(self) -> None:
        """Release the connection(s)."""
        ...
