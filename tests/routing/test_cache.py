"""Tests for modelyard.routing.cache: canonical keys, cache policy, TTL/LRU storage, single-flight."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from types import MappingProxyType
from typing import Any, NamedTuple

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.routing.cache import (
    CacheStats,
    CoalescedFailure,
    ResponseCache,
    cache_allowed,
    canonical_key,
    is_deterministic,
)

pytestmark = pytest.mark.anyio


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Gate:
    """A compute function whose calls are counted and which blocks until `release()`."""

    def __init__(self, *results: str | Exception) -> None:
        self.calls = 0
        self.started = anyio.Event()
        self._released = anyio.Event()
        self._results = list(results)

    def release(self) -> None:
        self._released.set()

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        await self._released.wait()
        result = self._results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def _cache(*, max_entries: int = 10, ttl_s: float = 60.0, clock: FakeClock | None = None) -> ResponseCache[str]:
    return ResponseCache(max_entries=max_entries, ttl_s=ttl_s, clock=clock or FakeClock())


async def _returning(value: str) -> str:
    await anyio.lowlevel.checkpoint()
    return value


def _counted(value: str, calls: list[str]) -> Callable[[], Awaitable[str]]:
    async def compute() -> str:
        calls.append(value)
        return await _returning(value)

    return compute


# --- canonical_key -------------------------------------------------------------------------------


def test_key_is_sha256_of_compact_sorted_unescaped_json() -> None:
    """The key pins the exact canonical text: sorted keys, no spaces, raw non-ASCII."""
    expected = hashlib.sha256('{"a":[1,"é"],"b":null}'.encode()).hexdigest()
    assert canonical_key({"b": None, "a": (1, "é")}) == expected


def test_key_ignores_dict_order_at_every_depth() -> None:
    """Two dicts with the same items in a different order, nested too, share a key."""
    one = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    two = {"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "m"}
    assert canonical_key(one) == canonical_key(two)


def test_key_treats_zero_int_float_and_negative_zero_alike() -> None:
    """0, 0.0 and -0.0 give one key, as do 1 and 1.0."""
    assert canonical_key({"t": 0}) == canonical_key({"t": 0.0}) == canonical_key({"t": -0.0})
    assert canonical_key({"t": 1}) == canonical_key({"t": 1.0})


def test_key_encodes_decimal_as_its_str() -> None:
    """A Decimal is encoded exactly as its string form."""
    assert canonical_key({"cap": Decimal("0.50")}) == canonical_key({"cap": "0.50"})


def test_key_treats_tuples_as_lists() -> None:
    """A tuple and a list with the same items share a key."""
    assert canonical_key({"stop": ("a", "b")}) == canonical_key({"stop": ["a", "b"]})


def test_key_accepts_other_mappings_and_str_int_subclasses() -> None:
    """A read-only mapping, a namedtuple and enum members encode like their plain values."""

    class Role(enum.StrEnum):
        USER = "user"

    class Count(enum.IntEnum):
        TWO = 2

    class Pair(NamedTuple):
        a: int
        b: int

    plain = {"role": "user", "n": 2, "pair": [1, 2], "inner": {"x": 1}}
    fancy = {"role": Role.USER, "n": Count.TWO, "pair": Pair(1, 2)}
    fancy["inner"] = MappingProxyType({"x": 1})
    assert canonical_key(fancy) == canonical_key(plain)


def _python_json_digest(value: Any) -> str:
    """The digest every earlier release computed: Python's json text, integral floats as ints."""

    def plain(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    text = json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)  # tiny ones too: json writes 1e-05
    | st.text(st.characters(codec="utf-8")),  # every code point but lone surrogates, controls included
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(st.characters(codec="utf-8")), inner),
    max_leaves=16,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _JSON, max_size=5))
def test_the_digest_is_the_one_earlier_releases_computed_so_a_shared_cache_survives_upgrades(
    payload: dict[str, Any],
) -> None:
    assert canonical_key(payload) == _python_json_digest(payload)


def test_str_subclass_keys_key_as_their_plain_text() -> None:
    """An enum member as a key writes its text, as json writes it, even when its value is something else."""

    class Code(str, enum.Enum):  # noqa: UP042  # a str mixin whose value is not its text
        OK = "ok"

        def __new__(cls, text: str) -> Code:
            member = str.__new__(cls, text)
            member._value_ = len(text)  # a value that is not the text
            return member

    assert canonical_key({"part": {Code.OK: 1}}) == _python_json_digest({"part": {"ok": 1}})
    assert canonical_key({"part": {Code.OK: 1}}) != canonical_key({"part": {"2": 1}})


def test_nesting_deeper_than_the_fast_encoder_writes_keys_as_json_writes_it() -> None:
    """pydantic_core stops at 255 levels; the key of a deeper value is still json's digest."""
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    assert canonical_key({"d": deep}) == _python_json_digest({"d": deep})


@pytest.mark.parametrize(
    "other",
    [
        {"temperature": 0.7, "content": "hi"},
        {"temperature": 0, "content": "hi!"},
        {"temperature": 0, "content": "hi", "seed": 1},
        {"temperature": False, "content": "hi"},
        {"temperature": 0, "content": ["hi"]},
    ],
)
def test_key_differs_when_any_value_differs(other: dict[str, Any]) -> None:
    """A different value, an extra field, a bool for an int or a list for a str changes the key."""
    assert canonical_key({"temperature": 0, "content": "hi"}) != canonical_key(other)


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", object(), {1: "int key"}])
def test_key_rejects_unsupported_types_with_type_error(value: object) -> None:
    """Sets, bytes, arbitrary objects and non-str keys raise TypeError."""
    with pytest.raises(TypeError):
        canonical_key({"x": value})


@pytest.mark.parametrize(
    "value", [float("nan"), float("-inf"), [1.5, {"deep": float("inf")}], "lone \ud800", {"k\udc00": 1}]
)
def test_key_rejects_nan_infinity_and_lone_surrogates_with_value_error(value: object) -> None:
    """NaN and infinity have no JSON form, and a lone surrogate no UTF-8 one."""
    with pytest.raises(ValueError):
        canonical_key({"x": value})


def test_key_pins_nested_sorting_and_float_text() -> None:
    """Nested keys are sorted too; a non-integral float is written as Python writes it (1e-07, not 1e-7)."""
    expected = hashlib.sha256(b'{"m":[{"a":0.1,"b":"x"}],"t":1e-07}').hexdigest()
    assert canonical_key({"t": 1e-7, "m": [{"b": "x", "a": 0.1}]}) == expected


# --- cache policy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("temperature", "seed", "expected"),
    [
        (0, None, True),
        (0.0, None, True),
        (None, 7, True),
        (0.7, 7, True),
        (None, None, False),
        (0.7, None, False),
    ],
)
def test_deterministic_means_temperature_zero_or_a_seed(
    temperature: float | None, seed: int | None, expected: bool
) -> None:
    """Temperature 0 or a seed is deterministic; the model default temperature is not."""
    assert is_deterministic(temperature, seed) is expected


def test_auto_mode_caches_deterministic_requests_only() -> None:
    """`auto` caches temperature 0 or a seed, never a sampled request."""
    assert cache_allowed("auto", temperature=0, seed=None)
    assert cache_allowed("auto", temperature=1.0, seed=42)
    assert not cache_allowed("auto", temperature=0.7, seed=None)
    assert not cache_allowed("auto", temperature=None, seed=None)


def test_on_mode_caches_everything_and_off_mode_nothing() -> None:
    """`on` caches even sampled requests; `off` caches not even deterministic ones."""
    assert cache_allowed("on", temperature=None, seed=None)
    assert not cache_allowed("off", temperature=0, seed=1)


def test_unknown_mode_raises_value_error() -> None:
    """A mode outside auto/on/off is a programming error."""
    with pytest.raises(ValueError, match="unknown cache mode"):
        cache_allowed("sometimes", temperature=0, seed=None)  # type: ignore[arg-type]


# --- storage -------------------------------------------------------------------------------------


def test_get_returns_stored_value_and_counts_hit_and_miss() -> None:
    """A stored key hits, an unknown key misses, and both are counted."""
    cache = _cache()
    cache.put("k", "v")
    assert cache.get("k") == "v"
    assert cache.get("other") is None
    assert cache.stats == CacheStats(hits=1, misses=1, coalesced=0, evictions=0, expirations=0, size=1)


def test_entry_expires_at_ttl_on_the_injected_clock() -> None:
    """An entry lives until exactly ttl_s after it was stored, then is dropped and counted."""
    clock = FakeClock()
    cache = _cache(ttl_s=10, clock=clock)
    cache.put("k", "v")
    clock.now = 9.999
    assert cache.get("k") == "v"
    clock.now = 10.0
    assert cache.get("k") is None
    assert cache.stats.expirations == 1
    assert cache.stats.size == 0


def test_an_entry_put_with_a_shorter_lifetime_lives_only_that_long_and_never_beyond_the_ttl() -> None:
    """A value with part of its life spent elsewhere keeps only what is left; a longer lifetime is capped
    at the cache's TTL, and none at all drops the key, an older value included."""
    clock = FakeClock()
    cache = _cache(ttl_s=10, clock=clock)
    cache.put("short", "v", ttl_s=2)
    cache.put("long", "v", ttl_s=60)
    cache.put("spent", "old")
    cache.put("spent", "new", ttl_s=0)
    clock.now = 2.0
    assert (cache.get("short"), cache.get("long"), cache.get("spent")) == (None, "v", None)
    clock.now = 10.0
    assert cache.get("long") is None


def test_put_again_replaces_value_and_restarts_ttl() -> None:
    """Storing a key again replaces its value and its expiry."""
    clock = FakeClock()
    cache = _cache(ttl_s=10, clock=clock)
    cache.put("k", "old")
    clock.now = 5
    cache.put("k", "new")
    clock.now = 12
    assert cache.get("k") == "new"


def test_lru_evicts_least_recently_used_entry_first() -> None:
    """Beyond max_entries, the entry used longest ago goes, and a get counts as a use."""
    cache = _cache(max_entries=2)
    cache.put("a", "1")
    cache.put("b", "2")
    assert cache.get("a") == "1"
    cache.put("c", "3")
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == ("1", "3")
    assert cache.stats.evictions == 1


def test_evicting_an_expired_entry_counts_as_expiration() -> None:
    """An entry pushed out after its TTL passed is counted as expired, not evicted."""
    clock = FakeClock()
    cache = _cache(max_entries=1, ttl_s=10, clock=clock)
    cache.put("a", "1")
    clock.now = 20
    cache.put("b", "2")
    assert (cache.stats.evictions, cache.stats.expirations) == (0, 1)


@pytest.mark.parametrize(("max_entries", "ttl_s"), [(0, 60.0), (10, 0.0)])
def test_zero_max_entries_or_ttl_disables_storing(max_entries: int, ttl_s: float) -> None:
    """With max_entries 0 (or ttl 0) nothing is stored and nothing is evicted."""
    cache = _cache(max_entries=max_entries, ttl_s=ttl_s)
    cache.put("k", "v")
    assert cache.get("k") is None
    assert cache.stats == CacheStats(hits=0, misses=1, coalesced=0, evictions=0, expirations=0, size=0)


def test_negative_limits_are_rejected() -> None:
    """A negative max_entries or ttl_s is a configuration mistake."""
    with pytest.raises(ValueError):
        ResponseCache[str](max_entries=-1, ttl_s=1)
    with pytest.raises(ValueError):
        ResponseCache[str](max_entries=1, ttl_s=-1)


def test_clear_drops_entries_but_keeps_counters() -> None:
    """After clear() every key misses, and the lifetime counters remain."""
    cache = _cache()
    cache.put("k", "v")
    cache.get("k")
    cache.clear()
    assert cache.get("k") is None
    assert cache.stats == CacheStats(hits=1, misses=1, coalesced=0, evictions=0, expirations=0, size=0)


# --- get_or_compute ------------------------------------------------------------------------------


async def test_get_or_compute_computes_on_miss_then_hits() -> None:
    """The first call computes (hit False), the second is served from the cache (hit True)."""
    cache = _cache()
    calls: list[str] = []
    with anyio.fail_after(1):
        assert await cache.get_or_compute("k", _counted("v", calls)) == ("v", False)
        assert await cache.get_or_compute("k", _counted("other", calls)) == ("v", True)
    assert calls == ["v"]
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


async def test_fifty_identical_concurrent_calls_compute_once() -> None:
    """50 concurrent calls for one key run compute once and all get its value: 1 miss, 49 coalesced."""
    cache = _cache()
    gate = Gate("v")
    results: list[tuple[str, bool]] = []

    async def call() -> None:
        results.append(await cache.get_or_compute("k", gate))

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            assert gate.calls == 1
            gate.release()
    assert gate.calls == 1
    assert sorted(results) == [("v", False)] + [("v", True)] * 49
    assert cache.stats == CacheStats(hits=0, misses=1, coalesced=49, evictions=0, expirations=0, size=1)


async def test_failing_leader_raises_and_exactly_one_waiter_recomputes() -> None:
    """The leader gets its exception; the waiters are released and one of them computes again."""
    cache = _cache()
    gate = Gate(RuntimeError("upstream down"), "fresh")
    results: list[tuple[str, bool]] = []

    async def leader() -> None:
        with pytest.raises(RuntimeError, match="upstream down"):
            await cache.get_or_compute("k", gate)

    async def waiter() -> None:
        results.append(await cache.get_or_compute("k", gate))

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            await gate.started.wait()
            for _ in range(5):
                tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            gate.release()
    assert gate.calls == 2
    assert sorted(results) == [("fresh", False)] + [("fresh", True)] * 4
    assert (cache.stats.misses, cache.stats.coalesced) == (2, 4)


async def test_a_failure_the_leader_shares_reaches_every_waiter_and_nothing_computes_again() -> None:
    """N identical requests to a failing upstream fail once, together, not one after another."""
    cache = _cache()
    gate = Gate(RuntimeError("upstream down"), "never used")
    shared: list[Exception] = []

    async def leader() -> None:
        with pytest.raises(RuntimeError, match="upstream down"):
            await cache.get_or_compute("k", gate, share_failure=lambda exc: isinstance(exc, RuntimeError))

    async def waiter() -> None:
        with pytest.raises(CoalescedFailure) as caught:
            await cache.get_or_compute("k", gate)
        shared.append(caught.value.error)

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            await gate.started.wait()
            for _ in range(5):
                tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            gate.release()
    assert gate.calls == 1
    assert [str(error) for error in shared] == ["upstream down"] * 5


async def test_a_waiter_gives_up_at_its_wait_s_and_the_leader_goes_on() -> None:
    cache = _cache()
    gate = Gate("slow")
    outcomes: list[object] = []

    async def leader() -> None:
        outcomes.append(await cache.get_or_compute("k", gate))

    async def impatient() -> None:
        with pytest.raises(CoalescedFailure) as caught:
            await cache.get_or_compute("k", gate, wait_s=0.05)
        outcomes.append(type(caught.value.error))
        gate.release()

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            await gate.started.wait()
            tg.start_soon(impatient)
    assert outcomes == [TimeoutError, ("slow", False)]
    assert gate.calls == 1


async def test_cancelled_leader_releases_waiters_and_one_becomes_leader() -> None:
    """Cancelling the leader's scope wakes the waiters, and one of them computes the value."""
    cache = _cache()
    stuck = Gate("never")
    results: list[tuple[str, bool]] = []
    calls: list[str] = []
    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await cache.get_or_compute("k", stuck)

    async def waiter() -> None:
        results.append(await cache.get_or_compute("k", _counted("fresh", calls)))

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            await stuck.started.wait()
            for _ in range(5):
                tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            leader_scope.cancel()
    assert leader_scope.cancelled_caught
    assert calls == ["fresh"]
    assert sorted(results) == [("fresh", False)] + [("fresh", True)] * 4


async def test_different_keys_compute_independently_and_concurrently() -> None:
    """Computes for two keys overlap: each waits for the other to start, which would deadlock if serial."""
    cache = _cache()
    a_started, b_started = anyio.Event(), anyio.Event()

    async def compute_a() -> str:
        a_started.set()
        await b_started.wait()
        return "a"

    async def compute_b() -> str:
        b_started.set()
        await a_started.wait()
        return "b"

    results: dict[str, tuple[str, bool]] = {}

    async def call(key: str, compute: Callable[[], Awaitable[str]]) -> None:
        results[key] = await cache.get_or_compute(key, compute)

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "a", compute_a)
            tg.start_soon(call, "b", compute_b)
    assert results == {"a": ("a", False), "b": ("b", False)}
    assert cache.stats.misses == 2


async def test_uncacheable_result_is_returned_but_not_stored() -> None:
    """A value for which cacheable() is False reaches the caller and the next call computes again."""
    cache = _cache()
    calls: list[str] = []
    with anyio.fail_after(1):
        first = await cache.get_or_compute("k", _counted("v", calls), cacheable=lambda v: False)
        second = await cache.get_or_compute("k", _counted("v", calls), cacheable=lambda v: False)
    assert first == second == ("v", False)
    assert calls == ["v", "v"]
    assert cache.get("k") is None
    assert cache.stats.size == 0


async def test_cacheable_predicate_sees_the_computed_value() -> None:
    """Only values the predicate accepts are stored."""
    cache = _cache()
    with anyio.fail_after(1):
        await cache.get_or_compute("ok", lambda: _returning("good"), cacheable=lambda v: v == "good")
        await cache.get_or_compute("bad", lambda: _returning("error"), cacheable=lambda v: v == "good")
    assert (cache.get("ok"), cache.get("bad")) == ("good", None)
