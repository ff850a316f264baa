"""Group commit in the SQLite store: batched writes stay exact, never block the event loop on another
process's lock, see other connections' writes, and drop a cancelled caller's write not yet taken."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from modelyard.errors import BudgetExceededError
from modelyard.store import MEMORY, BudgetLimits, LedgerRow, SpendTotals, SQLiteStore
from modelyard.store.group_commit import GroupCommit
from tests.store._locks import locked_for

pytestmark = pytest.mark.anyio
D = Decimal
NOW = datetime(2026, 8, 19, 12, tzinfo=UTC).timestamp()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(tmp_path / "ledger.db") as opened:
        yield opened


def _row(row_id: str, cost: str, ts: float = NOW) -> LedgerRow:
    return LedgerRow(id=row_id, ts=ts, requested_model="auto", cost=D(cost))


async def test_300_concurrent_reserve_and_commit_pairs_keep_the_totals_exact(store: SQLiteStore) -> None:
    """Holds and spend batched into shared transactions add up exactly, and the budget is never passed."""
    limits = BudgetLimits(daily=D("0.50"))
    granted: list[str] = []

    async def one(index: int) -> None:
        try:
            hold = await store.reserve(D("0.01"), limits, now=NOW, ttl_s=60)
        except BudgetExceededError:
            return
        await anyio.lowlevel.checkpoint()
        await store.commit(hold.id, _row(f"r{index}", "0.0035"))
        granted.append(hold.id)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            for index in range(300):
                group.start_soon(one, index)
    spent = D("0.0035") * len(granted)
    assert await store.totals(now=NOW) == SpendTotals(spent_today=spent, spent_month=spent, reserved=D(0))
    assert spent <= limits.daily and len(granted) >= 50  # 0.50 / 0.01 holds fit at once, and spend is lower
    async with SQLiteStore(store.path) as fresh:  # what a second reader sees: the same
        assert await fresh.totals(now=NOW) == SpendTotals(spent_today=spent, spent_month=spent, reserved=D(0))


async def test_spend_committed_by_another_connection_counts_at_the_next_reservation(store: SQLiteStore) -> None:
    """The running totals are dropped when another connection (another process) writes in between."""
    limits = BudgetLimits(daily=D("1"))
    await store.reserve(D("0.1"), limits, now=NOW, ttl_s=60)
    async with SQLiteStore(store.path) as other:
        hold = await other.reserve(D("0.5"), limits, now=NOW, ttl_s=60)
        await other.commit(hold.id, _row("elsewhere", "0.85"))
    with pytest.raises(BudgetExceededError, match="daily"):
        await store.reserve(D("0.1"), limits, now=NOW, ttl_s=60)
    await store.reserve(D("0.05"), limits, now=NOW, ttl_s=60)
    assert await store.totals(now=NOW) == SpendTotals(spent_today=D("0.85"), spent_month=D("0.85"), reserved=D("0.15"))


async def test_holds_that_expire_and_a_new_utc_day_are_seen_by_later_reservations(store: SQLiteStore) -> None:
    """A hold past its expiry stops counting, and a new day starts from zero, without another writer."""
    limits = BudgetLimits(daily=D("0.3"))
    await store.reserve(D("0.2"), limits, now=NOW, ttl_s=10)
    with pytest.raises(BudgetExceededError):
        await store.reserve(D("0.2"), limits, now=NOW + 5, ttl_s=10)
    await store.reserve(D("0.2"), limits, now=NOW + 10, ttl_s=1000)  # the first hold expired at NOW + 10
    hold = await store.reserve(D("0.1"), limits, now=NOW + 11, ttl_s=1000)
    await store.commit(hold.id, _row("late", "0.1", ts=NOW + 11))
    midnight = datetime(2026, 8, 20, tzinfo=UTC).timestamp()
    await store.reserve(D("0.3"), limits, now=midnight + 2000, ttl_s=10)  # new day: only the holds still count
    totals = await store.totals(now=midnight + 2000)
    assert (totals.spent_today, totals.spent_month, totals.reserved) == (D(0), D("0.1"), D("0.3"))


async def test_a_write_lock_held_by_another_process_never_blocks_the_event_loop(store: SQLiteStore) -> None:
    """While another connection holds SQLite's write lock, a reservation waits in a worker thread, and
    the event loop keeps running; the reservation goes through once the lock is released."""
    assert isinstance(store.path, Path)
    with anyio.fail_after(10):
        async with locked_for(store.path) as lock:
            began = time.monotonic()
            hold = await store.reserve(D("0.01"), BudgetLimits(daily=D(1)), now=NOW, ttl_s=60)
            waited = time.monotonic() - began
    ticks = lock.ticks
    assert waited >= 0.25 and ticks >= 10  # it waited for the lock, and the loop ticked meanwhile
    assert (await store.totals(now=NOW)).reserved == hold.amount


async def test_a_writer_cancelled_after_its_batch_began_still_gets_its_reservation(store: SQLiteStore) -> None:
    """A reservation made for a caller cancelled meanwhile is handed back (so it can be released), as
    a thread hop would; the cancellation then hits the caller's next checkpoint."""
    limits = BudgetLimits(daily=D(1))
    await store.reserve(D("0.1"), limits, now=NOW, ttl_s=60)
    await store.reserve(D("0.1"), limits, now=NOW, ttl_s=60)  # two holds in flight: leaders batch
    got: list[object] = []
    scopes: list[anyio.CancelScope] = []

    async def reserve() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            got.append(await store.reserve(D("0.2"), limits, now=NOW, ttl_s=60))
            await anyio.sleep(1)  # the cancellation lands here
            got.append("not cancelled")

    async with anyio.create_task_group() as group:
        group.start_soon(reserve)  # leads: yields once so that the next one joins its batch
        group.start_soon(reserve)  # follows: cancelled while waiting for the batch
        await anyio.lowlevel.checkpoint()
        scopes[1].cancel()
        await anyio.sleep(0.05)
        scopes[0].cancel()
    assert len(got) == 2 and "not cancelled" not in got
    assert (await store.totals(now=NOW)).reserved == D("0.6")


async def test_a_lone_cost_free_row_is_committed_and_waits_in_a_thread_for_another_process_lock(
    store: SQLiteStore,
) -> None:
    """A row that moves no money (a cache hit's) is committed before `commit` returns, on its own
    (one statement) or, while another process holds the write lock, from the worker thread once it
    is released; the spend totals do not move either way."""
    hit = LedgerRow(id="hit-1", ts=NOW, requested_model="auto", cost=D(0), cache_hit=True, saved=D("0.002"))
    await store.commit(None, hit)
    reader = sqlite3.connect(store.path, isolation_level=None)
    try:
        assert reader.execute("SELECT id, cost, saved, cache_hit FROM ledger").fetchall() == [
            ("hit-1", "0", "0.002", 1)
        ]
        reader.execute("BEGIN IMMEDIATE")

        async def release_later() -> None:
            await anyio.sleep(0.2)
            reader.execute("COMMIT")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(release_later)
                began = time.monotonic()
                await store.commit(None, LedgerRow(id="hit-2", ts=NOW, requested_model="auto", cost=D(0)))
                waited = time.monotonic() - began
        assert waited >= 0.15
        assert [r for (r,) in reader.execute("SELECT id FROM ledger ORDER BY rowid")] == ["hit-1", "hit-2"]
    finally:
        reader.close()
    await store.commit(None, hit)  # the same id again adds nothing
    assert [r.id for r in await store.rows()] == ["hit-1", "hit-2"]
    assert await store.totals(now=NOW) == SpendTotals(spent_today=D(0), spent_month=D(0), reserved=D(0))


async def test_cost_free_and_unknown_cost_rows_written_among_paid_ones_are_all_kept_and_add_no_spend(
    store: SQLiteStore,
) -> None:
    """Cache hits (cost 0) and failures (cost unknown) committed while paid commits lead or queue take
    the shared transactions; alone they take the one-statement path. Every row lands; only paid ones count."""
    limits = BudgetLimits(daily=D(10))

    async def paid(index: int) -> None:
        hold = await store.reserve(D("0.01"), limits, now=NOW, ttl_s=60)
        await store.commit(hold.id, _row(f"paid-{index}", "0.002"))

    async def free(index: int) -> None:
        cost = D(0) if index % 2 else None
        await store.commit(None, LedgerRow(id=f"free-{index}", ts=NOW, requested_model="auto", cost=cost))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            for index in range(60):
                group.start_soon(paid, index)
                group.start_soon(free, index)
        await free(60)  # alone: nothing leads or queues
    rows = {row.id: row.cost for row in await store.rows()}
    assert len(rows) == 121
    assert rows["free-60"] is None and rows["free-59"] == 0 and rows["paid-0"] == D("0.002")
    spent = D("0.002") * 60
    assert await store.totals(now=NOW) == SpendTotals(spent_today=spent, spent_month=spent, reserved=D(0))


async def test_in_memory_a_write_that_arrives_while_the_leader_waits_for_the_connection_is_still_run() -> None:
    """An in-memory store shares one connection with its reads, so a leader may wait for it; writes
    queued meanwhile go in its batch instead of waiting for a leader that never comes."""
    async with SQLiteStore(MEMORY) as store:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(partial(store.totals, now=NOW))  # holds the connection in a worker thread
                group.start_soon(store.commit, None, _row("leader", "0.001"))
                group.start_soon(store.commit, None, _row("follower", "0.002"))
        assert sorted(row.id for row in await store.rows()) == ["follower", "leader"]
        assert (await store.totals(now=NOW)).spent_today == D("0.003")


def _bare_commit(in_thread: Any, *, checkpoint_every: int = 0) -> tuple[sqlite3.Connection, GroupCommit]:
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (x TEXT)")
    writes = GroupCommit(
        inline=conn, waiting=conn, in_thread=in_thread, lock=None, checkpoint_every=checkpoint_every, busy=lambda: True
    )
    return conn, writes


def _insert(value: str) -> Any:
    return lambda conn, memo: conn.execute("INSERT INTO t VALUES (?)", (value,)) and value


async def test_when_the_worker_thread_cannot_run_a_batch_every_writer_gets_the_error_and_none_hangs() -> None:
    """The batch failed inline (a statement raised) and the thread that would redo it fails too."""

    async def broken_thread(call: Any) -> Any:
        raise RuntimeError("no worker thread")

    def failing(conn: sqlite3.Connection, memo: dict[str, Any]) -> None:
        raise sqlite3.OperationalError("statement failed")

    _, writes = _bare_commit(broken_thread)
    errors: list[str] = []

    async def submit(work: Any) -> None:
        try:
            await writes.submit(work)
        except RuntimeError as exc:
            errors.append(str(exc))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(submit, failing)
            group.start_soon(submit, _insert("follower"))
    assert errors == ["no worker thread", "no worker thread"]


async def test_a_leader_cancelled_during_the_checkpoint_after_its_commit_still_gets_its_outcome() -> None:
    """The write committed, so its caller sees the value (a reservation it must release, say); the
    cancellation arrives at its next checkpoint instead."""
    began = anyio.Event()

    async def slow_thread(call: Any) -> Any:
        began.set()
        await anyio.sleep(0.2)
        return call()

    conn, writes = _bare_commit(slow_thread, checkpoint_every=1)
    got: list[str] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:

            async def leader() -> None:
                with anyio.CancelScope() as scope:
                    group.start_soon(lambda: _cancel_when(began, scope))
                    got.append(await writes.submit(_insert("leader")))
                    await anyio.lowlevel.checkpoint()
                    got.append("not cancelled")

            group.start_soon(leader)
    assert got == ["leader"]
    assert conn.execute("SELECT x FROM t").fetchall() == [("leader",)]


async def _cancel_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def test_a_commit_cancelled_while_it_waits_for_the_batch_is_still_written() -> None:
    """Money spent must reach the ledger: a commit queued behind a leader is kept when its caller is
    cancelled, and the cancellation comes after it. (A reservation queued the same way is dropped.)"""
    async with SQLiteStore(MEMORY) as store:
        got: list[str] = []
        cancelled: list[str] = []

        async def commit(row_id: str, scope: anyio.CancelScope) -> None:
            with scope:
                await store.commit(None, _row(row_id, "0.05"))
                got.append(row_id)
                await anyio.lowlevel.checkpoint()
            if scope.cancelled_caught:
                cancelled.append(row_id)

        follower = anyio.CancelScope()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(partial(store.totals, now=NOW))  # holds the connection in a worker thread
                group.start_soon(commit, "leader", anyio.CancelScope())  # waits for the connection
                group.start_soon(commit, "follower", follower)  # queued behind it
                await anyio.lowlevel.checkpoint()
                follower.cancel()
        assert sorted(got) == ["follower", "leader"] and cancelled == ["follower"]
        assert sorted(row.id for row in await store.rows()) == ["follower", "leader"]
        assert (await store.totals(now=NOW)).spent_today == D("0.1")
