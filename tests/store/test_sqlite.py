"""SQLiteStore: budgets reserved atomically across tasks and processes, an exact durable ledger."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from modelyard.errors import BudgetExceededError, ConfigurationError
from modelyard.store import BudgetLimits, LedgerRow, SpendTotals, SQLiteStore
from tests.store import _workers

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def _at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


NOW = _at(2026, 8, 19, 12)
LIMITS = BudgetLimits(daily=Decimal("0.05"), monthly=Decimal("1.00"), per_request=Decimal("0.02"))
D = Decimal


def _row(row_id: str, cost: str | None, ts: float = NOW) -> LedgerRow:
    return LedgerRow(id=row_id, ts=ts, requested_model="auto", cost=None if cost is None else D(cost))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "modelyard.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(db_path) as opened:
        yield opened


@pytest.fixture
def spawnable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let 'spawn' children import `tests.store._workers` (pytest imports tests without sys.path)."""
    monkeypatch.syspath_prepend(str(ROOT))
    yield


def _receive(results: Queue[object], children: Sequence[BaseProcess], count: int) -> list[object]:
    """`count` messages from the children, failing fast if one of them dies first."""
    received: list[object] = []
    for _ in range(count * 240):  # at most 60 s
        try:
            received.append(results.get(timeout=0.25))
        except queue.Empty:
            dead = [child.exitcode for child in children if child.exitcode not in (None, 0)]
            assert not dead, f"a child process failed with exit code {dead}"
        if len(received) == count:
            return received
    raise AssertionError(f"only {len(received)} of {count} child processes answered")


async def _refusal(store: SQLiteStore, amount: str, limits: BudgetLimits = LIMITS) -> BudgetExceededError:
    with pytest.raises(BudgetExceededError) as refused:
        await store.reserve(D(amount), limits, now=NOW, ttl_s=60)
    return refused.value


# --- reserve, commit, release -------------------------------------------------------------------


async def test_a_reservation_within_every_limit_is_granted_and_held(store: SQLiteStore) -> None:
    """A reservation that fits is returned with a fresh id and its expiry, and counts as reserved."""
    reservation = await store.reserve(D("0.02"), LIMITS, now=NOW, ttl_s=60)
    assert (reservation.amount, reservation.expires_at, len(reservation.id)) == (D("0.02"), NOW + 60, 32)
    assert await store.totals(now=NOW) == SpendTotals(spent_today=D(0), spent_month=D(0), reserved=D("0.02"))


async def test_an_amount_over_the_per_request_cap_is_refused_as_per_request(store: SQLiteStore) -> None:
    """Over the per-request cap: the refusal names per_request, the cap as remaining, the amount."""
    refused = await _refusal(store, "0.021")
    assert (refused.budget, refused.remaining, refused.estimate) == ("per_request", D("0.02"), D("0.021"))


async def test_the_daily_budget_counts_spend_and_live_reservations(store: SQLiteStore) -> None:
    """Spent 0.03 and 0.01 held leave 0.01 of a 0.05 day, so 0.02 is refused as daily."""
    await store.commit(None, _row("spent", "0.03"))
    await store.reserve(D("0.01"), LIMITS, now=NOW, ttl_s=60)
    refused = await _refusal(store, "0.02")
    assert (refused.budget, refused.remaining, refused.estimate) == ("daily", D("0.01"), D("0.02"))
    assert "daily budget has $0.01 left" in str(refused)


async def test_a_refusal_writes_its_amounts_in_plain_digits(store: SQLiteStore) -> None:
    """After a tiny hold is released, the refusal says "$0" held, not "$0E-11", and the limit without zeros."""
    await store.commit(None, _row("spent", "0.030"))
    await store.release((await store.reserve(D("0.00000000001"), LIMITS, now=NOW, ttl_s=60)).id)
    refused = await _refusal(store, "0.021", BudgetLimits(daily=D("0.0500")))
    assert "(limit $0.05, spent $0.03, held by requests in flight $0)" in str(refused)


async def test_the_monthly_budget_counts_earlier_days_of_the_month(store: SQLiteStore) -> None:
    """Spend from earlier days of the month fills the monthly budget while today is untouched."""
    await store.commit(None, _row("earlier", "0.99", ts=_at(2026, 8, 1, 9)))
    refused = await _refusal(store, "0.02")
    assert (refused.budget, refused.remaining, refused.estimate) == ("monthly", D("0.01"), D("0.02"))


async def test_limits_are_checked_per_request_then_daily_then_monthly(store: SQLiteStore) -> None:
    """When several limits refuse, the first of per_request, daily, monthly is named."""
    await store.commit(None, _row("big", "5", ts=NOW))
    tight = BudgetLimits(daily=D("0.01"), monthly=D("0.01"), per_request=D("0.01"))
    assert (await _refusal(store, "0.02", tight)).budget == "per_request"
    assert (await _refusal(store, "0.01", tight)).budget == "daily"
    assert (await _refusal(store, "0.01", BudgetLimits(monthly=D("0.01")))).budget == "monthly"


async def test_remaining_is_never_below_zero(store: SQLiteStore) -> None:
    """An overspent day (actual cost above the estimate) reports 0 remaining, not a negative."""
    await store.commit(None, _row("overspent", "0.07"))
    assert (await _refusal(store, "0.01")).remaining == D(0)


async def test_no_limits_still_holds_the_reservation(store: SQLiteStore) -> None:
    """Without limits every amount is granted, and still held until commit or release."""
    await store.reserve(D("123.45"), BudgetLimits(), now=NOW, ttl_s=60)
    assert (await store.totals(now=NOW)).reserved == D("123.45")


async def test_expired_reservations_do_not_count_and_are_freed(store: SQLiteStore) -> None:
    """A hold stops counting at its expiry, and the next reserve deletes it."""
    await store.reserve(D("0.02"), LIMITS, now=NOW, ttl_s=60)
    await store.reserve(D("0.02"), LIMITS, now=NOW, ttl_s=60)
    assert (await store.totals(now=NOW + 59.9)).reserved == D("0.04")
    assert (await store.totals(now=NOW + 60)).reserved == D(0)
    await store.reserve(D("0.02"), LIMITS, now=NOW + 60, ttl_s=60)
    await store.reserve(D("0.02"), LIMITS, now=NOW + 60, ttl_s=60)
    assert (await store.totals(now=NOW)).reserved == D("0.04"), "the expired holds were deleted"


async def test_commit_turns_a_reservation_into_spend(store: SQLiteStore) -> None:
    """Committing drops the hold and counts the row's actual cost as spend."""
    reservation = await store.reserve(D("0.02"), LIMITS, now=NOW, ttl_s=60)
    await store.commit(reservation.id, _row("answered", "0.0125"))
    totals = await store.totals(now=NOW)
    assert totals == SpendTotals(spent_today=D("0.0125"), spent_month=D("0.0125"), reserved=D(0))
    assert [row.id for row in await store.rows()] == ["answered"]


async def test_release_frees_a_reservation_without_spend(store: SQLiteStore) -> None:
    """Releasing drops the hold and records nothing."""
    reservation = await store.reserve(D("0.02"), LIMITS, now=NOW, ttl_s=60)
    await store.release(reservation.id)
    assert await store.totals(now=NOW) == SpendTotals(spent_today=D(0), spent_month=D(0), reserved=D(0))
    assert await store.rows() == []


async def test_release_and_commit_of_a_vanished_reservation_are_harmless(store: SQLiteStore) -> None:
    """Releasing twice, or committing after the hold expired and was purged, raises nothing."""
    released = await store.reserve(D("0.01"), LIMITS, now=NOW, ttl_s=60)
    await store.release(released.id)
    await store.release(released.id)
    expired = await store.reserve(D("0.01"), LIMITS, now=NOW, ttl_s=60)
    await store.reserve(D("0.01"), LIMITS, now=NOW + 61, ttl_s=60)  # purges `expired`
    await store.commit(expired.id, _row("late", "0.01"))
    await store.commit("never-existed", _row("unknown", "0.01"))
    assert (await store.totals(now=NOW + 61)).spent_today == D("0.02")


async def test_committing_the_same_row_twice_counts_it_once(store: SQLiteStore) -> None:
    """A retried commit of the same ledger row id neither duplicates the row nor its spend."""
    await store.commit(None, _row("once", "0.01"))
    await store.commit(None, _row("once", "0.01"))
    assert (await store.totals(now=NOW)).spent_today == D("0.01")
    assert len(await store.rows()) == 1


@pytest.mark.parametrize(("amount", "ttl_s"), [("-0.01", 60), ("NaN", 60), ("Infinity", 60), ("0.01", 0)])
async def test_nonsense_amounts_and_ttls_are_rejected(store: SQLiteStore, amount: str, ttl_s: float) -> None:
    """Negative or non-finite amounts and non-positive TTLs are programming errors."""
    with pytest.raises(ValueError):
        await store.reserve(D(amount), LIMITS, now=NOW, ttl_s=ttl_s)


async def test_a_non_finite_cost_is_rejected_before_anything_is_written(store: SQLiteStore) -> None:
    """A NaN cost raises and leaves the reservation and the ledger as they were."""
    reservation = await store.reserve(D("0.01"), LIMITS, now=NOW, ttl_s=60)
    with pytest.raises(ValueError):
        await store.commit(reservation.id, _row("nan", "NaN"))
    assert (await store.totals(now=NOW)).reserved == D("0.01")
    assert await store.rows() == []


# --- concurrency --------------------------------------------------------------------------------


async def test_200_concurrent_reservations_of_001_against_a_005_day_grant_exactly_5(store: SQLiteStore) -> None:
    """200 tasks race for 0.01 each against a 0.05 daily budget: exactly 5 win, 195 are refused."""
    outcomes: list[str] = []

    async def one() -> None:
        try:
            await store.reserve(D("0.01"), BudgetLimits(daily=D("0.05")), now=NOW, ttl_s=60)
        except BudgetExceededError as refused:
            outcomes.append(refused.budget)
        else:
            outcomes.append("granted")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for _ in range(200):
                group.start_soon(one)
    assert (outcomes.count("granted"), outcomes.count("daily")) == (5, 195)
    assert (await store.totals(now=NOW)).reserved == D("0.05")


def run_racers(target: Callable[..., None], args: tuple[object, ...], processes: int) -> list[str]:
    """Start `processes` spawned children of `target(*args, start_barrier, results_queue)`, which all
    start together at the barrier, and return what each put on the queue, as text."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(processes), context.Queue()
    children = [context.Process(target=target, args=(*args, start, results)) for _ in range(processes)]
    for child in children:
        child.start()
    received = [str(result) for result in _receive(results, children, processes)]
    for child in children:
        child.join(timeout=10)
    assert [child.exitcode for child in children] == [0] * processes
    results.close()
    return received


def _run_reservers(db_path: Path, processes: int, tries: int) -> list[int]:
    args = (db_path, tries, "0.01", "0.05", NOW)
    return [int(count) for count in run_racers(_workers.reserve_many, args, processes)]


@pytest.mark.usefixtures("spawnable")
async def test_reservations_from_4_processes_never_exceed_the_daily_budget(db_path: Path) -> None:
    """4 OS processes on one file try 50 reservations of 0.01 each against 0.05: 5 win in total."""
    counts = await anyio.to_thread.run_sync(_run_reservers, db_path, 4, 50)
    assert sum(counts) == 5
    async with SQLiteStore(db_path) as store:
        assert (await store.totals(now=NOW)).reserved == D("0.05")


def _commit_then_kill(db_path: Path, costs: list[str], holds: list[str]) -> None:
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    child = context.Process(target=_workers.commit_then_hold, args=(db_path, costs, holds, NOW, ready))
    child.start()
    assert _receive(ready, [child], 1) == ["ready"]
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL
    ready.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.usefixtures("spawnable")
async def test_a_killed_process_keeps_its_committed_rows_and_its_holds_expire(db_path: Path) -> None:
    """SIGKILL after commits loses no ledger row; the dead process's holds stop counting at expiry."""
    costs, holds = ["0.01", "0.00001255", "0.002"], ["0.1", "0.2"]
    await anyio.to_thread.run_sync(_commit_then_kill, db_path, costs, holds)
    async with SQLiteStore(db_path) as store:
        assert [(row.id, row.cost) for row in await store.rows()] == [
            ("child-0", D("0.01")),
            ("child-1", D("0.00001255")),
            ("child-2", D("0.002")),
        ]
        assert await store.totals(now=NOW) == SpendTotals(
            spent_today=D("0.01201255"), spent_month=D("0.01201255"), reserved=D("0.3")
        )
        after_expiry = NOW + _workers.TTL_S
        assert (await store.totals(now=after_expiry)).reserved == D(0)
        await store.reserve(D("0.98798745"), BudgetLimits(daily=D(1)), now=after_expiry, ttl_s=60)


# --- money, days and months ---------------------------------------------------------------------


async def test_costs_sum_exactly_as_decimals(store: SQLiteStore) -> None:
    """Ten thousand 0.00001255 costs, 0.1 + 0.2 and picodollar costs add up to the exact Decimal."""
    costs = ["0.00001255"] * 1000 + ["0.1", "0.2"] + ["1E-12"] * 7 + ["0.000000000003"]
    for number, cost in enumerate(costs):
        await store.commit(None, _row(f"r{number}", cost))
    expected = D("0.01255") + D("0.3") + D("0.00000000001")
    totals = await store.totals(now=NOW)
    assert (totals.spent_today, totals.spent_month) == (expected, expected)
    assert [row.cost for row in await store.rows(limit=2)] == [D("1E-12"), D("0.000000000003")]


async def test_an_unknown_cost_stays_none_and_counts_as_no_spend(store: SQLiteStore) -> None:
    """A row with cost None is kept as None and adds nothing to the totals."""
    await store.commit(None, _row("unknown", None))
    await store.commit(None, _row("known", "0.5"))
    assert [row.cost for row in await store.rows()] == [None, D("0.5")]
    assert (await store.totals(now=NOW)).spent_today == D("0.5")


async def test_rows_at_235959_and_000000_utc_count_on_their_own_days(store: SQLiteStore) -> None:
    """The last second of a day and the first second of the next land on different days."""
    await store.commit(None, _row("late", "0.1", ts=_at(2026, 8, 18, 23, 59, 59)))
    await store.commit(None, _row("early", "0.2", ts=_at(2026, 8, 19)))
    on_18th = await store.totals(now=_at(2026, 8, 18, 12))
    on_19th = await store.totals(now=_at(2026, 8, 19, 23, 59, 59))
    assert (on_18th.spent_today, on_18th.spent_month) == (D("0.1"), D("0.3"))
    assert (on_19th.spent_today, on_19th.spent_month) == (D("0.2"), D("0.3"))


@pytest.mark.parametrize(
    ("last", "first"),
    [((2026, 8, 31), (2026, 9, 1)), ((2026, 12, 31), (2027, 1, 1)), ((2028, 2, 29), (2028, 3, 1))],
)
async def test_spend_rolls_over_with_the_utc_month(
    store: SQLiteStore, last: tuple[int, int, int], first: tuple[int, int, int]
) -> None:
    """A new UTC month (and year) starts with nothing spent; the old month keeps its spend."""
    await store.commit(None, _row("old", "0.7", ts=_at(*last, 23, 59, 59)))
    await store.commit(None, _row("new", "0.2", ts=_at(*first)))
    assert (await store.totals(now=_at(*last, 12))).spent_month == D("0.7")
    assert (await store.totals(now=_at(*first, 12))).spent_month == D("0.2")
    monthly = BudgetLimits(monthly=D("1"))
    await store.reserve(D("0.8"), monthly, now=_at(*first, 12), ttl_s=60)


# --- rows, values, lifecycle --------------------------------------------------------------------


async def test_every_ledger_field_round_trips(store: SQLiteStore) -> None:
    """A row comes back equal to what was committed, Decimals and detail included."""
    row = LedgerRow(
        id="full", ts=NOW + 0.25, requested_model="auto", model="openai/gpt-4o-mini", provider="OpenAI",
        prompt_tokens=12, completion_tokens=34, cached_tokens=5, reasoning_tokens=6, cost=D("0.00001255"),
        cost_source="upstream", latency_ms=812.5, attempts=2, cache_hit=True, saved=D("0.000020"),
        status="error", error="boom", streamed=True, detail={"selection": "cheapest", "tries": [1, 2]},
    )  # fmt: skip
    await store.commit(None, row)
    assert await store.rows() == [row]
    assert str((await store.rows())[0].saved) == "0.000020"


async def test_rows_filter_by_since_and_give_the_newest_limit_oldest_first(store: SQLiteStore) -> None:
    """`since` drops older rows; `limit` keeps the newest rows, still oldest first."""
    for second in range(5):
        await store.commit(None, _row(f"s{second}", "0.01", ts=NOW + second))
    assert [row.id for row in await store.rows(since=NOW + 2)] == ["s2", "s3", "s4"]
    assert [row.id for row in await store.rows(limit=2)] == ["s3", "s4"]
    assert [row.id for row in await store.rows(since=NOW + 1, limit=10)] == ["s1", "s2", "s3", "s4"]
    assert await store.rows(limit=0) == []


async def test_totals_and_rows_survive_reopening_the_file(db_path: Path) -> None:
    """Closing and reopening the file keeps the spend, the live holds, the rows and the values."""
    async with SQLiteStore(db_path) as first:
        await first.commit(None, _row("kept", "0.0125"))
        await first.reserve(D("0.01"), LIMITS, now=NOW, ttl_s=60)
        await first.set_value("catalog", "{}")
        before = await first.totals(now=NOW)
    async with SQLiteStore(db_path) as reopened:
        assert await reopened.totals(now=NOW) == before
        assert [row.id for row in await reopened.rows()] == ["kept"]
        assert await reopened.get_value("catalog") == "{}"


async def test_values_round_trip_and_are_replaced(store: SQLiteStore) -> None:
    """set_value stores, replaces, and get_value of an unknown key is None."""
    assert await store.get_value("budget") is None
    await store.set_value("budget", '{"daily": "1"}')
    await store.set_value("budget", '{"daily": "0.5"}')
    assert await store.get_value("budget") == '{"daily": "0.5"}'


async def test_healthy_while_open_and_not_after_close(store: SQLiteStore) -> None:
    """healthy() is True on an open store and False once closed; closing twice is harmless."""
    assert await store.healthy()
    await store.aclose()
    await store.aclose()
    assert not await store.healthy()


async def test_the_file_and_its_folders_are_created_in_wal_mode(db_path: Path) -> None:
    """Opening creates missing parent folders and puts the database in WAL mode."""
    async with SQLiteStore(db_path):
        assert await anyio.Path(db_path).exists()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


async def test_an_in_memory_store_works(tmp_path: Path) -> None:
    """':memory:' opens a private database with the same behaviour."""
    async with SQLiteStore(":memory:") as store:
        await store.commit(None, _row("m", "0.5"))
        assert (await store.totals(now=NOW)).spent_today == D("0.5")


def test_a_database_of_a_newer_schema_is_refused(db_path: Path) -> None:
    """A file written by a newer modelyard raises ConfigurationError instead of being misread."""
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ConfigurationError, match="newer"):
        SQLiteStore(db_path)


def test_a_path_that_cannot_be_created_is_a_configuration_error(tmp_path: Path) -> None:
    """A database under a regular file cannot be created and says where."""
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match="Cannot open the SQLite store"):
        SQLiteStore(tmp_path / "file" / "x.db")


async def test_when_both_periods_refuse_the_refusal_names_the_one_waiting_cannot_lift(store: SQLiteStore) -> None:
    """The day is short only by what requests in flight hold; the month is short by what is spent. Naming the
    day would advise to retry when those requests finish, which the month would refuse again."""
    limits = BudgetLimits(daily=D("10"), monthly=D("11.2"))
    await store.commit(None, _row("earlier", "2", ts=_at(2026, 8, 3, 12)))
    await store.commit(None, _row("today", "7"))
    await store.reserve(D("2"), limits, now=NOW, ttl_s=600)  # in flight: day 7 + 2 held, month 9 + 2 held
    with pytest.raises(BudgetExceededError) as refused:
        await store.reserve(D("2.5"), limits, now=NOW, ttl_s=600)
    assert refused.value.budget == "monthly", str(refused.value)
    assert "retry when they finish" not in str(refused.value)
