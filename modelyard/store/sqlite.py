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

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Context, Decimal, localcontext
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar, cast

import anyio
import anyio.to_thread

from modelyard.errors import BudgetExceededError, ConfigurationError
from modelyard.store.base import BudgetLimits, CostSource, LedgerRow, Reservation, SpendTotals, Status
from modelyard.store.group_commit import GroupCommit

__all__ = ["MEMORY", "SQLiteStore"]

MEMORY: Final = ":memory:"
"""The path of a private in-memory database (gone on close; for tests and one-shot runs)."""

_T = TypeVar("_T")
_ZERO: Final = Decimal(0)
# Far beyond the digits of any sum of USD amounts, so adding and subtracting stay exact.
_EXACT_PREC: Final = 200
_EXACT: Final = Context(prec=_EXACT_PREC)
_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = (
    """CREATE TABLE ledger (
        id TEXT NOT NULL UNIQUE, ts REAL NOT NULL, requested_model TEXT NOT NULL, model TEXT,
        provider TEXT, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL, cost TEXT, cost_source TEXT,
        latency_ms REAL, attempts INTEGER NOT NULL, cache_hit INTEGER NOT NULL, saved TEXT,
        status TEXT NOT NULL, error TEXT, streamed INTEGER NOT NULL, detail TEXT NOT NULL)""",
    "CREATE INDEX ledger_ts ON ledger (ts)",
    "CREATE TABLE spend (period TEXT PRIMARY KEY, total TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE reservations (id TEXT PRIMARY KEY, amount TEXT NOT NULL, expires_at REAL NOT NULL)
        WITHOUT ROWID""",
    "CREATE INDEX reservations_expiry ON reservations (expires_at)",
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    f"PRAGMA user_version = {_SCHEMA_VERSION}",
)
_COLUMNS: Final = (
    "id, ts, requested_model, model, provider, prompt_tokens, completion_tokens, cached_tokens, "
    "reasoning_tokens, cost, cost_source, latency_ms, attempts, cache_hit, saved, status, error, "
    "streamed, detail"
)
# Module constants so sqlite3's statement cache prepares each one once per connection.
_INSERT_ROW: Final = f"INSERT OR IGNORE INTO ledger ({_COLUMNS}) VALUES ({', '.join('?' * 19)})"
_SELECT_ROWS: Final = f"SELECT {_COLUMNS} FROM ledger WHERE ts >= ? ORDER BY ts DESC, rowid DESC LIMIT ?"
_ADD_SPEND: Final = (
    "INSERT INTO spend (period, total) VALUES (?, ?), (?, ?) "
    "ON CONFLICT (period) DO UPDATE SET total = dec_add(total, excluded.total)"
)
_SELECT_SPEND: Final = "SELECT period, total FROM spend WHERE period IN (?, ?)"
_PURGE_EXPIRED: Final = "DELETE FROM reservations WHERE expires_at <= ?"
_LIVE_AMOUNTS: Final = "SELECT amount FROM reservations WHERE expires_at > ?"
_LIVE_HOLDS: Final = "SELECT amount, expires_at FROM reservations WHERE expires_at > ?"
_INSERT_RESERVATION: Final = "INSERT INTO reservations (id, amount, expires_at) VALUES (?, ?, ?)"
_DELETE_RESERVATION: Final = "DELETE FROM reservations WHERE id = ?"
_TAKE_RESERVATION: Final = "DELETE FROM reservations WHERE id = ? RETURNING amount"
_SELECT_RESERVATION: Final = "SELECT amount FROM reservations WHERE id = ?"
_RETURNING: Final = sqlite3.sqlite_version_info >= (3, 35)
_DAY_S: Final = 86_400
_GET_VALUE: Final = "SELECT value FROM kv WHERE key = ?"
_SET_VALUE: Final = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"


class SQLiteStore:
    """A `Store` in one SQLite file (WAL mode), safe for concurrent tasks and processes.

    The file and its parent folders are created when missing. Opening is synchronous (a few
    milliseconds, once at startup); every other method runs its blocking work in a worker thread.

    Args:
        path: the database file, or `MEMORY` for a private in-memory database.
        busy_timeout_s: how long a call waits for another process's write lock before failing.

    Raises:
        ConfigurationError: the file cannot be created or opened, or holds a newer schema.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = path if str(path) == MEMORY else Path(path).expanduser().resolve()
        try:
            self._conn = _connect(self.path, busy_timeout_s)
            # An in-memory database is private to its one connection (and no other process waits on it).
            self._inline = _connect_inline(self.path) if isinstance(self.path, Path) else self._conn
        except (sqlite3.Error, OSError) as exc:
            raise ConfigurationError(f"Cannot open the SQLite store at {self.path}: {exc}") from exc
        self._lock = anyio.Lock()
        self._holds = 0  # reservations made here and not yet settled: requests in flight
        self._writes = GroupCommit(
            inline=self._inline,
            waiting=self._conn,
            in_thread=self._run,
            lock=self._lock if self._inline is self._conn else None,
            checkpoint_every=0 if self._inline is self._conn else 500,
            busy=lambda: self._holds > 1,
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
        outcome = await self._writes.submit(partial(_reserve, amount=amount, limits=limits, now=now, ttl_s=ttl_s))
        if isinstance(outcome, BudgetExceededError):
            raise outcome
        self._holds += 1
        return outcome

    async def release(self, reservation_id: str) -> None:
        """Free a reservation without recording spend; nothing happens if it is already gone."""
        try:
            await self._writes.submit(partial(_release, reservation_id=reservation_id), first=True)
        finally:
            self._holds = max(0, self._holds - 1)

    async def commit(self, reservation_id: str | None, row: LedgerRow) -> None:
        """Atomically drop the reservation (if any, and if still there) and append the ledger row.

        Committing a row whose `id` is already in the ledger adds nothing, so a retried commit
        never counts the same spend twice.

        Raises:
            ValueError: `row.cost` or `row.saved` is not finite.
        """
        params = _encode_row(row)
        work = partial(_commit, reservation_id=reservation_id, row=row, params=params)
        try:
            await self._writes.submit(work, first=True)
        finally:
            if reservation_id is not None:
                self._holds = max(0, self._holds - 1)

    async def totals(self, *, now: float) -> SpendTotals:
        """Spend of the UTC day and month of `now`, and the reservations still live at `now`."""
        return await self._run(partial(_read_totals, self._conn, now))

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
        """Close the connections; calling it again does nothing."""
        if self._inline is not self._conn:
            self._inline.close()
        await self._run(self._conn.close)


def _connect(path: str | Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Open the database with the pragmas this store relies on and make sure the schema exists."""
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions, every BEGIN here is explicit.
    # timeout= is SQLite's busy_timeout: wait for another process's lock instead of failing at once.
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        _use_wal(conn, deadline=time.monotonic() + busy_timeout_s)
        # With WAL, NORMAL syncs the WAL at checkpoints rather than on every commit. A committed
        # transaction survives the process being killed (it is in the WAL, in the OS cache); only a
        # power loss or OS crash may undo the last few commits, and it never corrupts the file.
        # That is the right trade for a ledger written on every request.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.create_function("dec_add", 2, _dec_add, deterministic=True)
        _ensure_schema(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_inline(path: Path) -> sqlite3.Connection:
    """The connection group commits run on, on the event loop: it never waits for another process's
    lock (busy timeout 0: the batch goes to the waiting connection instead) and never checkpoints
    (a checkpoint fsyncs; the waiting connection runs them in a worker thread)."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.create_function("dec_add", 2, _dec_add, deterministic=True)
    except BaseException:
        conn.close()
        raise
    return conn


def _use_wal(conn: sqlite3.Connection, *, deadline: float) -> None:
    """Switch the file to WAL (a persistent setting), retrying while another opener holds it.

    Changing the journal mode needs an exclusive lock, and SQLite reports "database is locked" at
    once rather than calling the busy handler, so processes opening a new file together retry.
    """
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    while mode not in ("wal", "memory"):  # an in-memory database keeps its "memory" journal
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
            continue
        if mode not in ("wal", "memory"):
            raise ConfigurationError(f"SQLite cannot use WAL mode for this file (journal mode {mode!r}).")


def _ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables once per file (the version lives in `PRAGMA user_version`)."""
    with _immediate(conn):
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > _SCHEMA_VERSION:
            raise ConfigurationError(
                f"The store was written by a newer modelyard (schema {version} > {_SCHEMA_VERSION})."
            )
        if version == 0:
            for statement in _SCHEMA:
                conn.execute(statement)


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that holds SQLite's write lock from its first statement."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _begin(conn: sqlite3.Connection, memo: dict[str, object]) -> None:
    """At the start of an inline transaction: forget what was read if another connection wrote since."""
    version = conn.execute("PRAGMA data_version").fetchone()[0]
    if memo.get("version") != version:
        memo.clear()
        memo["version"] = version


class _Tally:
    """The budget totals as read once (purge, then sum the live holds and the day's and month's
    spend), then kept exact by every write this connection makes: holds added and taken, spend
    added. Reservations read it instead of the tables: O(1) however many requests are in flight.

    It is kept only while no other connection writes (`_begin` checks SQLite's data_version inside
    the write lock) and is exact while `now` stays in its UTC day and before the first live hold
    expires: then a purge would delete nothing and every hold still counts.
    """

    __slots__ = ("day", "day_start", "first_expiry", "month", "reserved", "spent_month", "spent_today")

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self.day, self.month = _periods(now)
        self.day_start = now - now % _DAY_S
        spent: dict[str, str] = dict(conn.execute(_SELECT_SPEND, (self.day, self.month)).fetchall())
        self.spent_today = Decimal(spent.get(self.day, "0"))
        self.spent_month = Decimal(spent.get(self.month, "0"))
        holds = conn.execute(_LIVE_HOLDS, (now,)).fetchall()
        self.reserved = _exact_sum(amount for amount, _ in holds)
        self.first_expiry: float = min((expiry for _, expiry in holds), default=float("inf"))

    def covers(self, now: float) -> bool:
        return now < self.first_expiry and self.day_start <= now < self.day_start + _DAY_S

    def totals(self) -> SpendTotals:
        return SpendTotals(spent_today=self.spent_today, spent_month=self.spent_month, reserved=self.reserved)

    def hold(self, reservation: Reservation) -> None:
        self.reserved = _EXACT.add(self.reserved, reservation.amount)
        self.first_expiry = min(self.first_expiry, reservation.expires_at)

    def unhold(self, amount: str) -> None:
        """A live hold was deleted (the first expiry may now be later: kept, which only re-reads sooner)."""
        self.reserved = _EXACT.subtract(self.reserved, Decimal(amount))

    def spend(self, day: str, month: str, cost: Decimal) -> None:
        if day == self.day:
            self.spent_today = _EXACT.add(self.spent_today, cost)
        if month == self.month:
            self.spent_month = _EXACT.add(self.spent_month, cost)


def _reserve(
    conn: sqlite3.Connection,
    memo: dict[str, object],
    *,
    amount: Decimal,
    limits: BudgetLimits,
    now: float,
    ttl_s: float,
) -> Reservation | BudgetExceededError:
    """Purge, count, check and insert, inside a write transaction (the refusal is returned, not raised)."""
    tally = memo.get("tally")
    if not isinstance(tally, _Tally) or not tally.covers(now):
        conn.execute(_PURGE_EXPIRED, (now,))
        tally = memo["tally"] = _Tally(conn, now)
    refusal = _refusal(amount, limits, tally.totals())
    if refusal is not None:
        return refusal
    reservation = Reservation(id=uuid.uuid4().hex, amount=amount, expires_at=now + ttl_s)
    conn.execute(_INSERT_RESERVATION, (reservation.id, str(amount), reservation.expires_at))
    tally.hold(reservation)
    return reservation


def _release(conn: sqlite3.Connection, memo: dict[str, object], *, reservation_id: str) -> None:
    _take(conn, memo, reservation_id)


def _take(conn: sqlite3.Connection, memo: dict[str, object], reservation_id: str) -> None:
    """Delete a hold, taking its amount off the tally when there is one."""
    tally = memo.get("tally")
    if not isinstance(tally, _Tally):
        conn.execute(_DELETE_RESERVATION, (reservation_id,))
        return
    if _RETURNING:
        found = conn.execute(_TAKE_RESERVATION, (reservation_id,)).fetchall()
    else:  # SQLite before 3.35 has no RETURNING
        found = conn.execute(_SELECT_RESERVATION, (reservation_id,)).fetchall()
        conn.execute(_DELETE_RESERVATION, (reservation_id,))
    for (amount,) in found:
        tally.unhold(amount)


def _refusal(amount: Decimal, limits: BudgetLimits, totals: SpendTotals) -> BudgetExceededError | None:
    """The error for the first of daily, monthly that `amount` does not fit, or None."""
    checks = (("daily", limits.daily, totals.spent_today), ("monthly", limits.monthly, totals.spent_month))
    with localcontext(prec=_EXACT_PREC):
        for budget, limit, spent in checks:
            if limit is not None and spent + totals.reserved + amount > limit:
                remaining = max(_ZERO, limit - spent - totals.reserved)
                detail = f"(limit ${limit}, spent ${spent}, held by requests in flight ${totals.reserved})"
                return BudgetExceededError(budget, remaining, amount, detail)
    return None


def _commit(
    conn: sqlite3.Connection,
    memo: dict[str, object],
    *,
    reservation_id: str | None,
    row: LedgerRow,
    params: tuple[object, ...],
) -> None:
    """Drop the reservation, append the row and add its cost to its day and month (one transaction)."""
    if reservation_id is not None:
        _take(conn, memo, reservation_id)
    inserted = conn.execute(_INSERT_ROW, params).rowcount == 1
    if inserted and row.cost:
        day, month = _periods(row.ts)
        conn.execute(_ADD_SPEND, (day, str(row.cost), month, str(row.cost)))
        if isinstance(tally := memo.get("tally"), _Tally):
            tally.spend(day, month, row.cost)


def _read_totals(conn: sqlite3.Connection, now: float) -> SpendTotals:
    """Spend of the UTC day and month of `now` and the live reservations, from one snapshot."""
    day, month = _periods(now)
    if conn.in_transaction:
        return _totals_in(conn, now, day, month)
    conn.execute("BEGIN")
    try:
        return _totals_in(conn, now, day, month)
    finally:
        conn.execute("COMMIT")


def _totals_in(conn: sqlite3.Connection, now: float, day: str, month: str) -> SpendTotals:
    spent: dict[str, str] = dict(conn.execute(_SELECT_SPEND, (day, month)).fetchall())
    held = (amount for (amount,) in conn.execute(_LIVE_AMOUNTS, (now,)))
    return SpendTotals(
        spent_today=Decimal(spent.get(day, "0")),
        spent_month=Decimal(spent.get(month, "0")),
        reserved=_exact_sum(held),
    )


def _select_rows(conn: sqlite3.Connection, since: float, limit: int) -> list[tuple[object, ...]]:
    return conn.execute(_SELECT_ROWS, (since, limit)).fetchall()


def _fetch_one(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> tuple[object, ...] | None:
    found: tuple[object, ...] | None = conn.execute(sql, params).fetchone()
    return found


def _periods(ts: float) -> tuple[str, str]:
    """The spend keys of the UTC day and the UTC month that `ts` falls in."""
    t = time.gmtime(ts)
    return f"day:{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", f"month:{t.tm_year:04d}-{t.tm_mon:02d}"


def _dec_add(a: str, b: str) -> str:
    """SQL function `dec_add(a, b)`: the exact sum of two Decimal TEXT values."""
    return str(_EXACT.add(Decimal(a), Decimal(b)))


def _exact_sum(values: Iterable[str]) -> Decimal:
    total = _ZERO
    for value in values:
        total = _EXACT.add(total, Decimal(value))
    return total


def _money_text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    if not value.is_finite():
        raise ValueError(f"a ledger amount must be finite, not {value}")
    return str(value)


def _encode_row(row: LedgerRow) -> tuple[object, ...]:
    """The INSERT parameters of a row, in `_COLUMNS` order."""
    detail = json.dumps(row.detail, default=str, separators=(",", ":"))
    return (
        row.id, row.ts, row.requested_model, row.model, row.provider,
        row.prompt_tokens, row.completion_tokens, row.cached_tokens, row.reasoning_tokens,
        _money_text(row.cost), row.cost_source, row.latency_ms, row.attempts, int(row.cache_hit),
        _money_text(row.saved), row.status, row.error, int(row.streamed), detail,
    )  # fmt: skip


def _decode_row(values: tuple[object, ...]) -> LedgerRow:
    """A `LedgerRow` from a SELECT of `_COLUMNS`, with its Decimals restored exactly."""
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
