"""The embedded store: one SQLite file, shared safely by many tasks and many processes.

Money never passes through a float: amounts are Decimal TEXT, and the spend of each UTC day and
month is kept as an exact running total (`spend` table), updated in the same transaction as the
ledger row it counts. Reading the totals is then two primary-key lookups, however long the ledger
grows, which keeps `reserve` cheap on the hot path.

Concurrency: writes (reserve, commit, release) that arrive together share one `BEGIN IMMEDIATE`
transaction run on the event loop by a connection that never waits for a lock (group commit, see
`modelyard.store.group_commit`); when another process holds the lock they are redone one by one in a
worker thread on a second connection that waits. Reads use that second connection in a worker
thread, one call at a time under an `anyio.Lock`. Across processes, every read-check-write runs
inside `BEGIN IMMEDIATE`, which takes SQLite's single write lock before reading, so two processes can
never both see the same remaining budget.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar, cast

import anyio
import anyio.to_thread

from modelyard.errors import BudgetExceededError
from modelyard.store import lease as leases
from modelyard.store import sqlite_writes as writes
from modelyard.store.base import MEMORY, BudgetLimits, CostSource, LedgerRow, Reservation, SpendTotals, Status
from modelyard.store.group_commit import GroupCommit
from modelyard.store.lease import Lease
from modelyard.store.sqlite_files import Opened, immediate, open_connections, resolved_path

__all__ = ["MEMORY", "SQLiteStore"]

_T = TypeVar("_T")
_SELECT_ROWS: Final = f"SELECT {writes.COLUMNS} FROM ledger WHERE ts >= ? ORDER BY ts DESC, rowid DESC LIMIT ?"
_LEASE_BELOW: Final = 8
"""Requests in flight from which reservations are written again (and batched) instead of drawn from
the lease: a draw saves a lone request a transaction, but under load the reservations' shared
transactions keep requests in step, so their commits share transactions too (measured at c=200:
with every request drawn, 4,200 requests took 3,956 transactions instead of 529)."""
_DATA_VERSION: Final = "PRAGMA data_version"
_GET_VALUE: Final = "SELECT value FROM kv WHERE key = ?"
_DETAIL: Final = json.JSONEncoder(default=str, separators=(",", ":"))
"""What `json.dumps(detail, default=str, separators=(",", ":"))` would build on every call."""
_SET_VALUE: Final = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"


class SQLiteStore:
    """A `Store` in one SQLite file (WAL mode), safe for concurrent tasks and processes.

    The file and its parent folders are created when missing. The constructor opens it synchronously
    (a few milliseconds, but up to `busy_timeout_s` while another process holds the write lock);
    `await SQLiteStore.open(path)` opens it in a worker thread instead, so a locked file never blocks the
    event loop. Every other method runs its blocking work in a worker thread.

    Args:
        path: the database file, or `MEMORY` for a private in-memory database.
        busy_timeout_s: how long a call waits for another process's write lock before failing.

    Raises:
        ConfigurationError: the file cannot be created or opened, or holds a newer schema.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0, lease: bool = True) -> None:
        self._setup(*_open_resolved(path, busy_timeout_s), lease=lease)

    @classmethod
    async def open(cls, path: str | Path, *, busy_timeout_s: float = 10.0, lease: bool = True) -> SQLiteStore:
        """Open the store with the file's I/O (and any wait for another process's lock) in a worker thread.

        The open is shielded: a caller cancelled meanwhile (or timing out) waits for it, up to
        `busy_timeout_s` while another process holds the lock, and gets the opened store.

        Raises:
            ConfigurationError: as the constructor.
        """
        # Shielded: a caller cancelled mid-open would otherwise leave the connections opened for nobody.
        with anyio.CancelScope(shield=True):
            opened = await anyio.to_thread.run_sync(_open_resolved, path, busy_timeout_s)
        store = cls.__new__(cls)
        store._setup(*opened, lease=lease)  # the anyio primitives are made here, on the event loop
        return store

    def _setup(self, path: str | Path, conn: sqlite3.Connection, inline: sqlite3.Connection, *, lease: bool) -> None:
        """Everything but the connections (made on the event loop: anyio's primitives belong there)."""
        self.path, self._conn, self._inline = path, conn, inline
        self._lock = anyio.Lock()
        # Reservations made here and not yet released or committed: requests in flight. A set, so a commit
        # retried after a failure (the reconciler's) never counts one twice.
        self._holding: set[str] = set()
        self._lease = Lease() if lease else None
        self._writes = GroupCommit(
            inline=self._inline,
            waiting=self._conn,
            in_thread=self._run,
            lock=self._lock if self._inline is self._conn else None,
            checkpoint_every=0 if self._inline is self._conn else 500,
            busy=lambda: len(self._holding) > 1,
            begin=_begin,
        )

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    async def __aenter__(self) -> SQLiteStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _run(self, call: Callable[[], _T]) -> _T:
        """Run `call` in a worker thread, never two at once on this store's connection."""
        # A cancelled caller still waits for its thread to finish (run_sync does not abandon it),
        # so the lock is never released while the connection is in use.
        async with self._lock:
            return await anyio.to_thread.run_sync(call)

    async def reserve(self, amount: Decimal, limits: BudgetLimits, *, now: float, ttl_s: float) -> Reservation:
        """Atomically check that `amount` fits every limit and hold it until `now + ttl_s`.

        Limits are checked in the order per_request, daily, monthly; expired reservations are
        deleted on the way.

        Raises:
            BudgetExceededError: naming the limit that refused, what remains of it and `amount`.
            ValueError: `amount` is negative or not finite, or `ttl_s` is not positive.
        """
        if not amount.is_finite() or amount < 0:
            raise ValueError(f"a reservation must be a finite amount >= 0, not {amount}")
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be positive, not {ttl_s}")
        if limits.per_request is not None and amount > limits.per_request:
            raise BudgetExceededError("per_request", limits.per_request, amount)
        reservation = self._draw(amount, limits, now=now, ttl_s=ttl_s)
        if reservation is None:
            reservation = await self._reserve_in_store(amount, limits, now=now, ttl_s=ttl_s)
        self._holding.add(reservation.id)
        return reservation

    def _draw(self, amount: Decimal, limits: BudgetLimits, *, now: float, ttl_s: float) -> Reservation | None:
        if self._lease is None or len(self._holding) >= _LEASE_BELOW:
            return None
        return self._lease.draw(amount, limits, now=now, ttl_s=ttl_s)

    async def _reserve_in_store(
        self, amount: Decimal, limits: BudgetLimits, *, now: float, ttl_s: float
    ) -> Reservation:
        """One write transaction: resize the lease and draw from it, or reserve `amount` on its own."""
        lease = self._lease
        leasing = lease is not None and len(self._holding) < _LEASE_BELOW and not lease.exact(limits, now=now)
        outcome = await self._grant(lease, amount, limits, now=now, ttl_s=ttl_s) if lease and leasing else None
        if outcome is None:
            work = partial(writes.reserve, amount=amount, limits=limits, now=now, ttl_s=ttl_s)
            outcome = await self._writes.submit(work)
        if isinstance(outcome, BudgetExceededError):
            raise outcome
        return outcome

    async def _grant(
        self, lease: Lease, amount: Decimal, limits: BudgetLimits, *, now: float, ttl_s: float
    ) -> Reservation | BudgetExceededError | None:
        """Resize the lease, then draw from it; or the reservation (or refusal) the grant made instead.
        None: reserve `amount` on its own (the limits are too close for a lease just now)."""
        async with lease.granting:
            # While the grant runs nobody draws, so when it ends, what it sized is what is drawn or more.
            if (drawn := lease.draw_granting(amount, limits, now=now, ttl_s=ttl_s)) is not None:
                return drawn  # the grant this call waited for made room
            if lease.exact(limits, now=now):
                return None  # the grant this call waited for found the limits too close
            try:
                work = partial(leases.grant, lease=lease, amount=amount, limits=limits, now=now, ttl_s=ttl_s)
                granted = await self._writes.submit(work)
            except BaseException:
                lease.forget()
                raise
            lease.apply_grant(granted)
            if granted.exact is not None:
                lease.close_for(limits, now=now)
                return granted.exact
            lease.granted_under(limits)
            return lease.draw_granting(amount, limits, now=now, ttl_s=ttl_s)

    async def release(self, reservation_id: str) -> None:
        """Free a reservation without recording spend; nothing happens if it is already gone."""
        try:
            if self._lease is not None and self._lease.owns(reservation_id):
                self._lease.undraw(reservation_id)  # its room stays in the lease: nothing to write
            else:
                await self._writes.submit(partial(writes.release, reservation_id=reservation_id), first=True)
        finally:
            self._holding.discard(reservation_id)

    async def renew(self, reservation_ids: Sequence[str], *, expires_at: float, now: float) -> set[str]:
        """Push the expiry of the live holds among `reservation_ids` to `expires_at` (never earlier) in one
        write; the ids renewed. Draws from the lease are renewed in memory, and the lease's row with them
        when it would expire first (other processes count the row, not the draws): a draw is renewed only
        if its row lasts as long. With nothing that needs it, nothing is written."""
        lease = self._lease
        drawn = lease.renew(reservation_ids, expires_at=expires_at, now=now) if lease is not None else []
        rows = [rid for rid in reservation_ids if lease is None or not lease.owns(rid)]
        row_too = lease is not None and bool(drawn) and lease.expires_at < expires_at
        if lease is not None and row_too:
            rows.append(lease.id)
        renewed: set[str] = set()
        if rows:
            work = partial(writes.renew, reservation_ids=rows, expires_at=expires_at, now=now)
            renewed = await self._writes.submit(work)
        if lease is not None and (not row_too or lease.id in renewed):
            renewed.update(drawn)
            renewed.discard(lease.id)
        return renewed

    async def commit(self, reservation_id: str | None, row: LedgerRow) -> None:
        """Atomically drop the reservation (if any, and if still there) and append the ledger row.

        Committing a row whose `id` is already in the ledger adds nothing, so a retried commit
        never counts the same spend twice. A cancelled caller still finishes the write (the group
        commit never drops a `first` write).

        Raises:
            ValueError: `row.cost` or `row.saved` is not finite.
        """
        try:
            if reservation_id is not None and self._lease is not None and self._lease.owns(reservation_id):
                await self._spend_from_lease(self._lease, reservation_id, row)
            else:
                params = _encode_row(row)
                work = partial(writes.commit, reservation_id=reservation_id, row=row, params=params)
                if reservation_id is None and not row.cost:
                    # Adds no spend and frees no hold (a cache hit's row): the INSERT alone is the write.
                    await self._writes.submit_statement(writes.INSERT_ROW, params, work, first=True)
                else:
                    await self._writes.submit(work, first=True)
        finally:
            self._holding.discard(reservation_id)  # a failed commit ends the request too; a retry finds it gone

    async def _spend_from_lease(self, lease: Lease, reservation_id: str, row: LedgerRow) -> None:
        try:
            params = _encode_row(row)
            work = partial(leases.spend, lease=lease, reservation_id=reservation_id, row=row, params=params)
            moved = await self._writes.submit(work, first=True)
        except BaseException:
            lease.forget()  # what it cost is unknown: its draw stays held until it expires
            raise
        # The new amount and the end of the draw in one loop step: no draw sees the cost twice or not at all.
        if moved is not None:
            lease.apply(*moved)
        lease.undraw(reservation_id)

    async def totals(self, *, now: float) -> SpendTotals:
        """Spend of the UTC day and month of `now`, and the reservations still live at `now`."""
        lease_id, drawn = "", Decimal(0)
        if self._lease is not None:
            self._lease.expire(now)
            lease_id, drawn = self._lease.id, self._lease.drawn
        return await self._run(partial(writes.read_totals, self._conn, now, lease_id, drawn))

    async def rows(self, *, since: float | None = None, limit: int | None = None) -> list[LedgerRow]:
        """Ledger rows with `ts >= since`, oldest first (the newest `limit` when a limit is given)."""
        lower = float("-inf") if since is None else since
        count = -1 if limit is None else max(limit, 0)  # LIMIT -1 means no limit in SQLite.
        found = await self._run(partial(_select_rows, self._conn, lower, count))
        return [_decode_row(values) for values in reversed(found)]

    async def get_value(self, key: str) -> str | None:
        """The value stored under `key`, or None."""
        found = await self._run(partial(_fetch_one, self._conn, _GET_VALUE, (key,)))
        return None if found is None else str(found[0])

    async def set_value(self, key: str, value: str) -> None:
        """Store `value` under `key`, replacing any old one."""
        await self._run(partial(self._conn.execute, _SET_VALUE, (key, value)))

    async def healthy(self) -> bool:
        """True when the database answers `SELECT 1`."""
        try:
            found = await self._run(partial(_fetch_one, self._conn, "SELECT 1", ()))
        except sqlite3.Error:
            return False
        return found == (1,)

    async def aclose(self) -> None:
        """Give the lease back and close the connections; calling it again does nothing."""
        lease, self._lease = self._lease, None
        if lease is not None:
            # A grant under way may still draw for its request: what to keep is read once it is done.
            async with lease.granting:
                with contextlib.suppress(sqlite3.Error):  # closed already, or locked: the row expires on its own
                    await self._run(partial(_give_back, self._conn, lease))
        if self._inline is not self._conn:
            self._inline.close()
        await self._run(self._conn.close)


def _give_back(conn: sqlite3.Connection, lease: Lease) -> None:
    """Shrink the lease to what requests still in flight hold (they keep it until it expires), or drop it."""
    with immediate(conn):
        found = conn.execute(leases.LEASE_AMOUNT, (lease.id,)).fetchone()
        if found is None:
            return
        if keep := lease.outstanding():
            conn.execute(leases.SHRINK_LEASE, (str(min(keep, Decimal(found[0]))), lease.id))
        else:
            conn.execute(leases.DROP_LEASE, (lease.id,))


def _begin(conn: sqlite3.Connection, memo: dict[str, object]) -> None:
    version = conn.execute("PRAGMA data_version").fetchone()[0]
    if memo.get("version") != version:
        memo.clear()
        memo["version"] = version


def _select_rows(conn: sqlite3.Connection, since: float, limit: int) -> list[tuple[object, ...]]:
    return conn.execute(_SELECT_ROWS, (since, limit)).fetchall()


def _fetch_one(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> tuple[object, ...] | None:
    found: tuple[object, ...] | None = conn.execute(sql, params).fetchone()
    return found


def _money_text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    if not value.is_finite():
        raise ValueError(f"a ledger amount must be finite, not {value}")
    return str(value)


def _encode_row(row: LedgerRow) -> tuple[object, ...]:
    """The INSERT parameters of a row, in `writes.COLUMNS` order."""
    detail = _DETAIL.encode(row.detail)
    return (
        row.id, row.ts, row.requested_model, row.model, row.provider,
        row.prompt_tokens, row.completion_tokens, row.cached_tokens, row.reasoning_tokens,
        _money_text(row.cost), row.cost_source, row.latency_ms, row.attempts, int(row.cache_hit),
        _money_text(row.saved), row.status, row.error, int(row.streamed), detail,
    )  # fmt: skip


def _decode_row(values: tuple[object, ...]) -> LedgerRow:
    """A `LedgerRow` from a SELECT of `writes.COLUMNS`, with its Decimals restored exactly."""
    (id_, ts, requested, model, provider, prompt, completion, cached, reasoning,
     cost, source, latency, attempts, hit, saved, status, error, streamed, detail) = values  # fmt: skip
    return LedgerRow(
        id=str(id_),
        ts=cast(float, ts),
        requested_model=str(requested),
        model=cast(str | None, model),
        provider=cast(str | None, provider),
        prompt_tokens=cast(int, prompt),
        completion_tokens=cast(int, completion),
        cached_tokens=cast(int, cached),
        reasoning_tokens=cast(int, reasoning),
        cost=None if cost is None else Decimal(cast(str, cost)),
        cost_source=cast(CostSource | None, source),
        latency_ms=cast(float | None, latency),
        attempts=cast(int, attempts),
        cache_hit=bool(hit),
        saved=None if saved is None else Decimal(cast(str, saved)),
        status=cast(Status, status),
        error=cast(str | None, error),
        streamed=bool(streamed),
        detail=cast(dict[str, object], json.loads(cast(str, detail))),
    )


def _open_resolved(path: str | Path, busy_timeout_s: float) -> Opened:
    return open_connections(resolved_path(path), busy_timeout_s)
