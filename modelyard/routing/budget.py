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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import anyio
from anyio.abc import TaskStatus

from modelyard.error_text import dollars, limit_fix
from modelyard.errors import BudgetExceededError, ModelyardError, StoreUnavailableError
from modelyard.routing.labels import current as current_labels
from modelyard.routing.renewal import HoldRenewal
from modelyard.store.base import BudgetLimits, LedgerRow, Reservation, SpendTotals, Store
from modelyard.store.spool import Spool, is_store_failure, spool_for

__all__ = ["MAX_LIMIT", "BudgetManager", "BudgetRaiseRefusedError", "Source", "Tightenings", "source_of"]

log = logging.getLogger(__name__)

_OVERRIDES_KEY = "budget:overrides:v1"
_FIELDS = ("daily", "monthly", "per_request")
MAX_LIMIT = Decimal(10) ** 9
"""The largest limit `tighten` takes, USD. Far larger values (`1e9999999`) break the Decimal sums a
budget check does, and a limit stored once is read by every later session."""
_REFRESH_S = 1.0
_LATEST = 253_402_300_800.0
"""The first second of the year 10000: no tightening was set later (`datetime` stops there)."""

Source = Literal["config", "run-time", "both", "none"]
"""Where a limit in force comes from: the operator's config, a run-time tightening, both at the same value, or
neither (no limit)."""


@dataclass(frozen=True, slots=True)
class Tightenings:
    """The limits lowered at run time (`set_budget`, `modelyard budget --daily ...`; None: not lowered) and when
    each was set, epoch seconds (none for one stored by an older release, which kept no time)."""

    limits: BudgetLimits = field(default_factory=BudgetLimits)
    set_at: Mapping[str, float] = field(default_factory=dict)


def source_of(configured: Decimal | None, tightened: Decimal | None) -> Source:
    """Which of the configured limit and the run-time tightening is in force (the lower one)."""
    if tightened is None:
        return "none" if configured is None else "config"
    if configured is None or tightened < configured:
        return "run-time"
    return "both" if tightened == configured else "config"


class _StoredOverrides:
    """The overrides last read from one store, shared by every manager of that store in this process."""

    __slots__ = ("expires_at", "limits", "version")

    def __init__(self) -> None:
        self.limits: Tightenings | None = None
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
        self._overrides: Tightenings | None = None
        self._in_force = configured

    @property
    def configured(self) -> BudgetLimits:
        """The operator's limits (settings), before any run-time tightening."""
        return self._configured

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
            self._overrides, self._in_force = overrides, _tightest(self._configured, overrides.limits)
        return self._in_force

    async def tightenings(self, *, fresh: bool = False) -> Tightenings:
        """The run-time tightenings the limits in force are made of (read as `limits` reads them)."""
        await self.limits(fresh=fresh)
        assert self._overrides is not None
        return self._overrides

    def source(self, name: str) -> Source:
        """Where the `name` limit in force (daily, monthly, per_request) comes from, as last read."""
        tightened = getattr(self._overrides.limits, name) if self._overrides is not None else None
        return source_of(getattr(self._configured, name), tightened)

    async def _refresh(self, shared: _StoredOverrides) -> None:
        version = shared.version
        loaded = await self._load_overrides()
        if shared.version == version:  # else a tightening published meanwhile is newer than this read
            shared.limits, shared.expires_at = loaded, self._monotonic() + self._refresh_s

    async def tighten(
        self,
        *,
        daily: Decimal | None = None,
        monthly: Decimal | None = None,
        per_request: Decimal | None = None,
        by: str = "a caller",
    ) -> BudgetLimits:
        """Lower one or more limits (None leaves a limit as it is), logged at WARNING with who did it (`by`).

        Raises:
            BudgetRaiseRefusedError: a value would raise a limit (or lift one that is set).
        """
        current = await self.limits(fresh=True)
        wanted = {"daily": daily, "monthly": monthly, "per_request": per_request}
        for name, value in wanted.items():
            if value is not None:
                self._check_lower(name, value, getattr(current, name))
        stored = self._overrides or Tightenings()
        now = self._clock()
        given = {n: v for n, v in wanted.items() if v is not None}
        merged = BudgetLimits(**{n: given.get(n, getattr(stored.limits, n)) for n in _FIELDS})
        tightened = Tightenings(_tightest(stored.limits, merged), {**stored.set_at, **dict.fromkeys(given, now)})
        await self._store.set_value(_OVERRIDES_KEY, _dump(tightened))
        self._publish(tightened)
        in_force = await self.limits()
        log.warning("budget tightened at run time by %s: %s", by, _changes(current, in_force, given))
        return in_force

    def _check_lower(self, name: str, value: Decimal, limit: Decimal | None) -> None:
        if not value.is_finite() or value < 0 or value > MAX_LIMIT:
            raise BudgetRaiseRefusedError(f"{name} must be a number of USD from 0 to {MAX_LIMIT:,}, not {value}.")
        if limit is not None and value > limit:
            raise BudgetRaiseRefusedError(
                f"set_budget can only tighten: {name} is {dollars(limit)}, so {dollars(value)} would raise it; "
                f"{limit_fix(name, self.source(name))}."
            )

    async def clear_tightenings(self, *, by: str = "a caller") -> BudgetLimits:
        """Drop every limit tightened at run time (operator only: the CLI's `budget --reset`), logged at WARNING.

        The store has no delete, so the overrides key is overwritten with an empty value, which
        reads back as "no overrides". Returns the configured limits, now in force again.
        """
        before = await self.limits(fresh=True)
        await self._store.set_value(_OVERRIDES_KEY, "")
        self._publish(Tightenings())
        lifted = [n for n in _FIELDS if getattr(before, n) != getattr(self._configured, n)]
        changes = _changes(before, self._configured, lifted) or "no limit in force was a run-time one"
        log.warning("budget tightenings cleared by %s: %s", by, changes)
        return self._configured

    def _publish(self, overrides: Tightenings) -> None:
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
        in_force = limits = await self.limits()
        if cost_cap is not None:
            limits = _tightest(limits, BudgetLimits(per_request=cost_cap))
        try:
            reservation = await self._store.reserve(amount, limits, now=self._clock(), ttl_s=self._ttl_s)
        except BudgetExceededError as refusal:
            raise self._sourced(refusal, in_force, cost_cap) from None
        self.renewal.track(reservation)
        return reservation

    def _sourced(
        self, refusal: BudgetExceededError, in_force: BudgetLimits, cost_cap: Decimal | None
    ) -> BudgetExceededError:
        """`refusal`, its advice written for a limit tightened at run time (raising the config would not help)."""
        name = refusal.budget
        capped = cost_cap is not None and (in_force.per_request is None or cost_cap < in_force.per_request)
        if name not in _FIELDS or (name == "per_request" and capped):
            return refusal  # the request's own max_cost binds
        source = self.source(name)
        return refusal.from_source(source) if source in ("run-time", "both") else refusal

    async def settle(self, reservation: Reservation | None, row: LedgerRow) -> None:
        """Turn the reservation into the request's actual cost (the ledger row), the row labelled with who
        asked and why (`labels.labelled`).

        When the store cannot take the row (locked, down), it is kept in the spool, replayed later, and this
        returns all the same: the answer was paid for, and its caller must get it.

        Raises:
            ValueError: the row's cost or saving is not finite.
        """
        for name, value in current_labels().items():  # a row labelled already (the reconciler's) keeps its own
            row.detail.setdefault(name, value)
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
        if self.spool.waiting and (error := self.spool.last_error) is not None:
            where = self.spool.path or "memory"
            if isinstance(error, OSError) and error.filename is not None:  # the spool file, not the store
                raise StoreUnavailableError(
                    f"The ledger spool {where} cannot be read or written ({error.strerror or error}): ledger rows of "
                    "answers already paid for may wait in it, so no new request is sent. Let the server's user read "
                    "and write that file (and its .lock beside it), then try again."
                )
            pending = await self.spool.count()
            raise StoreUnavailableError(
                f"{pending} ledger row(s) of answers already paid for wait in {where} because "
                f"the store could not take them ({error}); no new request is sent until they are "
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

    async def _load_overrides(self) -> Tightenings:
        text = await self._store.get_value(_OVERRIDES_KEY)
        if not text:
            return Tightenings()
        data = json.loads(text)
        limits = BudgetLimits(**{n: _stored_limit(data, n) for n in _FIELDS})
        return Tightenings(limits, _stored_times(data, limits))


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


def _changes(before: BudgetLimits, after: BudgetLimits, names: Iterable[str]) -> str:
    """`daily $10 -> $0.5, per_request no limit -> $0.01`: the limits in force before and after."""

    def shown(value: Decimal | None) -> str:
        return "no limit" if value is None else dollars(value)

    return ", ".join(f"{n} {shown(getattr(before, n))} -> {shown(getattr(after, n))}" for n in names)


def _dump(tightenings: Tightenings) -> str:
    """The stored form: each limit as a decimal string (what every release reads), and `set_at` beside them."""
    limits = tightenings.limits
    data: dict[str, object] = {n: str(v) if (v := getattr(limits, n)) is not None else None for n in _FIELDS}
    data["set_at"] = {n: t for n, t in tightenings.set_at.items() if getattr(limits, n) is not None}
    return json.dumps(data)


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


def _stored_times(data: dict[str, object], limits: BudgetLimits) -> dict[str, float]:
    """When each stored limit was set; none for one stored before releases kept the time (or a malformed one)."""
    times = data.get("set_at")
    if not isinstance(times, dict):
        return {}
    return {n: float(t) for n, t in times.items() if n in _FIELDS and getattr(limits, n) is not None and _is_time(t)}


def _is_time(value: object) -> bool:
    """An epoch second a date can be made of (JSON may also hold NaN, a bool or a string)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < _LATEST
