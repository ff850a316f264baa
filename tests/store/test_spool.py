"""The spool: ledger rows the store could not take, kept one JSON line each on local disk, replayed into the
store exactly once, and where each store's spool lives."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from modelyard.errors import StoreUnavailableError
from modelyard.store import spool_location
from modelyard.store.base import MEMORY, BudgetLimits, LedgerRow
from modelyard.store.redis import RedisStore
from modelyard.store.spool import Spool, default_state_dir, is_store_failure, spool_for
from modelyard.store.sqlite import SQLiteStore
from tests.store._flaky import FlakyStore, locked

pytestmark = pytest.mark.anyio
NOW = 1_787_000_000.0
D = Decimal


def _row(row_id: str, cost: str | None = "0.000020", saved: str | None = None) -> LedgerRow:
    return LedgerRow(
        id=row_id,
        ts=NOW,
        requested_model="auto",
        model="openai/gpt-4o-mini",
        cost=None if cost is None else D(cost),
        cost_source="upstream",
        saved=None if saved is None else D(saved),
        detail={"generation_id": f"gen-{row_id}"},
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _ids_in(path: Path) -> list[str]:
    return [line["row"]["id"] for line in _lines(path)]


async def _ids(store: SQLiteStore) -> list[str]:
    return [row.id for row in await store.rows()]


async def _until_ledger_is(store: SQLiteStore, ids: list[str]) -> None:
    for _ in range(500):
        if await _ids(store) == ids:
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"the ledger never held {ids}")


def _files(folder: Path) -> list[Path]:
    return list(folder.iterdir())


async def test_a_kept_row_is_one_json_line_with_its_money_as_exact_text(tmp_path: Path) -> None:
    """One object per line: the reservation it settles and the row, its Decimals as exact strings."""
    path = tmp_path / "ledger.db.pending.jsonl"
    spool = Spool(path)
    await spool.keep("res-1", _row("a", "0.000020", saved="1E-9"))
    [line] = _lines(path)
    assert line["reservation_id"] == "res-1"
    row = line["row"]
    assert isinstance(row, dict) and row["cost"] == "0.000020" and row["saved"] == "1E-9" and row["id"] == "a"
    assert spool.waiting


async def test_a_replay_commits_every_kept_row_once_and_removes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db.pending.jsonl"
    spool = Spool(path)
    async with SQLiteStore(MEMORY) as store:
        hold = await store.reserve(D("0.5"), BudgetLimits(daily=D(1)), now=NOW, ttl_s=60)
        await spool.keep(hold.id, _row("a", "0.25"))
        await spool.keep(None, _row("b", None))
        assert await spool.count() == 2
        assert await spool.replay(store) == 2
        assert await spool.replay(store) == 0
        assert sorted(await _ids(store)) == ["a", "b"]
        totals = await store.totals(now=NOW)
        assert (totals.spent_today, totals.reserved) == (D("0.25"), D(0))  # the hold became the cost
    assert not path.exists()
    assert not spool.waiting and await spool.count() == 0


async def test_a_replay_into_a_store_that_still_refuses_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db.pending.jsonl"
    spool = Spool(path)
    async with SQLiteStore(MEMORY) as inner:
        store = FlakyStore(inner, failures=1)
        await spool.keep(None, _row("a"))
        await spool.keep(None, _row("b"))
        assert await spool.replay(store) == 0
        assert _ids_in(path) == ["a", "b"]
        assert spool.waiting and isinstance(spool.last_error, sqlite3.OperationalError)
        assert await spool.replay(store) == 2
        assert sorted(await _ids(inner)) == ["a", "b"]


async def test_a_row_kept_while_a_replay_runs_stays_in_the_file(tmp_path: Path) -> None:
    """The replay rewrites the file without the lines it committed: a line appended meanwhile is kept."""
    path = tmp_path / "ledger.db.pending.jsonl"
    spool = Spool(path)
    async with SQLiteStore(MEMORY) as inner:
        store = FlakyStore(inner)
        await spool.keep(None, _row("a"))
        store.gate = anyio.Event()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(spool.replay, store)
                await anyio.sleep(0.05)  # the replay has read the file and waits in its commit
                await spool.keep(None, _row("b"))
                store.gate.set()
        assert await _ids(inner) == ["a"]
        assert _ids_in(path) == ["b"]
        assert spool.waiting
        assert await spool.replay(store) == 1 and sorted(await _ids(inner)) == ["a", "b"]


async def test_two_replays_racing_on_one_spool_file_commit_each_row_once(tmp_path: Path) -> None:
    """Two processes sharing a SQLite file replay its spool at the same time: each row, and its cost, counts once."""
    db = tmp_path / "ledger.db"
    path = tmp_path / "ledger.db.pending.jsonl"
    async with SQLiteStore(db, lease=False) as one, SQLiteStore(db, lease=False) as two:
        writer = Spool(path)
        for index in range(20):
            hold = await one.reserve(D("0.5"), BudgetLimits(), now=NOW, ttl_s=60)
            await writer.keep(hold.id, _row(f"r{index}", "0.125"))
        first, second = Spool(path), Spool(path)
        committed: list[int] = []

        async def replay(spool: Spool, store: SQLiteStore) -> None:
            committed.append(await spool.replay(store))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(replay, first, one)
                group.start_soon(replay, second, two)
        assert sum(committed) >= 20  # both may commit a row: the second commit adds nothing
        rows = await one.rows()
        assert sorted(r.id for r in rows) == sorted(f"r{i}" for i in range(20))
        totals = await two.totals(now=NOW)
        assert (totals.spent_today, totals.reserved) == (D("2.5"), D(0))
    assert not path.exists()


async def test_a_line_that_cannot_be_read_is_set_aside_rather_than_blocking_the_others(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db.pending.jsonl"
    spool = Spool(path)
    await spool.keep(None, _row("a"))
    with path.open("a") as file:
        file.write('{"reservation_id": null, "row": {"id": "cut off in the mid\n')
    async with SQLiteStore(MEMORY) as store:
        assert await spool.replay(store) == 1
        assert await _ids(store) == ["a"]
    assert not path.exists() and not spool.waiting
    assert "cut off in the mid" in (tmp_path / "ledger.db.pending.jsonl.rejected").read_text()


async def test_an_in_memory_database_keeps_its_spool_in_memory(tmp_path: Path) -> None:
    """Its ledger dies with the process, and no other process could replay into it: no file."""
    async with SQLiteStore(MEMORY) as inner:
        spool = spool_for(inner, state_dir=tmp_path)
        assert spool.path is None
        await spool.keep(None, _row("a"))
        assert spool.waiting and await spool.count() == 1
        assert await spool.replay(FlakyStore(inner)) == 1 and await _ids(inner) == ["a"]
    assert _files(tmp_path) == []


async def test_the_spool_of_a_sqlite_file_lives_beside_it(tmp_path: Path) -> None:
    db = tmp_path / "data" / "ledger.db"
    async with SQLiteStore(db) as store:
        assert spool_for(store).path == db.with_name("ledger.db.pending.jsonl")
    assert spool_location(f"sqlite:///{db}") == db.with_name("ledger.db.pending.jsonl")
    assert spool_location(f"sqlite:///{MEMORY}") is None


async def test_a_redis_spool_is_in_the_state_dir_named_for_its_url_without_the_password_and_its_prefix(
    tmp_path: Path,
) -> None:
    """Two fleets (another Redis, database or prefix) never share a spool; a new password is the same fleet."""
    urls = {
        "fleet": "redis://ops:secret@redis.internal:6379/0?prefix=team",
        "new password": "redis://ops:rotated@redis.internal:6379/0?prefix=team",
        "other prefix": "redis://ops:secret@redis.internal:6379/0?prefix=other",
        "other db": "redis://ops:secret@redis.internal:6379/1?prefix=team",
        "other host": "redis://ops:secret@redis.backup:6379/0?prefix=team",
    }
    paths = {}
    for name, url in urls.items():
        async with RedisStore(url) as store:
            paths[name] = spool_for(store, state_dir=tmp_path).path
        assert spool_location(url, state_dir=tmp_path) == paths[name]
    assert all(p is not None and p.parent == tmp_path and "secret" not in p.name for p in paths.values())
    assert paths["fleet"] == paths["new password"]
    assert len({paths[n] for n in ("fleet", "other prefix", "other db", "other host")}) == 4


def test_the_state_dir_follows_xdg_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "modelyard"


def test_store_failures_are_what_a_locked_or_absent_store_raises_not_a_bad_row() -> None:
    assert is_store_failure(locked()) and is_store_failure(StoreUnavailableError("Redis does not answer"))
    assert is_store_failure(TimeoutError()) and is_store_failure(OSError("disk I/O error"))
    assert not is_store_failure(ValueError("a ledger amount must be finite, not NaN"))


async def test_the_background_replay_backs_off_until_the_store_takes_the_rows(tmp_path: Path) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await anyio.lowlevel.checkpoint()

    path = tmp_path / "ledger.db.pending.jsonl"
    spool = Spool(path, sleep=sleep, first_backoff_s=1, max_backoff_s=4)
    async with SQLiteStore(MEMORY) as inner:
        store = FlakyStore(inner, failures=4)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await group.start(spool.run, store)
                await spool.keep(None, _row("a"))
                await _until_ledger_is(inner, ["a"])
                group.cancel_scope.cancel()
    assert waits == [1, 2, 4, 4]
    assert not spool.waiting and not path.exists()


async def test_the_background_replay_picks_up_rows_another_process_left_in_a_shared_spool(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db.pending.jsonl"
    other = Spool(path)  # another process on the same SQLite file, whose commit failed
    mine = Spool(path, poll_s=0.05)
    async with SQLiteStore(MEMORY) as store:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await group.start(mine.run, store)
                await other.keep(None, _row("a"))
                await _until_ledger_is(store, ["a"])
                group.cancel_scope.cancel()
    assert not path.exists()


async def test_a_row_kept_after_a_line_cut_short_is_still_replayed(tmp_path: Path) -> None:
    """A crash (or a full disk) mid-append leaves a last line without its newline: the next row kept starts a
    line of its own, so only the cut line is set aside, never the row glued to it."""
    path = tmp_path / "ledger.db.pending.jsonl"
    spool = Spool(path)
    await spool.keep(None, _row("a"))
    with path.open("a") as file:
        file.write('{"reservation_id": null, "row": {"id": "cut off in the mid')
    await spool.keep(None, _row("b"))
    async with SQLiteStore(MEMORY) as store:
        assert await spool.replay(store) == 2
        assert sorted(await _ids(store)) == ["a", "b"]
    assert not path.exists() and not spool.waiting
    rejected = (tmp_path / "ledger.db.pending.jsonl.rejected").read_text()
    assert "cut off in the mid" in rejected and '"id":"b"' not in rejected
