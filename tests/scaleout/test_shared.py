"""routing.shared: breakers and the response cache shared by several instances through one Redis store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import anyio
import pytest

from modelyard.openrouter.client import OpenRouterClient
from modelyard.routing.circuit import CircuitBreakers
from modelyard.routing.result import AttemptRecord, RouteResult
from modelyard.routing.router import Router
from modelyard.routing.shared import ANSWER_GENERATION, SharedBreakers, SharedResponseCache, shared_store
from modelyard.settings import Settings
from modelyard.store import SQLiteStore
from modelyard.store.redis import RedisStore
from tests.scaleout.redis_server import store_url, wipe

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
MODEL = "a/model"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def stores() -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two RedisStores (two instances) on one namespace."""
    url = store_url()
    async with RedisStore(url) as first, RedisStore(url) as second:
        yield first, second
    await wipe(url)


def _result(content: str = "hello", cost: str = "0.00001255") -> RouteResult:
    return RouteResult(
        content=content,
        model=MODEL,
        requested_model="auto",
        resolved_model=MODEL,
        cost=Decimal(cost),
        attempts=[AttemptRecord(model=MODEL, outcome="ok", cost=Decimal(cost))],
    )


def _caches(stores: Sequence[RedisStore], *, lease_s: float = 10.0, poll_s: float = 0.05) -> list[SharedResponseCache]:
    return [SharedResponseCache(store, max_entries=10, ttl_s=60, lease_s=lease_s, poll_s=poll_s) for store in stores]


# --- breakers ------------------------------------------------------------------------------------


async def test_failures_through_one_instance_open_the_breaker_on_the_other(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """Five failures recorded by A open the model's breaker on B once B syncs; B then refuses it."""
    clock = Clock()
    a, b = (SharedBreakers(store, clock=clock) for store in stores)
    assert b.allow(MODEL)
    for _ in range(5):
        a.record_failure(MODEL)
    assert a.state(MODEL) == "open"
    await a.sync()
    await b.sync()
    assert (b.state(MODEL), b.open_models(), b.allow(MODEL)) == ("open", {MODEL}, False)


async def test_failures_counted_across_instances_add_up_to_the_threshold(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """Three failures seen by A and two by B are five consecutive failures of the fleet: open."""
    clock = Clock()
    a, b = (SharedBreakers(store, clock=clock) for store in stores)
    for _ in range(3):
        a.record_failure(MODEL)
    for _ in range(2):
        b.record_failure(MODEL)
    await a.sync()
    await b.sync()
    assert (a.state(MODEL), b.state(MODEL)) == ("open", "open")


async def test_a_half_open_trial_claimed_by_one_instance_holds_off_a_third(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """After the cooldown A claims the one trial in Redis; an instance syncing afterwards waits for it."""
    clock = Clock()
    a, b = (SharedBreakers(store, clock=clock) for store in stores)
    for _ in range(5):
        a.record_failure(MODEL)
    clock.now += 31
    await a.sync()
    assert a.allow(MODEL)
    await a.sync()
    await b.sync()
    assert (b.state(MODEL), b.allow(MODEL)) == ("half_open", False)


async def test_a_success_anywhere_closes_the_breaker_everywhere(stores: tuple[RedisStore, RedisStore]) -> None:
    """B's successful trial closes the breaker A opened, for A too."""
    clock = Clock()
    a, b = (SharedBreakers(store, clock=clock) for store in stores)
    for _ in range(5):
        a.record_failure(MODEL)
    await a.sync()
    b.record_success(MODEL)
    await b.sync()
    await a.sync()
    assert (a.state(MODEL), a.snapshot()) == ("closed", {MODEL: "closed"})


async def test_reads_between_syncs_stay_local_and_cheap(stores: tuple[RedisStore, RedisStore]) -> None:
    """Within the sync interval a read answers from the local copy; after it, a pull brings B's news."""
    clock = Clock()
    a = SharedBreakers(stores[0], clock=clock, sync_interval_s=3600)
    b = SharedBreakers(stores[1], clock=clock)
    await a.sync()
    for _ in range(5):
        b.record_failure(MODEL)
    await b.sync()
    assert a.state(MODEL) == "closed", "no pull before the interval"
    await a.sync()
    assert a.state(MODEL) == "open"


def test_breakers_used_without_an_event_loop_stay_local() -> None:
    """Called from synchronous code (no loop to push from), the breakers still work locally."""
    breakers = SharedBreakers(RedisStore("redis://127.0.0.1:1/0"), clock=Clock())
    for _ in range(5):
        breakers.record_failure(MODEL)
    assert breakers.state(MODEL) == "open"


# --- cache ---------------------------------------------------------------------------------------


async def test_an_answer_computed_by_one_instance_is_a_hit_on_the_other(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """A computes and stores; B's lookup is a hit with the exact Decimal cost and no compute."""
    a, b = _caches(stores)
    calls = 0

    async def compute() -> RouteResult:
        nonlocal calls
        calls += 1
        return _result(cost="0.000000000000000000123")

    first, first_hit = await a.get_or_compute("k", compute)
    second, second_hit = await b.get_or_compute("k", compute)
    assert (calls, first_hit, second_hit) == (1, False, True)
    assert second == first and second.cost == Decimal("0.000000000000000000123")
    assert (b.stats.hits, b.stats.misses) == (1, 0)


async def test_identical_requests_on_two_instances_at_once_compute_once(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """Ten concurrent lookups on each of two instances share one compute (single flight across the fleet)."""
    a, b = _caches(stores, poll_s=0.01)
    calls = 0
    hits: list[bool] = []

    async def compute() -> RouteResult:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.2)
        return _result()

    async def ask(cache: SharedResponseCache) -> None:
        hits.append((await cache.get_or_compute("same", compute))[1])

    async with anyio.create_task_group() as group:
        for cache in (a, b) * 10:
            group.start_soon(ask, cache)
    assert calls == 1
    assert sorted(hits) == [False] + [True] * 19


async def test_a_dead_holder_blocks_the_others_only_until_its_lease_ends(stores: tuple[RedisStore, RedisStore]) -> None:
    """A lock left by a crashed instance expires with its lease; the waiter then computes itself."""
    (cache,) = _caches(stores[:1], lease_s=0.3, poll_s=0.02)
    await stores[0].redis.set(stores[0].key("cache_lock:k"), "dead-instance", px=300)
    with anyio.fail_after(5):
        value, hit = await cache.get_or_compute("k", lambda: _async(_result("fresh")))
    assert (value.content, hit) == ("fresh", False)


async def test_a_failed_compute_releases_the_lock_and_the_waiter_computes(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """When the holder's compute raises, the error is the holder's own and a waiter elsewhere takes over."""
    a, b = _caches(stores, poll_s=0.01)

    async def failing() -> RouteResult:
        await anyio.sleep(0.1)
        raise LookupError("upstream down")

    outcome: list[tuple[RouteResult, bool]] = []

    async def holder() -> None:
        with pytest.raises(LookupError):
            await a.get_or_compute("k", failing)

    async def waiter() -> None:
        await anyio.sleep(0.03)
        outcome.append(await b.get_or_compute("k", lambda: _async(_result("second"))))

    async with anyio.create_task_group() as group:
        group.start_soon(holder)
        group.start_soon(waiter)
    value, hit = outcome[0]
    assert (value.content, hit) == ("second", False)


async def test_a_long_compute_keeps_its_lease_alive(stores: tuple[RedisStore, RedisStore]) -> None:
    """A compute longer than the lease renews it, so nobody else starts the same request meanwhile."""
    a, b = _caches(stores, lease_s=0.3, poll_s=0.02)
    calls = 0

    async def slow() -> RouteResult:
        nonlocal calls
        calls += 1
        await anyio.sleep(1.0)
        return _result()

    async with anyio.create_task_group() as group:
        group.start_soon(a.get_or_compute, "k", slow)
        await anyio.sleep(0.05)
        group.start_soon(b.get_or_compute, "k", slow)
    assert calls == 1


async def test_an_entry_read_from_another_instance_expires_here_when_it_does_in_redis(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """B keeps A's entry no longer than it had left in Redis: read at 0.8 s of a 1 s TTL, it is gone by
    1.5 s and B computes afresh, instead of serving it until 1.8 s on a TTL of its own."""
    a, b = (SharedResponseCache(store, max_entries=10, ttl_s=1.0) for store in stores)
    stored_at = anyio.current_time()
    await a.get_or_compute("k", lambda: _async(_result("from A")))
    await anyio.sleep(stored_at + 0.8 - anyio.current_time())
    early, early_hit = await b.get_or_compute("k", lambda: _async(_result("from B")))
    await anyio.sleep(stored_at + 1.5 - anyio.current_time())
    late, late_hit = await b.get_or_compute("k", lambda: _async(_result("from B")))
    assert (early.content, early_hit) == ("from A", True)
    assert (late.content, late_hit) == ("from B", False)


async def test_an_entry_an_older_build_stored_under_the_bare_key_is_not_served(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """Entries are keyed with the answer generation: one written by a build that chose models under other
    rules (before a tier implied its quality) is left to expire, and this build computes its own."""
    (cache,) = _caches(stores[:1])
    older = _result("chosen by an older build").model_dump_json()
    await stores[0].redis.set(stores[0].key("cache:k"), older, px=60_000)
    value, hit = await cache.get_or_compute("k", lambda: _async(_result("chosen now")))
    assert (value.content, hit) == ("chosen now", False)
    assert await stores[0].redis.exists(stores[0].key(f"cache:{ANSWER_GENERATION}:k"))


async def _async(value: RouteResult) -> RouteResult:
    return value


# --- wiring --------------------------------------------------------------------------------------


async def test_a_router_on_a_redis_store_shares_its_breakers_and_cache(stores: tuple[RedisStore, RedisStore]) -> None:
    """The Router picks the shared breakers and cache for a RedisStore and keeps the local ones otherwise."""
    settings = Settings(openrouter_api_key=None)
    async with OpenRouterClient(None, base_url="http://127.0.0.1:1/api/v1") as client:
        shared = Router(client, stores[0], settings)
        assert isinstance(shared.breakers, SharedBreakers) and isinstance(shared.cache, SharedResponseCache)
        async with SQLiteStore(":memory:") as embedded:
            local = Router(client, embedded, settings)
            assert shared_store(embedded) is None
            assert type(local.breakers) is CircuitBreakers and not isinstance(local.cache, SharedResponseCache)
