"""A billed answer's ledger row is never lost: when the store cannot take it (another process holds the SQLite
write lock past the busy timeout, Redis is down), `settle` spools it and the caller gets the answer; the row is
replayed into the store exactly once, and before any new reservation is granted."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from modelyard.errors import BudgetExceededError, StoreUnavailableError
from modelyard.openrouter import OpenRouterClient
from modelyard.routing.budget import BudgetManager
from modelyard.routing.request import RouteRequest
from modelyard.routing.router import Router, RouterClock
from modelyard.sandbox import Sandbox
from modelyard.settings import Settings
from modelyard.store.base import MEMORY, BudgetLimits, LedgerRow, new_id
from modelyard.store.spool import Spool
from modelyard.store.sqlite import SQLiteStore
from tests.routing.conftest import KEY, FakeSleep
from tests.store._flaky import FlakyStore

pytestmark = pytest.mark.anyio
NOW = 1_787_000_000.0
D = Decimal
MODEL = "openai/gpt-4o-mini"


class Clock:
    """Wall-clock seconds a test moves forward by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def _row(cost: str | None = "0.8", generation: str = "gen-paid-1") -> LedgerRow:
    return LedgerRow(
        id=new_id(),
        ts=NOW,
        requested_model="auto",
        model=MODEL,
        cost=None if cost is None else D(cost),
        cost_source="upstream",
        detail={"generation_id": generation},
    )


@pytest.fixture
async def memory() -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(MEMORY, lease=False) as store:
        yield store


def _budgets(store: FlakyStore, spool: Spool, clock: Clock, daily: str = "1") -> BudgetManager:
    return BudgetManager(store, BudgetLimits(daily=D(daily)), clock=clock, reservation_ttl_s=60, spool=spool)


async def test_a_commit_the_store_refuses_is_spooled_and_settle_returns(memory: SQLiteStore, tmp_path: Path) -> None:
    """The answer is paid for: settle keeps its row in the spool instead of raising the store's error."""
    path = tmp_path / "ledger.db.pending.jsonl"
    budgets = _budgets(FlakyStore(memory, failures=1), Spool(path), Clock())
    hold = await budgets.reserve(D("0.9"))
    row = _row()
    await budgets.settle(hold, row)
    assert await memory.rows() == []
    assert await budgets.spooled_rows() == 1 and row.id in path.read_text()


async def test_the_warning_names_the_generation_model_cost_and_spool_never_the_key(
    memory: SQLiteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "ledger.db.pending.jsonl")
    budgets = _budgets(FlakyStore(memory, failures=1), spool, Clock())
    with caplog.at_level(logging.WARNING):
        await budgets.settle(None, _row("0.000125", generation="gen-xyz"))
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = record.getMessage()
    assert all(part in text for part in ("gen-xyz", MODEL, "$0.000125", str(spool.path), "database is locked"))
    assert KEY not in text


async def test_a_spooled_row_reaches_the_ledger_before_the_next_reservation(
    memory: SQLiteStore, tmp_path: Path
) -> None:
    store = FlakyStore(memory, failures=1)
    budgets = _budgets(store, Spool(tmp_path / "ledger.db.pending.jsonl"), Clock())
    row = _row()
    await budgets.settle(await budgets.reserve(D("0.9")), row)
    await budgets.reserve(D("0.1"))
    assert store.calls == ["reserve", "commit!", "commit", "reserve"]
    assert [r.id for r in await memory.rows()] == [row.id]


async def test_a_spooled_cost_counts_against_the_daily_budget_before_a_new_reservation_is_granted(
    memory: SQLiteStore, tmp_path: Path
) -> None:
    """Redis's hold expires during the outage: without the replay the budget forgets the $0.80 and grants $0.50
    of a $1 day."""
    clock = Clock()
    budgets = _budgets(FlakyStore(memory, failures=1), Spool(tmp_path / "ledger.db.pending.jsonl"), clock)
    await budgets.settle(await budgets.reserve(D("0.9")), _row("0.8"))
    clock.now += 61  # the hold has expired
    with pytest.raises(BudgetExceededError, match="daily"):
        await budgets.reserve(D("0.5"))
    assert (await budgets.totals()).spent_today == D("0.8")


async def test_no_reservation_is_granted_while_the_spooled_rows_cannot_be_replayed(
    memory: SQLiteStore, tmp_path: Path
) -> None:
    """Money spent but not yet counted must be counted before more is spent: the refusal says why and where."""
    store = FlakyStore(memory, failures=2)
    spool = Spool(tmp_path / "ledger.db.pending.jsonl")
    budgets = _budgets(store, spool, Clock())
    await budgets.settle(None, _row("0.2"))
    with pytest.raises(StoreUnavailableError, match="1 ledger row") as refused:
        await budgets.reserve(D("0.1"))
    assert str(spool.path) in str(refused.value)
    assert store.calls == ["commit!", "commit!"]
    await budgets.reserve(D("0.1"))  # the store takes rows again
    assert store.calls[-2:] == ["commit", "reserve"]


async def test_a_spool_file_that_cannot_be_read_is_named_as_the_problem_not_the_store(
    memory: SQLiteStore, tmp_path: Path
) -> None:
    """Rows of a paid answer wait in the spool, which then cannot be read (here a folder stands in its place, as
    permissions cannot stop root): the refusal names the file and what to fix, and counting does not raise."""
    store = FlakyStore(memory, failures=1)
    spool = Spool(tmp_path / "ledger.db.pending.jsonl")
    budgets = _budgets(store, spool, Clock())
    await budgets.settle(None, _row("0.2"))
    assert spool.path is not None
    spool.path.rename(tmp_path / "moved.jsonl")
    spool.path.mkdir()
    with pytest.raises(StoreUnavailableError, match="cannot be read or written") as refused:
        await budgets.reserve(D("0.1"))
    assert str(spool.path) in str(refused.value) and "store could not take" not in str(refused.value)
    assert await budgets.spooled_rows() == 0


async def test_a_failure_row_is_spooled_too(memory: SQLiteStore, tmp_path: Path) -> None:
    """Rows that moved no money (a failure, a refusal, a cache hit) go the same way: nothing is lost."""
    budgets = _budgets(FlakyStore(memory, failures=1), Spool(tmp_path / "ledger.db.pending.jsonl"), Clock())
    failure = _row(None)
    failure.status = "error"
    await budgets.settle(None, failure)
    assert await budgets.replay_spooled() == 1
    assert [r.status for r in await memory.rows()] == ["error"]


async def test_a_bad_row_is_not_spooled(memory: SQLiteStore, tmp_path: Path) -> None:
    """An error that is the row's own (a cost that is not finite) would fail every replay: it is raised."""
    budgets = _budgets(FlakyStore(memory), Spool(tmp_path / "ledger.db.pending.jsonl"), Clock())
    with pytest.raises(ValueError, match="finite"):
        await budgets.settle(None, _row("NaN"))
    assert await budgets.spooled_rows() == 0


# ---------------------------------------------------------------- a real SQLite file, locked by another process


@dataclass
class Locked:
    sandbox: Sandbox
    client: OpenRouterClient
    db: Path
    settings: Settings

    def router(self, store: SQLiteStore) -> Router:
        return Router(self.client, store, self.settings, clock=RouterClock(sleep=FakeSleep()))


@pytest.fixture
async def locked(tmp_path: Path) -> AsyncIterator[Locked]:
    async with AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(Sandbox.running(api_key=KEY))
        client = await stack.enter_async_context(OpenRouterClient(KEY, base_url=sandbox.base_url))
        db = tmp_path / "ledger.db"
        settings = Settings(openrouter_api_key=KEY, openrouter_base_url=sandbox.base_url, store=f"sqlite:///{db}")
        yield Locked(sandbox, client, db, settings)


@contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """Another process's connection holding the file's write lock until the block ends."""
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("COMMIT")
    finally:
        holder.close()


async def _answer_while_locked(rig: Locked, router: Router) -> tuple[object, Path]:
    """`execute` whose answer arrives while another connection holds the write lock (past a 0.2 s busy timeout)."""
    rig.sandbox.state.faults.add(model=MODEL, kind="latency", latency_ms=300, count=1)
    answers: list[object] = []

    async def ask() -> None:
        ask = RouteRequest(messages=[{"role": "user", "content": "Say hi"}], model=MODEL, cache="off")
        answers.append(await router.execute(ask))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(ask)
            await _until(lambda: rig.sandbox.state.request_count > 0)  # reserved and sent: the answer takes 0.3 s
            with write_lock(rig.db):
                await _until(lambda: bool(answers))
    return answers[0], rig.db.with_name("ledger.db.pending.jsonl")


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("not within 10 s")


async def test_an_answer_billed_while_another_process_holds_the_write_lock_is_returned_and_recorded_once(
    locked: Locked,
) -> None:
    """The store's busy timeout runs out at the answer's commit: `execute` still returns the paid answer, the
    spool holds its row, and once the lock is gone the row reaches the ledger exactly once."""
    async with SQLiteStore(locked.db, busy_timeout_s=0.2) as store:
        router = locked.router(store)
        result, spool = await _answer_while_locked(locked, router)
        billed = locked.sandbox.state.billed_total()
        assert getattr(result, "content", None) and getattr(result, "cost", None) == billed > 0
        assert spool.exists() and len(spool.read_text().splitlines()) == 1
        assert await store.rows() == []
        assert (await router.metrics("all")).spooled_rows == 1
        assert await router.budgets.replay_spooled() == 1
        assert await router.budgets.replay_spooled() == 0
        rows = await store.rows()
        assert [(r.status, r.cost) for r in rows] == [("ok", billed)]
        assert rows[0].detail["generation_id"] == locked.sandbox.state.ledger[-1].generation_id
        assert (await router.budgets.totals()).spent_today == billed
        assert not spool.exists() and (await router.metrics("all")).spooled_rows == 0


async def test_a_new_router_on_the_same_file_replays_a_spool_left_behind_before_it_spends(locked: Locked) -> None:
    """A process that stopped with rows in the spool: the next one on the file counts them before its first
    reservation."""
    async with SQLiteStore(locked.db, busy_timeout_s=0.2) as store:
        await _answer_while_locked(locked, locked.router(store))
    first = locked.sandbox.state.billed_total()
    async with SQLiteStore(locked.db) as store:
        router = locked.router(store)
        assert router.budgets.spool.waiting
        await router.execute(RouteRequest(messages=[{"role": "user", "content": "Again"}], model=MODEL, cache="off"))
        rows = await store.rows()
        assert len(rows) == 2 and rows[0].cost == first
        assert (await router.budgets.totals()).spent_today == locked.sandbox.state.billed_total()
    assert not locked.db.with_name("ledger.db.pending.jsonl").exists()


# ---------------------------------------------------------------- Redis going away during the commit


@contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


async def _until_answers(url: str) -> None:
    from modelyard.store.redis import RedisStore

    with anyio.fail_after(10):
        while True:
            async with RedisStore(url) as probe:
                if await probe.healthy():
                    return
            await anyio.sleep(0.05)


@pytest.mark.redis
async def test_an_answer_committed_while_redis_is_down_is_spooled_and_replayed_once_it_is_back(
    tmp_path: Path,
) -> None:
    from modelyard.store.redis import RedisStore
    from tests.cli.support import free_port

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0?prefix=spool-test"
    spool = Spool(tmp_path / "redis.pending.jsonl")
    row = _row("0.000125")
    with private_redis(port):
        await _until_answers(url)
        async with RedisStore(url) as store:
            budgets = BudgetManager(store, BudgetLimits(daily=D(1)), clock=Clock(), spool=spool)
            hold = await budgets.reserve(D("0.01"))
    async with RedisStore(url) as store:  # Redis went away while the answer was generated
        budgets = BudgetManager(store, BudgetLimits(daily=D(1)), clock=Clock(), spool=spool)
        await budgets.settle(hold, row)
        assert await budgets.spooled_rows() == 1
        with private_redis(port):
            await _until_answers(url)
            assert await budgets.replay_spooled() == 1
            assert [r.id for r in await store.rows()] == [row.id]
            assert (await budgets.totals()).spent_today == D("0.000125")


async def test_a_spool_that_cannot_be_rewritten_refuses_no_reservation_once_its_rows_are_in_the_store(
    memory: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows reached the store; only removing their lines failed (a full or read-only disk): the budget counts
    them, so reservations go on, and a later replay (adding nothing) removes the lines."""
    spool = Spool(tmp_path / "ledger.db.pending.jsonl")
    budgets = _budgets(FlakyStore(memory, failures=1), spool, Clock())
    row = _row("0.2")
    await budgets.settle(None, row)

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(Spool, "_rewrite", full)
        await budgets.reserve(D("0.1"))
        assert [r.id for r in await memory.rows()] == [row.id]
        assert spool.path is not None and spool.path.exists()
    assert await budgets.replay_spooled() == 1
    assert [r.id for r in await memory.rows()] == [row.id] and (await budgets.totals()).spent_today == D("0.2")
    assert not spool.path.exists()
