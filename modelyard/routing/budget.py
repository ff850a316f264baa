"""Budgets that hold: limits from settings, tightened (never raised) at run time, enforced by
reserving each request's worst case in the store before it is sent.

A row the store cannot take when it is settled (locked past its busy timeout, down) is kept in the
store's spool (`modelyard.store.spool`) and replayed into it: in the background (`run_replays`), and
before any new reservation, so the money it records counts before more can be spent.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from decimal import Decimal

import anyio
from anyio.abc import TaskStatus

from modelyard.errors import ModelyardError, StoreUnavailableError
from modelyard.routing.labels import current as current_labels
from modelyard.routing.renewal import HoldRenewal
from modelyard.store.base import BudgetLimits, LedgerRow, Reservation, SpendTotals, Store
from modelyard.store.spool import Spool, is_store_failure, spool_for

__all__ = ["MAX_LIMIT", "BudgetManager", "BudgetRaiseRefusedError"]

log = logging.getLogger(__name__)

_OVERRIDES_KEY = "budget:overrides:v1"
_FIELDS = ("daily", "monthly", "per_request")
MAX_LIMIT = Decimal(10) ** 9
"""The largest limit `tighten` takes, USD. Far larger values (`1e9999999`) break the Decimal sums a
budget check does, and a limit stored once is read by every later session."""
_REFRESH_S = 1.0


class _StoredOverrides:
    """The overrides last read from one store, shared by every manager of that store in this process."""

    __slots__ = ("expires_at", "limits", "version")

    def __init__(self) -> None:
        self.limits: BudgetLimits | None = None
        self.expires_at = 0.0
        self.version = 0


_SHARED: weakref.WeakKeyDictionary[Store, _StoredOverrides] = weakref.WeakKeyDictionary()


def _shared_for(store: Store) -> _StoredOverrides:
    try:
        return _SHARED.setdefault(store, _StoredOverrides())
    except TypeError:  # a store that cannot be weakly referenced keeps its own copy
        return _StoredOverrides()


class BudgetRaiseRefusedError(ModelyardError):
    """`set_budget` may only tighten limits; raising one needs the operator's config."""


class BudgetManager:
    """Reserve, settle and release money against the configured limits.

    Args:
        store: where reservations and the ledger live (atomic across processes).
        configured: the operator's limits (settings / CLI).
        clock: epoch seconds.
        reservation_ttl_s: how long a reservation holds if its process dies before settling it; while the
            process lives, `renewal` renews it for its request (run `renewal.run()` alongside).
        refresh_s: how long the stored overrides are reused before the store is read again.
        monotonic: the clock of that reuse.
        sleep: the waits of the renewal loop.
        spool: where rows the store cannot take are kept until it can (default: the store's own, `spool_for`).
    """

    def __init__(
        self,
        store: Store,
        configured: BudgetLimits,
        *,
        clock: Callable[[], float],
        reservation_ttl_s: float = 900.0,
        refresh_s: float = _REFRESH_S,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        spool: Spool | None = None,
    ) -> None:
        self._store = store
        self.spool = spool or spool_for(store)
        self._configured = configured
        self._clock = clock
        self._ttl_s = reservation_ttl_s
        self.renewal = HoldRenewal(store, lifetime_s=reservation_ttl_s, clock=clock, sleep=sleep)
        self._refresh_s = refresh_s
        self._monotonic = monotonic
        self._shared = _shared_for(store)
        self._overrides: BudgetLimits | None = None
        self._in_force = configured

    async def limits(self, *, fresh: bool = False) -> BudgetLimits:
        """The limits in force: the configured ones, tightened by any stored `set_budget` call.

        The stored overrides are read at most once per `refresh_s` (1 s) and shared by every manager
        of the same store in this process, so a tightening made here holds at once; one made by
        another process (or the CLI) holds here within `refresh_s`. `fresh=True` reads the store now.
        """
        shared = self._shared
        if fresh or shared.limits is None:
            await self._refresh(shared)
        elif self._monotonic() >= shared.expires_at:
            # Others keep using the current copy (at most one read in flight), so no burst of reads.
            shared.expires_at = self._monotonic() + self._refresh_s
            await self._refresh(shared)
        overrides = shared.limits
        assert overrides is not None
        if overrides is not self._overrides:
            self._overrides, self._in_force = overrides, _tightest(self._configured, overrides)
        return self._in_force

    async def _refresh(self, shared: _StoredOverrides) -> None:
        version = shared.version
        loaded = await self._load_overrides()
        if shared.version == version:  # else a tightening published meanwhile is newer than this read
            shared.limits, shared.expires_at = loaded, self._monotonic() + self._refresh_s

    async def tighten(
        self, *, daily: Decimal | None = None, monthly: Decimal | None = None, per_request: Decimal | None = None
    ) -> BudgetLimits:
        """Lower one or more limits (None leaves a limit as it is).

        Raises:
            BudgetRaiseRefusedError: a value would raise a limit (or lift one that is set).
        """
        current = await self.limits(fresh=True)
        wanted = {"daily": daily, "monthly": monthly, "per_request": per_request}
        for name, value in wanted.items():
            if value is None:
                continue
            if not value.is_finite() or value < 0 or value > MAX_LIMIT:
                raise BudgetRaiseRefusedError(f"{name} must be a number of USD from 0 to {MAX_LIMIT:,}, not {value}.")
            limit = getattr(current, name)
            if limit is not None and value > limit:
                raise BudgetRaiseRefusedError(
                    f"set_budget can only tighten: {name} is ${limit}, so ${value} would raise it. "
                    "Raising a limit needs the operator's config (MODELYARD_BUDGET__* or the TOML file)."
                )
        stored = self._overrides or BudgetLimits()
        merged = BudgetLimits(**{n: wanted[n] if wanted[n] is not None else getattr(stored, n) for n in _FIELDS})
        overrides = _tightest(stored, merged)
        await self._store.set_value(_OVERRIDES_KEY, _dump(overrides))
        self._publish(overrides)
        return await self.limits()

    async def clear_tightenings(self) -> BudgetLimits:
        """Drop every limit tightened at run time (operator only: the CLI's `budget --reset`).

        The store has no delete, so the overrides key is overwritten with an empty value, which
        reads back as "no overrides". Returns the configured limits, now in force again.
        """
        await self._store.set_value(_OVERRIDES_KEY, "")
        self._publish(BudgetLimits())
        return self._configured

    def _publish(self, overrides: BudgetLimits) -> None:
        """What this process just stored holds at once for every manager of the store."""
        shared = self._shared
        shared.limits, shared.expires_at = overrides, self._monotonic() + self._refresh_s
        shared.version += 1

    async def reserve(self, amount: Decimal, *, cost_cap: Decimal | None = None) -> Reservation:
        """Hold `amount` (a worst case) against every limit, atomically.

        Raises:
            BudgetExceededError: naming the limit that refused.
        """
        if self.spool.waiting:  # rows spooled in an outage count before any more money is held
            await self._catch_up()
        limits = await self.limits()
        if cost_cap is not None:
            limits = _tightest(limits, BudgetLimits(per_request=cost_cap))
        reservation = await self._store.reserve(amount, limits, now=self._clock(), ttl_s=self._ttl_s)
        self.renewal.track(reservation)
        return reservation

    async def settle(self, reservation: Reservation | None, row: LedgerRow) -> None:
        """Turn the reservation into the request's actual cost (the ledger row), the row labelled with who
        asked and why (`labels.labelled`).

        When the store cannot take the row (locked, down), it is kept in the spool, replayed later, and this
        returns all the same: the answer was paid for, and its caller must get it.

        Raises:
            ValueError: the row's cost or saving is not finite.
        """
        if labels := current_labels():
            row.detail.update(labels)
        if reservation is not None:
            self.renewal.forget(reservation.id)
        reservation_id = reservation.id if reservation else None
        try:
            await self._store.commit(reservation_id, row)
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            await self.spool.keep(reservation_id, row)
            _log_spooled(row, self.spool, exc)

    async def replay_spooled(self) -> int:
        """Commit the spooled rows into the store now; how many were committed (the rest wait for the next try)."""
        return await self.spool.replay(self._store)

    async def spooled_rows(self) -> int:
        """Rows in the spool not yet known to be in the store."""
        return await self.spool.count()

    async def run_replays(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Replay spooled rows in the background, with back-off, until cancelled (`await group.start(...)`)."""
        await self.spool.run(self._store, task_status=task_status)

    async def _catch_up(self) -> None:
        """Replay the spool before a reservation; refuse it while rows remain that the store would not take.

        Raises:
            StoreUnavailableError: rows of money already spent are still not in the store.
        """
        await self.spool.catch_up(self._store)
        # Rows spooled while the replay ran, which took everything it found, wait for the next reservation.
        if self.spool.waiting and self.spool.last_error is not None:
            pending = await self.spool.count()
            raise StoreUnavailableError(
                f"{pending} ledger row(s) of answers already paid for wait in {self.spool.path or 'memory'} because "
                f"the store could not take them ({self.spool.last_error}); no new request is sent until they are "
                "in the ledger, so that the budget counts their cost first."
            )

    async def release(self, reservation: Reservation) -> None:
        """Free a reservation whose attempt cost nothing."""
        self.renewal.forget(reservation.id)
        await self._store.release(reservation.id)

    def let_expire(self, reservation: Reservation) -> Reservation:
        """Stop renewing a hold whose request has ended with its cost unknown (the reconciler keeps it until
        the cost is known or the hold expires). Returns it with the expiry its last renewal gave it."""
        current = self.renewal.current(reservation)
        self.renewal.forget(reservation.id)
        return current

    async def totals(self) -> SpendTotals:
        return await self._store.totals(now=self._clock())

    async def _load_overrides(self) -> BudgetLimits:
        text = await self._store.get_value(_OVERRIDES_KEY)
        if not text:
            return BudgetLimits()
        data = json.loads(text)
        return BudgetLimits(**{n: _stored_limit(data, n) for n in _FIELDS})


def _log_spooled(row: LedgerRow, spool: Spool, error: BaseException) -> None:
    cost = "unknown" if row.cost is None else f"${row.cost}"
    log.warning(
        "the store could not take the ledger row of generation %s (model %s, cost %s): %s; the row is kept in "
        "the spool %s and replayed into the store once it answers",
        row.detail.get("generation_id") or f"none (row {row.id}, {row.status})",
        row.model or row.requested_model,
        cost,
        error,
        spool.path or "in memory",
    )


def _tightest(a: BudgetLimits, b: BudgetLimits) -> BudgetLimits:
    def low(x: Decimal | None, y: Decimal | None) -> Decimal | None:
        return y if x is None else x if y is None else min(x, y)

    return BudgetLimits(
        daily=low(a.daily, b.daily), monthly=low(a.monthly, b.monthly), per_request=low(a.per_request, b.per_request)
    )


def _dump(limits: BudgetLimits) -> str:
    return json.dumps({n: str(v) if (v := getattr(limits, n)) is not None else None for n in _FIELDS})


def _stored_limit(data: dict[str, object], name: str) -> Decimal | None:
    """A tightened limit as stored; one out of range (stored by an older release, which took any value)
    is ignored, with a warning, rather than breaking every budget check."""
    if data.get(name) is None:
        return None
    value = Decimal(str(data[name]))
    if value.is_finite() and 0 <= value <= MAX_LIMIT:
        return value
    log.warning("ignoring the stored %s limit %s: out of range (0 to %s USD)", name, value, MAX_LIMIT)
    return None
