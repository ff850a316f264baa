"""Budget leases: a process holds room for many requests in one reservation row, and the limits still hold."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from modelyard.errors import BudgetExceededError
from modelyard.store import BudgetLimits, LedgerRow, SQLiteStore
from modelyard.store.lease import LEASE_DRAWS
from tests.store import _workers
from tests.store.test_sqlite import run_racers, spawnable  # noqa: F401  (a fixture)

pytestmark = pytest.mark.anyio
D = Decimal
NOW = datetime(2026, 8, 19, 12, tzinfo=UTC).timestamp()
ROOMY = BudgetLimits(daily=D(1000), monthly=D(10_000))
A = D("0.0001")  # a worst case far below 1/64 of what ROOMY leaves: leased


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "modelyard.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(db_path) as opened:
        yield opened


@pytest.fixture
async def observer(db_path: Path, store: SQLiteStore) -> AsyncIterator[SQLiteStore]:
    """Another process's view of the same file (a store with no lease of its own)."""
    async with SQLiteStore(db_path, lease=False) as opened:
        yield opened


def _holds(db_path: Path) -> list[tuple[str, Decimal, float]]:
    with sqlite3.connect(db_path) as conn:
        found = conn.execute("SELECT id, amount, expires_at FROM reservations ORDER BY id").fetchall()
    return [(str(rid), D(amount), float(expiry)) for rid, amount, expiry in found]


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _row(row_id: str, cost: str | None) -> LedgerRow:
    return LedgerRow(id=row_id, ts=NOW, requested_model="auto", cost=None if cost is None else D(cost))


async def test_requests_of_one_process_draw_from_one_lease_row(
    store: SQLiteStore, observer: SQLiteStore, db_path: Path
) -> None:
    """Five reservations write one row, holding room for 16; the process counts 5 in flight, others 16."""
    for _ in range(5):
        await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    [(lease_id, amount, _)] = _holds(db_path)
    assert lease_id.startswith("lease-") and amount == A * LEASE_DRAWS
    assert (await store.totals(now=NOW)).reserved == 5 * A
    assert (await observer.totals(now=NOW)).reserved == A * LEASE_DRAWS


async def test_a_commit_moves_its_cost_from_the_lease_to_the_spend(
    store: SQLiteStore, observer: SQLiteStore, db_path: Path
) -> None:
    """The row's cost leaves the lease and joins the day's spend in one transaction, exactly."""
    reservation = await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    await store.commit(reservation.id, _row("r1", "0.00001255"))
    seen = await observer.totals(now=NOW)
    assert (seen.spent_today, seen.reserved) == (D("0.00001255"), A * LEASE_DRAWS - D("0.00001255"))
    own = await store.totals(now=NOW)
    assert (own.spent_today, own.reserved) == (D("0.00001255"), 0)
    assert [(row.id, row.cost) for row in await store.rows()] == [("r1", D("0.00001255"))]


async def test_committing_the_same_row_twice_moves_its_cost_once(store: SQLiteStore, observer: SQLiteStore) -> None:
    first = await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    second = await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    await store.commit(first.id, _row("same", "0.00005"))
    await store.commit(second.id, _row("same", "0.00005"))
    seen = await observer.totals(now=NOW)
    assert (seen.spent_today, seen.reserved) == (D("0.00005"), A * LEASE_DRAWS - D("0.00005"))


async def test_releasing_a_draw_writes_nothing(store: SQLiteStore, db_path: Path) -> None:
    """The released worst case goes back to the lease's room; the file does not change."""
    reservation = await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    with sqlite3.connect(db_path) as conn:
        before = _data_version(conn)
        await store.release(reservation.id)
        assert (await store.totals(now=NOW)).reserved == 0
        assert _data_version(conn) == before


async def test_near_a_limit_each_request_is_reserved_on_its_own(
    store: SQLiteStore, observer: SQLiteStore, db_path: Path
) -> None:
    """Room for 16 requests of 0.01 is more than 1/64 of a 1.00 budget: the request gets its own row."""
    reservation = await store.reserve(D("0.01"), BudgetLimits(daily=D(1)), now=NOW, ttl_s=60)
    assert not reservation.id.startswith("lease-")
    assert (await observer.totals(now=NOW)).reserved == D("0.01")
    assert [amount for rid, amount, _ in _holds(db_path) if rid == reservation.id] == [D("0.01")]


async def test_a_tightened_limit_holds_at_the_next_request_despite_room_in_the_lease(
    store: SQLiteStore, observer: SQLiteStore
) -> None:
    """The lease was granted under 1000; under 0.0005 the next request is checked again, and refused."""
    await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    tight = BudgetLimits(daily=D("0.00025"))
    with pytest.raises(BudgetExceededError) as refused:
        await store.reserve(A, tight, now=NOW, ttl_s=60)
    assert refused.value.budget == "daily" and refused.value.remaining == D("0.00005")
    # The lease gave back the room nobody drew: other processes see only the two requests in flight.
    assert (await observer.totals(now=NOW)).reserved == 2 * A


async def test_a_lease_that_would_expire_before_the_request_is_granted_again(store: SQLiteStore, db_path: Path) -> None:
    """Granted at NOW for twice the TTL; a request at NOW+15 with a TTL of 10 needs it until NOW+25."""
    await store.reserve(A, ROOMY, now=NOW, ttl_s=10)
    [(_, _, first_expiry)] = _holds(db_path)
    await store.reserve(A, ROOMY, now=NOW + 5, ttl_s=10)
    assert [expiry for _, _, expiry in _holds(db_path)] == [first_expiry] == [NOW + 20]
    await store.reserve(A, ROOMY, now=NOW + 15, ttl_s=10)
    assert [expiry for _, _, expiry in _holds(db_path)] == [NOW + 35]


async def test_closing_the_store_gives_the_lease_back(db_path: Path) -> None:
    async with SQLiteStore(db_path) as store:
        await store.commit((await store.reserve(A, ROOMY, now=NOW, ttl_s=60)).id, _row("r1", "0.00002"))
        assert len(_holds(db_path)) == 1
    assert _holds(db_path) == []
    async with SQLiteStore(db_path, lease=False) as reopened:
        totals = await reopened.totals(now=NOW)
        assert (totals.spent_today, totals.reserved) == (D("0.00002"), 0)


async def test_a_lease_purged_by_another_process_is_granted_anew(
    store: SQLiteStore, observer: SQLiteStore, db_path: Path
) -> None:
    """Past its expiry another process deletes the row; the commit still counts, the next request re-leases."""
    reservation = await store.reserve(A, ROOMY, now=NOW, ttl_s=10)
    await observer.reserve(D(0), ROOMY, now=NOW + 21, ttl_s=10)  # purges the expired lease on its way
    assert all(not rid.startswith("lease-") for rid, _, _ in _holds(db_path))
    await store.commit(reservation.id, _row("late", "0.00003"))
    assert (await observer.totals(now=NOW + 21)).spent_today == D("0.00003")
    await store.reserve(A, ROOMY, now=NOW + 21, ttl_s=10)
    assert [amount for rid, amount, _ in _holds(db_path) if rid.startswith("lease-")] == [A * LEASE_DRAWS]


async def test_a_lease_store_and_an_exact_store_never_hold_past_a_limit_together(
    store: SQLiteStore, observer: SQLiteStore
) -> None:
    """The observer reserves what the lease leaves: exactly up to the limit, not a cent more."""
    limits = BudgetLimits(daily=D("0.2048"))  # 64 x 16 x A: the lease may take its room, and only just
    await store.reserve(A, limits, now=NOW, ttl_s=60)
    left = D("0.2048") - A * LEASE_DRAWS
    await observer.reserve(left, limits, now=NOW, ttl_s=60)
    with pytest.raises(BudgetExceededError):
        await observer.reserve(D("0.00000001"), limits, now=NOW, ttl_s=60)
    for _ in range(7):  # the lease's own room is still the process's to use, while few are in flight
        await store.reserve(A, limits, now=NOW, ttl_s=60)
    with pytest.raises(BudgetExceededError):  # with 8 in flight, requests are reserved on their own again
        await store.reserve(A, limits, now=NOW, ttl_s=60)


def _run_spenders(db_path: Path, processes: int, amount: str, daily: str) -> list[Decimal]:
    args = (db_path, amount, daily, NOW)
    return [D(total) for total in run_racers(_workers.spend_until_refused, args, processes)]


@pytest.mark.usefixtures("spawnable")
async def test_4_processes_spending_through_leases_stop_at_the_daily_limit(db_path: Path) -> None:
    """4 processes x 8 tasks spend 0.00001 per request until refused: never past 0.05, and 98% of it used."""
    totals = await anyio.to_thread.run_sync(_run_spenders, db_path, 4, "0.00001", "0.05")
    async with SQLiteStore(db_path, lease=False) as reader:
        ledger = sum((row.cost or D(0) for row in await reader.rows()), D(0))
        seen = await reader.totals(now=NOW)
    assert sum(totals) == ledger == seen.spent_today
    assert D("0.049") <= ledger <= D("0.05")
    assert seen.reserved == 0  # every process gave its lease back on close


async def test_a_grant_before_a_committer_resumes_does_not_hold_its_spent_draw_again(
    store: SQLiteStore, observer: SQLiteStore
) -> None:
    """Two commits share a transaction; a grant runs before the second committer resumes. The grant
    sizes the lease without that draw, whose cost has moved to the spend (holding it too would let the
    process draw the same money twice once the committer resumes)."""
    first = await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    second = await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    big = D("0.002")  # no room left for it in the lease: it needs a grant

    async with anyio.create_task_group() as group:
        group.start_soon(store.commit, first.id, _row("first", str(A)))
        group.start_soon(store.commit, second.id, _row("second", str(A)))
        group.start_soon(partial(store.reserve, big, ROOMY, now=NOW, ttl_s=60))
    seen = await observer.totals(now=NOW)
    assert seen.spent_today == 2 * A
    assert seen.reserved == big * LEASE_DRAWS  # room for 16 like the big one, and nothing else in flight
    assert (await store.totals(now=NOW)).reserved == big


async def test_a_batch_that_rolls_back_leaves_every_draw_covered(store: SQLiteStore, observer: SQLiteStore) -> None:
    """A grant, a commit and a write that cannot be stored share a transaction, which rolls back. Redone one
    by one, the grant still holds the committed draw until its commit lands: whatever another process is
    then shown as left, taking all of it keeps spent + held within the limit."""
    limits = BudgetLimits(daily=D(1))
    first = await store.reserve(D("0.0005"), limits, now=NOW, ttl_s=60)
    second = await store.reserve(D("0.0005"), limits, now=NOW, ttl_s=60)
    unstorable = LedgerRow(id="bad", ts=NOW, requested_model=object(), cost=D(0))  # type: ignore[arg-type]

    async def after_a_turn(call: Callable[[], Awaitable[object]]) -> None:
        await anyio.lowlevel.checkpoint()
        with contextlib.suppress(sqlite3.Error):
            await call()

    async with anyio.create_task_group() as group:
        group.start_soon(partial(store.reserve, D("0.9"), limits, now=NOW, ttl_s=60))
        group.start_soon(after_a_turn, partial(store.commit, first.id, _row("first", "0.0005")))
        group.start_soon(after_a_turn, partial(store.commit, None, unstorable))
    seen = await observer.totals(now=NOW)
    await observer.reserve(D(1) - seen.spent_today - seen.reserved, limits, now=NOW, ttl_s=60)
    await store.commit(second.id, _row("second", "0.0005"))
    final = await observer.totals(now=NOW)
    assert final.spent_today + final.reserved <= D(1)


async def test_a_failed_commit_keeps_its_draw_held_until_the_draw_expires(
    store: SQLiteStore, observer: SQLiteStore
) -> None:
    """What a request whose commit failed cost is unknown: its worst case stays held, as its own
    reservation row would, and is given back once it expires."""
    reservation = await store.reserve(A, ROOMY, now=NOW, ttl_s=10)
    with pytest.raises(ValueError, match="finite"):
        await store.commit(reservation.id, _row("broken", "NaN"))
    await store.reserve(A, ROOMY, now=NOW + 5, ttl_s=10)  # a grant: the failed write left the row unknown
    assert (await store.totals(now=NOW + 5)).reserved == 2 * A
    assert (await observer.totals(now=NOW + 5)).reserved == A + A * LEASE_DRAWS  # the failed one, and room
    await store.reserve(A, ROOMY, now=NOW + 11, ttl_s=10)  # past its expiry: this grant leaves it out
    assert (await store.totals(now=NOW + 11)).reserved == 2 * A  # the ones drawn at NOW+5 and NOW+11
    assert (await observer.totals(now=NOW + 11)).reserved == A + A * LEASE_DRAWS


async def test_a_commit_retried_after_a_failure_ends_its_request_once(store: SQLiteStore, db_path: Path) -> None:
    """With 8 requests in flight a process reserves each new one on its own row. A commit that failed and
    was retried (as the reconciler does) must not count its request out twice: that would let a 9th
    concurrent request draw from the lease."""
    held = [await store.reserve(A, ROOMY, now=NOW, ttl_s=60) for _ in range(9)]
    assert [r.id.startswith("lease-") for r in held] == [True] * 8 + [False]  # the 9th: 8 already in flight
    with pytest.raises(ValueError, match="finite"):
        await store.commit(held[0].id, _row("retried", "NaN"))
    await store.commit(held[0].id, _row("retried", "0.00005"))  # the retry succeeds: 8 still in flight
    ninth = await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    assert not ninth.id.startswith("lease-")
    assert ninth.id in [rid for rid, _, _ in _holds(db_path)]


async def test_closing_with_a_request_in_flight_keeps_its_hold_and_gives_back_the_rest(db_path: Path) -> None:
    async with SQLiteStore(db_path) as store:
        await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    async with SQLiteStore(db_path, lease=False) as reopened:
        assert (await reopened.totals(now=NOW)).reserved == A


async def test_a_grant_for_a_shorter_lived_request_keeps_holding_a_longer_one_in_flight(
    store: SQLiteStore, observer: SQLiteStore
) -> None:
    """A request drawn to live 600 s, then a grant for one that lives 10 s: the lease row must not expire
    before the first request does, or other processes stop counting it and can spend its money."""
    limits = BudgetLimits(daily=D(1000))
    long = await store.reserve(A, limits, now=NOW, ttl_s=600)
    await store.reserve(A * (LEASE_DRAWS + 4), limits, now=NOW + 1, ttl_s=10)  # more than the room: a grant
    seen = await observer.totals(now=NOW + 30)  # the second has expired; the first is still in flight
    assert seen.reserved >= A
    await observer.reserve(D(1000) - seen.reserved, limits, now=NOW + 30, ttl_s=600)
    await store.commit(long.id, _row("long", str(A)))
    final = await observer.totals(now=NOW + 31)
    assert final.spent_today + final.reserved <= D(1000)


@pytest.mark.parametrize("lease", [False, True])
async def test_a_cost_over_its_worst_case_does_not_free_what_other_requests_in_flight_hold(
    db_path: Path, lease: bool
) -> None:
    """A request billed 16 times its worst case (a reconciled cost, a price that rose) spends beyond its
    hold; the 4 requests still in flight must stay held for other processes, with or without a lease."""
    limits = BudgetLimits(daily=D(1000))
    async with SQLiteStore(db_path, lease=lease) as store, SQLiteStore(db_path, lease=False) as other:
        first = await store.reserve(A, limits, now=NOW, ttl_s=60)
        in_flight = [await store.reserve(A, limits, now=NOW, ttl_s=60) for _ in range(4)]
        await store.commit(first.id, _row("first", str(16 * A)))
        seen = await other.totals(now=NOW)
        assert seen.reserved >= 4 * A
        await other.reserve(D(1000) - seen.spent_today - seen.reserved, limits, now=NOW, ttl_s=60)
        for index, hold in enumerate(in_flight):
            await store.commit(hold.id, _row(f"r{index}", str(A)))
        final = await other.totals(now=NOW)
    assert final.spent_today + final.reserved <= D(1000)
    assert final.spent_today == 20 * A


@pytest.mark.parametrize("lease", [False, True])
async def test_a_reservation_never_settled_stops_counting_once_it_expires(db_path: Path, lease: bool) -> None:
    """A caller that vanished between `reserve` and its commit: its hold expires, drawn from a lease or not,
    for this process and for the others."""
    async with SQLiteStore(db_path, lease=lease) as store, SQLiteStore(db_path, lease=False) as other:
        await store.reserve(D("0.01"), ROOMY, now=NOW, ttl_s=10)
        later = NOW + 3600
        await store.reserve(A, ROOMY, now=later, ttl_s=10)
        assert (await store.totals(now=later)).reserved == A
        assert (await other.totals(now=later)).reserved <= A * LEASE_DRAWS


async def test_a_late_commit_of_an_expired_draw_adds_its_cost_and_leaves_the_lease_alone(
    store: SQLiteStore, observer: SQLiteStore
) -> None:
    """As with a reservation row purged at its expiry: the cost joins the spend, and the room the lease
    holds for the requests drawn since is untouched."""
    late = await store.reserve(A, ROOMY, now=NOW, ttl_s=10)
    await store.reserve(A, ROOMY, now=NOW + 11, ttl_s=60)  # ends the expired draw
    held = (await observer.totals(now=NOW + 11)).reserved
    await store.commit(late.id, _row("late", str(A)))
    seen = await observer.totals(now=NOW + 11)
    assert (seen.spent_today, seen.reserved) == (A, held)


async def test_closing_while_a_request_is_being_granted_keeps_the_hold_it_drew(db_path: Path) -> None:
    """`aclose` reads what to keep once a grant under way has drawn for its request, not before."""
    store = SQLiteStore(db_path)
    await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    await store.reserve(A, ROOMY, now=NOW, ttl_s=60)  # two in flight: the grant's leader yields once
    granted: list[object] = []

    async def reserve_beyond_the_room() -> None:
        with contextlib.suppress(sqlite3.Error):
            granted.append(await store.reserve(D("0.01"), ROOMY, now=NOW, ttl_s=60))

    async with anyio.create_task_group() as group:
        group.start_soon(reserve_beyond_the_room)
        await anyio.lowlevel.checkpoint()
        await store.aclose()
    held = sum((amount for _, amount, _ in _holds(db_path)), D(0))
    assert granted
    assert held >= 2 * A + D("0.01")


async def test_a_draw_renewed_past_its_lease_rows_expiry_keeps_the_row_held_for_other_processes(
    store: SQLiteStore, observer: SQLiteStore, db_path: Path
) -> None:
    """Other processes count the row, not the draws: renewed to 150 s, the row (granted to 120 s) follows,
    and the draw stops counting everywhere once no renewal comes (its process died)."""
    hold = await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    for at in (NOW + 40, NOW + 90):
        assert await store.renew([hold.id], expires_at=at + 60, now=at) == {hold.id}
    [(_, _, row_expiry)] = _holds(db_path)
    assert row_expiry == NOW + 150
    assert (await observer.totals(now=NOW + 149)).reserved >= A
    assert (await store.totals(now=NOW + 149)).reserved == A
    assert (await observer.totals(now=NOW + 150)).reserved == (await store.totals(now=NOW + 150)).reserved == 0


async def test_renewing_draws_the_lease_row_outlives_writes_nothing(store: SQLiteStore, db_path: Path) -> None:
    """A draw renewed within its row's lifetime is renewed in memory: the file does not change."""
    hold = await store.reserve(A, ROOMY, now=NOW, ttl_s=60)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        before = _data_version(conn)
        assert await store.renew([hold.id], expires_at=NOW + 90, now=NOW + 30) == {hold.id}
        assert _data_version(conn) == before
    assert (await store.totals(now=NOW + 89)).reserved == A
