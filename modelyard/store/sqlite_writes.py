"""The write transactions of the SQLite store: reserve, release and commit money, exactly.

Each function here is a group-commit `Work`: it runs inside a `BEGIN IMMEDIATE` transaction that
the store opens and commits (see `modelyard.store.group_commit`), with that transaction's scratch
dict (`memo`), where the budget `Tally` is kept between transactions of the inline connection.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterable, Sequence
from decimal import Context, Decimal, localcontext
from typing import Final

from modelyard.errors import BudgetExceededError
from modelyard.store.base import BudgetLimits, LedgerRow, Reservation, SpendTotals, new_id

__all__ = [
    "COLUMNS",
    "EXACT",
    "EXACT_PREC",
    "INSERT_ROW",
    "PURGE_EXPIRED",
    "RETURNING",
    "Tally",
    "append_row",
    "commit",
    "dec_add",
    "dec_less",
    "exact_sum",
    "periods",
    "read_totals",
    "refusal",
    "release",
    "renew",
    "reserve",
    "take",
    "totals_in",
]

_ZERO: Final = Decimal(0)
# Far beyond the digits of any sum of USD amounts, so adding and subtracting stay exact.
EXACT_PREC: Final = 200
EXACT: Final = Context(prec=EXACT_PREC)
COLUMNS: Final = (
    "id, ts, requested_model, model, provider, prompt_tokens, completion_tokens, cached_tokens, "
    "reasoning_tokens, cost, cost_source, latency_ms, attempts, cache_hit, saved, status, error, "
    "streamed, detail"
)
# Module constants so sqlite3's statement cache prepares each one once per connection.
INSERT_ROW: Final = f"INSERT OR IGNORE INTO ledger ({COLUMNS}) VALUES ({', '.join('?' * 19)})"
_ADD_SPEND: Final = (
    "INSERT INTO spend (period, total) VALUES (?, ?), (?, ?) "
    "ON CONFLICT (period) DO UPDATE SET total = dec_add(total, excluded.total)"
)
_SELECT_SPEND: Final = "SELECT period, total FROM spend WHERE period IN (?, ?)"
PURGE_EXPIRED: Final = "DELETE FROM reservations WHERE expires_at <= ?"
_LIVE_HOLDS_BY_ID: Final = "SELECT id, amount FROM reservations WHERE expires_at > ?"
_LIVE_HOLDS: Final = "SELECT amount, expires_at FROM reservations WHERE expires_at > ?"
_INSERT_RESERVATION: Final = "INSERT INTO reservations (id, amount, expires_at) VALUES (?, ?, ?)"
_DELETE_RESERVATION: Final = "DELETE FROM reservations WHERE id = ?"
_TAKE_RESERVATION: Final = "DELETE FROM reservations WHERE id = ? RETURNING amount"
_SELECT_RESERVATION: Final = "SELECT amount FROM reservations WHERE id = ?"
RETURNING: Final = sqlite3.sqlite_version_info >= (3, 35)
_DAY_S: Final = 86_400
_RENEW_CHUNK: Final = 500
"""Holds renewed per statement (SQLite before 3.32 takes at most 999 parameters)."""


class Tally:
    """The budget totals as read once (purge, then sum the live holds and the day's and month's
    spend), then kept exact by every write this connection makes: holds added and taken, spend
    added. Reservations read it instead of the tables: O(1) however many requests are in flight.

    It is kept only while no other connection writes (`_begin` checks SQLite's data_version inside
    the write lock) and is exact while `now` stays in its UTC day and before the first live hold
    expires: then a purge would delete nothing and every hold still counts.
    """

    __slots__ = ("day", "day_start", "first_expiry", "month", "reserved", "spent_month", "spent_today", "version")

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        # Other connections' commits change it; this connection's own do not.
        self.version: int = conn.execute("PRAGMA data_version").fetchone()[0]
        self.day, self.month = periods(now)
        self.day_start = now - now % _DAY_S
        spent: dict[str, str] = dict(conn.execute(_SELECT_SPEND, (self.day, self.month)).fetchall())
        self.spent_today = Decimal(spent.get(self.day, "0"))
        self.spent_month = Decimal(spent.get(self.month, "0"))
        holds = conn.execute(_LIVE_HOLDS, (now,)).fetchall()
        self.reserved = exact_sum(amount for amount, _ in holds)
        self.first_expiry: float = min((expiry for _, expiry in holds), default=float("inf"))

    def covers(self, now: float) -> bool:
        return now < self.first_expiry and self.day_start <= now < self.day_start + _DAY_S

    def totals(self) -> SpendTotals:
        return SpendTotals(spent_today=self.spent_today, spent_month=self.spent_month, reserved=self.reserved)

    def hold(self, reservation: Reservation) -> None:
        self.reserved = EXACT.add(self.reserved, reservation.amount)
        self.first_expiry = min(self.first_expiry, reservation.expires_at)

    def unhold(self, amount: str) -> None:
        """A live hold was deleted (the first expiry may now be later: kept, which only re-reads sooner)."""
        self.reserved = EXACT.subtract(self.reserved, Decimal(amount))

    def spend(self, day: str, month: str, cost: Decimal) -> None:
        if day == self.day:
            self.spent_today = EXACT.add(self.spent_today, cost)
        if month == self.month:
            self.spent_month = EXACT.add(self.spent_month, cost)


def reserve(
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
    if not isinstance(tally, Tally) or not tally.covers(now):
        conn.execute(PURGE_EXPIRED, (now,))
        tally = memo["tally"] = Tally(conn, now)
    refused = refusal(amount, limits, tally.totals())
    if refused is not None:
        return refused
    reservation = Reservation(id=new_id(), amount=amount, expires_at=now + ttl_s)
    conn.execute(_INSERT_RESERVATION, (reservation.id, str(amount), reservation.expires_at))
    tally.hold(reservation)
    return reservation


def release(conn: sqlite3.Connection, memo: dict[str, object], *, reservation_id: str) -> None:
    take(conn, memo, reservation_id)


def take(conn: sqlite3.Connection, memo: dict[str, object], reservation_id: str) -> None:
    """Delete a hold, taking its amount off the tally when there is one."""
    tally = memo.get("tally")
    if not isinstance(tally, Tally):
        conn.execute(_DELETE_RESERVATION, (reservation_id,))
        return
    if RETURNING:
        found = conn.execute(_TAKE_RESERVATION, (reservation_id,)).fetchall()
    else:  # SQLite before 3.35 has no RETURNING
        found = conn.execute(_SELECT_RESERVATION, (reservation_id,)).fetchall()
        conn.execute(_DELETE_RESERVATION, (reservation_id,))
    for (amount,) in found:
        tally.unhold(amount)


def renew(
    conn: sqlite3.Connection,
    memo: dict[str, object],
    *,
    reservation_ids: Sequence[str],
    expires_at: float,
    now: float,
) -> set[str]:
    """Push the expiry of the holds among `reservation_ids` that are live at `now` to `expires_at` (never
    earlier); the ids renewed. An expired hold is not revived. The tally stays exact: no amount changes,
    and its first expiry becomes a bound that is at worst early (it then reads the holds again)."""
    renewed: set[str] = set()
    for start in range(0, len(reservation_ids), _RENEW_CHUNK):
        chunk = tuple(reservation_ids[start : start + _RENEW_CHUNK])
        live = f"id IN ({', '.join('?' * len(chunk))}) AND expires_at > ?"
        renewed.update(rid for (rid,) in conn.execute(f"SELECT id FROM reservations WHERE {live}", (*chunk, now)))
        conn.execute(f"UPDATE reservations SET expires_at = max(expires_at, ?) WHERE {live}", (expires_at, *chunk, now))
    return renewed


def refusal(amount: Decimal, limits: BudgetLimits, totals: SpendTotals) -> BudgetExceededError | None:
    """The error for the first of daily, monthly that `amount` does not fit, or None; when both refuse, the
    one it would not fit even once the requests in flight settle (its advice is not to wait for them)."""
    checks = (("daily", limits.daily, totals.spent_today), ("monthly", limits.monthly, totals.spent_month))
    with localcontext(prec=EXACT_PREC):
        over = [(b, lim, s) for b, lim, s in checks if lim is not None and s + totals.reserved + amount > lim]
        if not over:
            return None
        budget, limit, spent = next(((b, lim, s) for b, lim, s in over if s + amount > lim), over[0])
        remaining = max(_ZERO, limit - spent - totals.reserved)
        return BudgetExceededError.over_limit(
            budget, amount, limit=limit, spent=spent, held=totals.reserved, remaining=remaining
        )


def commit(
    conn: sqlite3.Connection,
    memo: dict[str, object],
    *,
    reservation_id: str | None,
    row: LedgerRow,
    params: tuple[object, ...],
) -> None:
    """Drop the reservation, append the row and add its cost to its day and month (one transaction)."""
    if reservation_id is not None:
        take(conn, memo, reservation_id)
    append_row(conn, memo, row, params)


def append_row(conn: sqlite3.Connection, memo: dict[str, object], row: LedgerRow, params: tuple[object, ...]) -> bool:
    """Append the row and add its cost to its day and month; False (nothing added) when its id is there."""
    inserted: bool = conn.execute(INSERT_ROW, params).rowcount == 1
    if inserted and row.cost:
        day, month = periods(row.ts)
        conn.execute(_ADD_SPEND, (day, str(row.cost), month, str(row.cost)))
        if isinstance(tally := memo.get("tally"), Tally):
            tally.spend(day, month, row.cost)
    return inserted


def read_totals(conn: sqlite3.Connection, now: float, lease_id: str = "", drawn: Decimal = _ZERO) -> SpendTotals:
    """Spend of the UTC day and month of `now` and the live reservations, from one snapshot.

    The holds of this process's lease (`lease_id`) count as what is drawn from it (`drawn`): what
    its requests in flight hold, not the room it keeps for the next ones.
    """
    day, month = periods(now)
    if conn.in_transaction:
        return totals_in(conn, now, day, month, lease_id, drawn)
    conn.execute("BEGIN")
    try:
        return totals_in(conn, now, day, month, lease_id, drawn)
    finally:
        conn.execute("COMMIT")


def totals_in(
    conn: sqlite3.Connection, now: float, day: str, month: str, lease_id: str = "", drawn: Decimal = _ZERO
) -> SpendTotals:
    spent: dict[str, str] = dict(conn.execute(_SELECT_SPEND, (day, month)).fetchall())
    held = [amount for (rid, amount) in conn.execute(_LIVE_HOLDS_BY_ID, (now,)) if rid != lease_id]
    return SpendTotals(
        spent_today=Decimal(spent.get(day, "0")),
        spent_month=Decimal(spent.get(month, "0")),
        reserved=EXACT.add(exact_sum(held), drawn),
    )


def periods(ts: float) -> tuple[str, str]:
    """The spend keys of the UTC day and the UTC month that `ts` falls in."""
    return _periods_of_day(int(ts // _DAY_S))  # Unix time has no leap seconds: every UTC day is 86,400 s


@functools.lru_cache(maxsize=4)
def _periods_of_day(day: int) -> tuple[str, str]:
    t = time.gmtime(day * _DAY_S)
    return f"day:{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", f"month:{t.tm_year:04d}-{t.tm_mon:02d}"


def dec_add(a: str, b: str) -> str:
    """SQL function `dec_add(a, b)`: the exact sum of two Decimal TEXT values."""
    return str(EXACT.add(Decimal(a), Decimal(b)))


def dec_less(a: str, b: str) -> str:
    """SQL function `dec_less(a, b)`: a - b exactly, but never below zero."""
    return str(max(_ZERO, EXACT.subtract(Decimal(a), Decimal(b))))


def exact_sum(values: Iterable[str]) -> Decimal:
    total = _ZERO
    for value in values:
        total = EXACT.add(total, Decimal(value))
    return total
