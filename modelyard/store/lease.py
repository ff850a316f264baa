"""Budget leases: one reservation row holds the worst cases of many requests of this process.

Why: reserving each request's worst case in a transaction of its own puts a SQLite commit (about
0.1 ms, more under load) on the critical path of every request. A lease reserves room for
`LEASE_DRAWS` requests like the one that asked, in one transaction, atomically and against every
limit, exactly like any reservation. The requests then draw their worst case from it in memory, and
each commit moves its actual cost from the lease to the spend in the transaction that writes its
ledger row. Other processes count the whole lease as held, so across processes spent + held still
never exceeds a limit.

What it costs: room a lease holds is unavailable to other processes until it is spent, resized or
expired. So a lease takes at most 1/`LEASE_SHARE` of what remains under each limit; closer to a limit
than that, every request is reserved exactly, as without leases. A lease is resized from scratch at
each grant (to what is drawn plus fresh room), given back when the store closes, and, when its
process dies, expires like any reservation: twice the reservation TTL after its last grant, or when
the last request drawn from it expires, if that is later. A draw expires like a reservation too: one
never settled stops being held at its expiry. A draw is renewed like a reservation while its request
is in flight (`renew`), and the store then keeps the lease's row at least as long as the draw, since
other processes count the row, not the draws. A request's cost leaves the lease up to what it drew;
more than that is spend beyond its hold, never the room other requests drew.
"""

from __future__ import annotations

import math
import sqlite3
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Final, cast

import anyio

from modelyard.errors import BudgetExceededError
from modelyard.store import sqlite_writes as writes
from modelyard.store.base import BudgetLimits, LedgerRow, Reservation
from modelyard.store.group_commit import AFTER_COMMIT

__all__ = [
    "DROP_LEASE",
    "EXACT_FOR_S",
    "LEASE_AMOUNT",
    "LEASE_DRAWS",
    "LEASE_SHARE",
    "SHRINK_LEASE",
    "Grant",
    "Lease",
    "grant",
    "spend",
]

LEASE_DRAWS: Final = 16
"""A grant holds room for this many requests with the worst case of the one that asked."""
LEASE_SHARE: Final = 64
"""A grant takes at most 1/64 of what remains under each limit."""

EXACT_FOR_S: Final = 1.0
"""After a grant found the limits too close for a lease, how long requests are reserved exactly
before a grant is tried again (at once when the limits change)."""

_ZERO: Final = Decimal(0)
_SET_LEASE: Final = (
    "INSERT INTO reservations (id, amount, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET amount = excluded.amount, expires_at = excluded.expires_at"
)
_SPEND_FROM_LEASE: Final = "UPDATE reservations SET amount = dec_less(amount, ?) WHERE id = ?"
_SPEND_FROM_LEASE_RETURNING: Final = f"{_SPEND_FROM_LEASE} RETURNING amount"
LEASE_AMOUNT: Final = "SELECT amount FROM reservations WHERE id = ?"
SHRINK_LEASE: Final = "UPDATE reservations SET amount = ? WHERE id = ?"
DROP_LEASE: Final = "DELETE FROM reservations WHERE id = ?"


class Lease:
    """This process's lease: what its row holds (as last written here) and what requests drew from it.

    Only this process writes the row. Every transaction that does returns the row's new state with
    a sequence number, and `apply` keeps the newest, so callers resuming in any order agree.

    One grant at a time (`granting`), and no draw while it runs: a grant sizes the row from what is
    drawn when its transaction runs (possibly in a worker thread), so what is drawn may only fall
    until its outcome is applied, or a draw could land on room the grant just gave back. What it
    sizes for is what is `outstanding`: the draws whose cost no transaction has moved to the spend
    yet (a request's draw ends only when its caller resumes, after its commit).
    """

    def __init__(self) -> None:
        self.id = f"lease-{uuid.uuid4().hex}"
        self.amount = _ZERO
        self.expires_at = 0.0
        self.drawn = _ZERO
        self._spent: set[str] = set()  # draws whose cost a committed transaction moved to the spend
        self._limits: tuple[Decimal | None, Decimal | None] | None = None
        self._draws: dict[str, tuple[Decimal, float]] = {}  # amount, expiry
        self._first_expiry = math.inf  # no draw expires before this (a bound: one may have ended since)
        self._count = 0
        self._seq = 0
        self._applied = 0
        self.granting = anyio.Lock()
        self._closed: tuple[tuple[Decimal | None, Decimal | None], float] | None = None

    def draw(self, amount: Decimal, limits: BudgetLimits, *, now: float, ttl_s: float) -> Reservation | None:
        """Hold `amount` from the lease, or None when the lease cannot cover it (a grant must run first).

        It cannot while a grant runs, when its room is short, when the daily or monthly limit changed
        since its grant (the grant checked the old ones), or when it would expire before a request
        drawn now does.
        """
        if self.granting.locked():
            return None
        return self.draw_granting(amount, limits, now=now, ttl_s=ttl_s)

    def draw_granting(self, amount: Decimal, limits: BudgetLimits, *, now: float, ttl_s: float) -> Reservation | None:
        """`draw`, by the holder of `granting`."""
        self.expire(now)
        if (limits.daily, limits.monthly) != self._limits or self.expires_at < now + ttl_s:
            return None
        if self.drawn + amount > self.amount:
            return None
        self._count += 1
        reservation = Reservation(id=f"{self.id}:{self._count}", amount=amount, expires_at=now + ttl_s)
        self._draws[reservation.id] = (amount, reservation.expires_at)
        self._first_expiry = min(self._first_expiry, reservation.expires_at)
        self.drawn += amount
        return reservation

    def owns(self, reservation_id: str) -> bool:
        return reservation_id in self._draws

    def drawn_amount(self, reservation_id: str) -> Decimal | None:
        """The worst case `reservation_id` drew, or None when its draw is over (or expired)."""
        draw = self._draws.get(reservation_id)
        return None if draw is None else draw[0]

    def undraw(self, reservation_id: str) -> None:
        """The request is over (committed or released): its worst case is no longer drawn. Nothing
        happens for a draw that has ended already (it expired meanwhile)."""
        draw = self._draws.pop(reservation_id, None)
        self._spent.discard(reservation_id)
        if draw is not None:
            self.drawn -= draw[0]

    def expire(self, now: float) -> None:
        """End the draws whose reservation has expired, as a reservation row of their own would be
        purged: one never settled (its commit failed, or its caller vanished) stops being held.

        A late commit of an expired draw only adds its cost to the spend (`spend` leaves the lease
        alone), as a late commit of a purged reservation does.
        """
        if now < self._first_expiry:
            return  # the usual case, without a walk over every draw in flight (hundreds under load)
        for reservation_id, (_, expires_at) in list(self._draws.items()):
            if expires_at <= now:
                self.undraw(reservation_id)
        self._first_expiry = min((expiry for _, expiry in self._draws.values()), default=math.inf)

    def renew(self, reservation_ids: Iterable[str], *, expires_at: float, now: float) -> list[str]:
        """Push the expiry of the draws among `reservation_ids` still live at `now` to `expires_at` (never
        earlier); the ids renewed. Done before the row is renewed, so a grant running meanwhile keeps the
        row as long as these draws (`last_expiry`). The first expiry known stays a bound (now an early one)."""
        renewed: list[str] = []
        for reservation_id in reservation_ids:
            draw = self._draws.get(reservation_id)
            if draw is not None and draw[1] > now:
                self._draws[reservation_id] = (draw[0], max(draw[1], expires_at))
                renewed.append(reservation_id)
        return renewed

    def outstanding(self) -> Decimal:
        """What the row must hold for the requests in flight (called inside a transaction)."""
        draws = list(self._draws.items())  # a snapshot: the loop may end draws meanwhile (thread path)
        return sum((amount for rid, (amount, _) in draws if rid not in self._spent), _ZERO)

    def last_expiry(self) -> float:
        """When the last draw still in flight expires (0 with none): the row must be held until then."""
        draws = list(self._draws.items())  # a snapshot, as in `outstanding`
        return max((expiry for rid, (_, expiry) in draws if rid not in self._spent), default=0.0)

    def spent(self, reservation_id: str) -> None:
        """The transaction that moved this draw's cost to the spend has committed (an `AFTER_COMMIT` hook)."""
        if reservation_id in self._draws:
            self._spent.add(reservation_id)

    def next_seq(self) -> int:
        """Called inside a transaction that writes the row, in the order the writes run."""
        self._seq += 1
        return self._seq

    def apply(self, seq: int, amount: Decimal | None) -> None:
        """Take the row's amount as written by transaction `seq` unless a later one was taken already.

        `amount` None: the row was gone (expired and purged by someone); the next draw grants anew.
        """
        if seq <= self._applied:
            return
        self._applied = seq
        if amount is None:
            self.amount, self.expires_at = _ZERO, 0.0
        else:
            self.amount = amount

    def apply_grant(self, grant: Grant) -> None:
        """Take a grant's outcome. Its expiry holds even if a later spend's amount was taken already:
        only grants set it, one at a time."""
        newest = grant.seq > self._applied
        self.apply(grant.seq, grant.amount)
        if newest or self.amount:  # else a later spend found the row gone
            self.expires_at = grant.expires_at

    def granted_under(self, limits: BudgetLimits) -> None:
        self._limits = (limits.daily, limits.monthly)
        self._closed = None

    def close_for(self, limits: BudgetLimits, *, now: float) -> None:
        """A grant found these limits too close for a lease: reserve exactly for a while without asking
        again (each grant is a transaction of its own, one at a time), unless the limits change."""
        self._closed = ((limits.daily, limits.monthly), now + EXACT_FOR_S)

    def exact(self, limits: BudgetLimits, *, now: float) -> bool:
        """Whether requests under `limits` are reserved exactly for now, without trying a grant."""
        closed = self._closed
        return closed is not None and closed[0] == (limits.daily, limits.monthly) and now < closed[1]

    def forget(self) -> None:
        """What the row holds is unknown (a write failed): the next draw grants anew, reading it."""
        self.expires_at = 0.0


@dataclass(frozen=True, slots=True)
class Grant:
    """What a grant transaction did: resized the lease (`seq`, `amount`, `expires_at`), and, when the
    lease could not take the request, the request's own reservation or refusal (`exact`)."""

    seq: int
    amount: Decimal
    expires_at: float
    exact: Reservation | BudgetExceededError | None


def grant(
    conn: sqlite3.Connection,
    memo: dict[str, object],
    *,
    lease: Lease,
    amount: Decimal,
    limits: BudgetLimits,
    now: float,
    ttl_s: float,
) -> Grant:
    """Resize the lease to what is drawn plus room for `LEASE_DRAWS` times `amount`, if every limit
    leaves 64 times that room; else shrink it to what is drawn and reserve `amount` exactly."""
    conn.execute(writes.PURGE_EXPIRED, (now,))
    tally = memo["tally"] = writes.Tally(conn, now)
    found = conn.execute(LEASE_AMOUNT, (lease.id,)).fetchone()
    held_here = Decimal(found[0]) if found else _ZERO
    others = writes.EXACT.subtract(tally.reserved, held_here)
    room = amount * LEASE_DRAWS
    drawn = lease.outstanding()
    # Never shorter than a draw in flight: other processes must count it until it expires.
    last_draw = lease.last_expiry()
    if _leaves_room(room, drawn, others, tally, limits):
        size, expires_at = drawn + room, max(now + 2 * ttl_s, last_draw)
        _set(conn, tally, others, lease.id, size, expires_at)
        return Grant(lease.next_seq(), size, expires_at, None)
    # The room no request drew goes back to everyone before this request is reserved on its own. Only
    # back: `drawn` may still count a draw whose cost just moved, and a row this grant did not check
    # against the limits must not grow.
    drawn = min(drawn, held_here)
    expires_at = max(lease.expires_at, now + ttl_s, last_draw)
    _set(conn, tally, others, lease.id, drawn, expires_at)
    exact = writes.reserve(conn, memo, amount=amount, limits=limits, now=now, ttl_s=ttl_s)
    return Grant(lease.next_seq(), drawn, expires_at, exact)


def _leaves_room(room: Decimal, drawn: Decimal, others: Decimal, tally: writes.Tally, limits: BudgetLimits) -> bool:
    """Whether `room` is at most 1/LEASE_SHARE of what each limit leaves after spend and every hold."""
    checks = ((limits.daily, tally.spent_today), (limits.monthly, tally.spent_month))
    for limit, spent in checks:
        if limit is None:
            continue
        remaining = writes.EXACT.subtract(writes.EXACT.subtract(writes.EXACT.subtract(limit, spent), others), drawn)
        if room * LEASE_SHARE > remaining:
            return False
    return True


def _set(
    conn: sqlite3.Connection, tally: writes.Tally, others: Decimal, lease_id: str, size: Decimal, expires_at: float
) -> None:
    conn.execute(_SET_LEASE, (lease_id, str(size), expires_at))
    tally.reserved = writes.EXACT.add(others, size)
    tally.first_expiry = min(tally.first_expiry, expires_at)


def spend(
    conn: sqlite3.Connection,
    memo: dict[str, object],
    *,
    lease: Lease,
    reservation_id: str,
    row: LedgerRow,
    params: tuple[object, ...],
) -> tuple[int, Decimal | None] | None:
    """Append the ledger row of a request drawn from the lease and move its cost from the lease to
    the spend. Returns the sequence number and the lease's new amount (None: its row is gone), or
    None when the lease did not change (no cost, the row was in the ledger already, or the draw
    expired meanwhile).

    The lease gives up at most what the draw held: a cost over its worst case is spend beyond the
    hold, and must not use up the room the other requests in flight drew.
    """
    if not (writes.append_row(conn, memo, row, params) and row.cost):
        return None
    held = lease.drawn_amount(reservation_id)
    if held is None:  # expired: the lease stopped holding it, as a purged reservation row would
        return None
    memo.pop("tally", None)  # its holds change by an amount this transaction does not read
    moved = str(min(row.cost, held))
    if writes.RETURNING:
        found = conn.execute(_SPEND_FROM_LEASE_RETURNING, (moved, lease.id)).fetchone()
    else:  # SQLite before 3.35 has no RETURNING
        conn.execute(_SPEND_FROM_LEASE, (moved, lease.id))
        found = conn.execute(LEASE_AMOUNT, (lease.id,)).fetchone()
    after_commit = cast(list[Callable[[], None]], memo.setdefault(AFTER_COMMIT, []))
    after_commit.append(partial(lease.spent, reservation_id))
    return lease.next_seq(), Decimal(found[0]) if found else None
