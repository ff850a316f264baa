"""RedisStore: the SQLite store's whole contract against a real redis-server, plus what only a shared
store must show — several OS processes never overshoot together, dead instances lose no row and their
holds expire, totals outlive the instance, and money stays exact where Lua's doubles would not."""

from __future__ import annotations

import inspect
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from decimal import Decimal, localcontext
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from modelyard.errors import BudgetExceededError, ConfigurationError
from modelyard.store import BudgetLimits, LedgerRow, SpendTotals, open_store
from modelyard.store.redis import RedisStore
from tests.scaleout import _redis_workers
from tests.scaleout.redis_server import redis_url, store_url, wipe
from tests.store import test_renew, test_sqlite

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
ROOT = Path(__file__).resolve().parents[2]
NOW = test_sqlite.NOW
D = Decimal


def _contract_tests() -> dict[str, Any]:
    """Every SQLite store test that needs nothing but a `store`: run here again against Redis."""
    found: dict[str, Any] = {}
    for name, function in [*vars(test_sqlite).items(), *vars(test_renew).items()]:
        if name.startswith("test_") and inspect.isfunction(function):
            fixtures = set(inspect.signature(function).parameters)
            if "store" in fixtures and not fixtures & {"db_path", "tmp_path", "monkeypatch"}:
                found[name] = function
    return found


globals().update(_contract_tests())


@pytest.fixture
async def url() -> AsyncIterator[str]:
    """A Redis URL whose key prefix is this test's own; its keys are deleted afterwards."""
    named = store_url()
    yield named
    await wipe(named)


@pytest.fixture
async def store(url: str) -> AsyncIterator[RedisStore]:
    async with RedisStore(url) as opened:
        yield opened


@pytest.fixture
def spawnable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let 'spawn' children import `tests.scaleout._redis_workers`."""
    monkeypatch.syspath_prepend(str(ROOT))
    yield


def _row(row_id: str, cost: str | None, ts: float = NOW) -> LedgerRow:
    return LedgerRow(id=row_id, ts=ts, requested_model="auto", cost=None if cost is None else D(cost))


def test_the_contract_tests_of_the_sqlite_store_are_collected_here_too() -> None:
    """The shared contract really is reused: the concurrency, money, refusal and renewal tests run against Redis."""
    names = set(_contract_tests())
    assert len(names) >= 20
    assert "test_200_concurrent_reservations_of_001_against_a_005_day_grant_exactly_5" in names
    assert "test_costs_sum_exactly_as_decimals" in names
    assert "test_a_hold_no_longer_renewed_expires_a_lifetime_after_its_last_renewal" in names


# --- several processes, dead instances, restarts -----------------------------------------------


def _run_reservers(url: str, processes: int, tries: int) -> list[int]:
    args = (url, tries, "0.01", "0.05", NOW)
    return [int(count) for count in test_sqlite.run_racers(_redis_workers.reserve_many, args, processes)]


@pytest.mark.usefixtures("spawnable")
async def test_reservations_from_4_processes_each_with_its_own_store_never_exceed_the_daily_budget(url: str) -> None:
    """4 OS processes, each with its own RedisStore, race 50 reservations of 0.01 against 0.05: 5 win."""
    counts = await anyio.to_thread.run_sync(_run_reservers, url, 4, 50)
    assert sum(counts) == 5
    async with RedisStore(url) as store:
        assert (await store.totals(now=NOW)).reserved == D("0.05")


def _commit_then_kill(url: str, costs: list[str], holds: list[str]) -> None:
    context = multiprocessing.get_context("spawn")
    ready: Queue[object] = context.Queue()
    child = context.Process(target=_redis_workers.commit_then_hold, args=(url, costs, holds, NOW, ready))
    child.start()
    children: Sequence[BaseProcess] = [child]
    assert test_sqlite._receive(ready, children, 1) == ["ready"]
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL
    ready.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.usefixtures("spawnable")
async def test_a_killed_instance_keeps_its_committed_rows_and_its_holds_expire(url: str) -> None:
    """SIGKILL after commits loses no ledger row; the dead instance's holds stop counting at expiry."""
    costs, holds = ["0.01", "0.00001255", "0.002"], ["0.1", "0.2"]
    await anyio.to_thread.run_sync(_commit_then_kill, url, costs, holds)
    async with RedisStore(url) as store:
        assert [(row.id, row.cost) for row in await store.rows()] == [
            ("child-0", D("0.01")),
            ("child-1", D("0.00001255")),
            ("child-2", D("0.002")),
        ]
        assert await store.totals(now=NOW) == SpendTotals(
            spent_today=D("0.01201255"), spent_month=D("0.01201255"), reserved=D("0.3")
        )
        after_expiry = NOW + _redis_workers.TTL_S
        assert (await store.totals(now=after_expiry)).reserved == D(0)
        await store.reserve(D("0.98798745"), BudgetLimits(daily=D(1)), now=after_expiry, ttl_s=60)


async def test_totals_rows_and_values_outlive_the_instance(url: str) -> None:
    """A new store on the same Redis and prefix sees the spend, the live holds, the rows and the values."""
    async with RedisStore(url) as first:
        await first.commit(None, _row("kept", "0.0125"))
        await first.reserve(D("0.01"), test_sqlite.LIMITS, now=NOW, ttl_s=60)
        await first.set_value("catalog", "{}")
        before = await first.totals(now=NOW)
    async with RedisStore(url) as restarted:
        assert await restarted.totals(now=NOW) == before
        assert [row.id for row in await restarted.rows()] == ["kept"]
        assert await restarted.get_value("catalog") == "{}"


async def test_two_prefixes_on_one_redis_are_separate_fleets(store: RedisStore) -> None:
    """Another prefix shares nothing: no spend, no rows, no values."""
    await store.commit(None, _row("mine", "0.5"))
    await store.set_value("k", "v")
    other_url = store_url()
    try:
        async with RedisStore(other_url) as other:
            assert (await other.totals(now=NOW)).spent_today == D(0)
            assert await other.rows() == [] and await other.get_value("k") is None
    finally:
        await wipe(other_url)


# --- money exactness where doubles would fail ----------------------------------------------------


async def test_sums_beyond_the_exact_range_of_doubles_stay_exact(store: RedisStore) -> None:
    """Costs with 30 fraction digits on top of amounts above 2^53 units add and compare exactly."""
    big, tiny = D("98765432109876.123456789012345678901234567891"), D("0.000000000000000000000000000001")
    await store.commit(None, _row("big", str(big)))
    await store.commit(None, _row("tiny", str(tiny)))
    await store.commit(None, _row("float", "1.2345678901234567E-5"))
    with localcontext(prec=200):
        spent = big + tiny + D("1.2345678901234567E-5")
        assert (await store.totals(now=NOW)).spent_today == spent
        fits = spent + D("0.5")
    await store.reserve(D("0.5"), BudgetLimits(daily=fits), now=NOW, ttl_s=60)
    with pytest.raises(BudgetExceededError) as refused:
        await store.reserve(tiny, BudgetLimits(daily=fits), now=NOW, ttl_s=60)
    assert refused.value.remaining == D(0)


async def test_holds_released_in_any_order_return_the_held_total_to_exactly_zero(store: RedisStore) -> None:
    """Many holds of awkward amounts, released out of order, leave exactly 0 held (no drift)."""
    amounts = [D("0.00001255"), D("0.1"), D("0.2"), D("1E-18"), D("3.0000000000000000001"), D("0")] * 5
    held = [await store.reserve(amount, BudgetLimits(), now=NOW, ttl_s=60) for amount in amounts]
    assert (await store.totals(now=NOW)).reserved == sum(amounts, D(0))
    for reservation in held[1::2] + held[0::2]:
        await store.release(reservation.id)
    assert (await store.totals(now=NOW)).reserved == D(0)
    assert await store.redis.get(store.key("held")) == "0"


async def test_a_refund_with_a_negative_cost_lowers_the_spend_exactly(store: RedisStore) -> None:
    """As in SQLite, a negative cost (a refund) counts: 0.3 spent then -0.1 leaves 0.2."""
    await store.commit(None, _row("paid", "0.3"))
    await store.commit(None, _row("refund", "-0.1"))
    assert (await store.totals(now=NOW)).spent_month == D("0.2")


async def test_a_refusal_writes_its_amounts_in_plain_digits(store: RedisStore) -> None:
    """As from SQLite: "$0" held after a tiny hold is released, and the limit and spend without trailing zeros."""
    await store.commit(None, _row("spent", "0.030"))
    await store.release((await store.reserve(D("0.00000000001"), test_sqlite.LIMITS, now=NOW, ttl_s=60)).id)
    with pytest.raises(BudgetExceededError) as refused:
        await store.reserve(D("0.021"), BudgetLimits(daily=D("0.0500")), now=NOW, ttl_s=60)
    assert "(limit $0.05, spent $0.03, held by requests in flight $0)" in str(refused.value)


# --- scripts, keys, URLs, health -----------------------------------------------------------------


async def test_scripts_flushed_from_redis_are_loaded_again(store: RedisStore) -> None:
    """After SCRIPT FLUSH (a Redis restart or failover), EVALSHA falls back to loading the script."""
    await store.reserve(D("0.01"), test_sqlite.LIMITS, now=NOW, ttl_s=60)
    await store.redis.script_flush()
    await store.reserve(D("0.01"), test_sqlite.LIMITS, now=NOW, ttl_s=60)
    assert (await store.totals(now=NOW)).reserved == D("0.02")


async def test_every_key_carries_the_prefix_hash_tag(store: RedisStore) -> None:
    """All keys live in one Redis Cluster slot: each starts with the `{prefix}` hash tag."""
    await store.commit(None, _row("r", "0.01"))
    await store.reserve(D("0.01"), test_sqlite.LIMITS, now=NOW, ttl_s=60)
    await store.set_value("k", "v")
    keys = [key async for key in store.redis.scan_iter(match=f"*{store.prefix}*")]
    assert len(keys) >= 8
    assert all(key.startswith(f"{{{store.prefix}}}:") for key in keys)


async def test_open_store_opens_a_redis_url_with_its_prefix(url: str) -> None:
    """`MODELYARD_STORE=redis://...?prefix=NAME` opens a RedisStore in that namespace that answers."""
    store = open_store(url)
    assert isinstance(store, RedisStore)
    assert store.prefix == url.rsplit("prefix=", 1)[1]
    assert await store.healthy()
    await store.aclose()


def test_a_malformed_redis_url_is_a_configuration_error_without_its_password() -> None:
    """A bad port is refused as ConfigurationError, and the message hides the password."""
    with pytest.raises(ConfigurationError, match="Invalid Redis store URL") as refused:
        open_store("redis://user:hunter2@localhost:notaport/0")
    assert "hunter2" not in str(refused.value)


async def test_an_unreachable_redis_is_unhealthy_not_an_exception() -> None:
    """healthy() is False when nothing listens on the Redis port."""
    async with RedisStore("redis://127.0.0.1:1/0") as store:
        assert not await store.healthy()


async def test_the_test_redis_is_reachable() -> None:
    """The Redis these tests use answers (CI's TEST_REDIS_URL or a private redis-server)."""
    async with RedisStore(redis_url()) as store:
        assert await store.healthy()


async def test_open_store_async_opens_a_redis_store_that_answers(url: str) -> None:
    from modelyard.store import open_store_async

    store = await open_store_async(url)
    assert isinstance(store, RedisStore) and await store.healthy()
    await store.aclose()
