"""State a fleet of instances shares through the Redis store: circuit breakers and the response cache.

When the router's store is a `RedisStore` (DESIGN §6), the Router swaps its in-process breakers and
cache for these subclasses, which keep the same interface and the same local fast path:

- `SharedBreakers`: every success, failure and half-open trial is pushed to Redis by an atomic Lua
  script, and the whole fleet's breaker table is pulled back at most every `sync_interval_s`
  (one pipelined round trip), so one instance's discovery that a model is down spares the others
  within about that interval. The breaker calls stay synchronous dictionary work: pushes and pulls
  run as background tasks on the event loop (asyncio, which redis.asyncio needs anyway). Breaker
  times are wall-clock seconds so that instances can compare them. Two instances may each let one
  half-open trial through at the same moment; a trial is still claimed in Redis, so a third waits.
- `SharedResponseCache`: after the in-process cache misses, the Redis tier is read (the serialized
  `RouteResult` under the canonical key, expiring after the cache TTL; an entry read from there is kept
  in process only for what is left of its TTL, so no instance serves it longer). On a miss there too, one
  instance computes under a lock with a lease (renewed while it computes, so a dead holder blocks
  the others for at most `lease_s`) while the others poll for its result: identical requests across
  the fleet make one upstream call. Local single-flight still coalesces within an instance first.

This module imports no Redis code: it drives the client the `RedisStore` already holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, cast

import anyio

from modelyard.routing.cache import ResponseCache
from modelyard.routing.circuit import BreakerState, CircuitBreakers, _Breaker
from modelyard.routing.result import RouteResult

if TYPE_CHECKING:
    from modelyard.store.redis import RedisStore

__all__ = ["ANSWER_GENERATION", "SharedBreakers", "SharedResponseCache", "shared_store"]

log = logging.getLogger(__name__)

# KEYS: failures, opened, trial (hashes keyed by model). ARGV: model, now, threshold, was_trial ('1'/'0').
_FAILURE_LUA: Final = """
local failures = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[1])
elseif redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 and failures >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return failures
"""
# KEYS: failures, opened, trial. ARGV: model.
_SUCCESS_LUA: Final = """
redis.call('HSET', KEYS[1], ARGV[1], 0)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""
# KEYS: opened, trial. ARGV: model, now, cooldown_s. Claims the half-open trial unless one is in flight.
_TRIAL_LUA: Final = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local started = redis.call('HGET', KEYS[2], ARGV[1])
if started and tonumber(ARGV[2]) - tonumber(started) < tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
# KEYS: lock. ARGV: token, lease_ms (0 = release).
_LEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
# KEYS: entry, lock. The entry's text (nil when absent), its milliseconds to live, whether the lock is held.
_READ_LUA: Final = """
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), redis.call('EXISTS', KEYS[2])}
"""

ANSWER_GENERATION: Final = "g2"
"""Part of each shared cache entry's Redis key, raised whenever a build may answer the same canonical key
differently (g2: a tier implies its quality), so that a fleet mid-upgrade never serves an answer an
older build chose under other rules; the older entries simply expire with their TTL."""


def shared_store(store: object) -> RedisStore | None:
    """`store` when it is a `RedisStore`, else None (Redis support is not imported to find out)."""
    module = sys.modules.get("modelyard.store.redis")
    if module is None or not isinstance(store, module.RedisStore):
        return None
    found: RedisStore = store
    return found


class _Background:
    """Fire-and-forget coroutines on the running event loop, logged when they fail."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> bool:
        try:
            task = asyncio.get_running_loop().create_task(coroutine)
        except RuntimeError:  # no event loop (a synchronous caller): stay local
            coroutine.close()
            return False
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("shared breaker state could not be synchronised: %s", task.exception())

    async def drain(self) -> None:
        """Wait for every task started so far (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class SharedBreakers(CircuitBreakers):
    """`CircuitBreakers` whose state is the whole fleet's, kept in Redis (see the module docstring).

    Args:
        store: the fleet's RedisStore.
        failure_threshold: consecutive failures (fleet-wide) that open a closed breaker.
        cooldown_s: how long an open breaker refuses before one trial is let through.
        clock: wall-clock seconds, comparable across instances.
        sync_interval_s: how stale the local copy of the fleet's breakers may grow before a read
            pulls it again.
    """

    def __init__(
        self,
        store: RedisStore,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        sync_interval_s: float = 0.5,
    ) -> None:
        super().__init__(failure_threshold=failure_threshold, cooldown_s=cooldown_s, clock=clock)
        self._store = store
        self._keys = (store.key("breaker_failures"), store.key("breaker_opened"), store.key("breaker_trial"))
        self._sync_interval_s = sync_interval_s
        self._synced_at = float("-inf")
        self._pulling = False
        self._version = 0  # local changes so far: a pull older than the newest change is not applied
        self._pushing = 0
        self._background = _Background()
        redis = store.redis
        self._failure, self._success = redis.register_script(_FAILURE_LUA), redis.register_script(_SUCCESS_LUA)
        self._trial = redis.register_script(_TRIAL_LUA)

    def allow(self, model: str) -> bool:
        """As `CircuitBreakers.allow`, on the fleet's state; a half-open trial is claimed in Redis too."""
        self._refresh()
        breaker = self._breakers.get(model)
        before = breaker.trial_started if breaker is not None else None
        allowed = super().allow(model)
        if allowed and breaker is not None and breaker.trial_started != before:
            now = repr(breaker.trial_started)
            self._push(self._trial, self._keys[1:], (model, now, repr(self._cooldown_s)))
        return allowed

    def record_success(self, model: str) -> None:
        """As `CircuitBreakers.record_success`, for every instance."""
        super().record_success(model)
        self._push(self._success, self._keys, (model,))

    def record_failure(self, model: str) -> None:
        """As `CircuitBreakers.record_failure`, counted fleet-wide."""
        breaker = self._breakers.get(model)
        was_trial = breaker is not None and breaker.trial_started is not None
        super().record_failure(model)
        args = (model, repr(self._clock()), str(self._threshold), "1" if was_trial else "0")
        self._push(self._failure, self._keys, args)

    def state(self, model: str) -> BreakerState:
        """As `CircuitBreakers.state`, from the fleet's state (at most `sync_interval_s` old)."""
        self._refresh()
        return super().state(model)

    def snapshot(self) -> dict[str, BreakerState]:
        """As `CircuitBreakers.snapshot`, for every model any instance recorded."""
        self._refresh()
        return super().snapshot()

    def open_models(self) -> set[str]:
        """As `CircuitBreakers.open_models`, fleet-wide."""
        self._refresh()
        return super().open_models()

    async def sync(self) -> None:
        """Finish every pending push and pull the fleet's state now."""
        await self._background.drain()
        await self._pull(self._version)

    def _push(self, script: Any, keys: tuple[str, ...], args: tuple[str, ...]) -> None:
        self._version += 1
        self._pushing += 1
        if not self._background.spawn(self._run_push(script, keys, args)):
            self._pushing -= 1

    async def _run_push(self, script: Any, keys: tuple[str, ...], args: tuple[str, ...]) -> None:
        try:
            await script(keys=keys, args=args)
        finally:
            self._pushing -= 1
            self._synced_at = float("-inf")  # read the fleet's verdict back at the next use

    def _refresh(self) -> None:
        """Start a pull when the local copy is older than the sync interval (at most one at a time, and
        at most one per interval even while Redis fails)."""
        if self._pulling or time.monotonic() - self._synced_at < self._sync_interval_s:
            return
        self._pulling = True
        self._synced_at = time.monotonic()
        if not self._background.spawn(self._pull(self._version)):
            self._pulling = False

    async def _pull(self, version: int) -> None:
        try:
            async with self._store.redis.pipeline(transaction=True) as pipe:
                for key in self._keys:
                    pipe.hgetall(key)
                failures, opened, trials = await pipe.execute()
        finally:
            self._pulling = False
        if version != self._version or self._pushing:
            self._synced_at = float("-inf")  # a local change is newer than this snapshot: pull again soon
            return
        models = set(failures) | set(opened) | set(trials)
        self._breakers = {
            model: _Breaker(
                failures=int(failures.get(model, 0)),
                opened_at=float(opened[model]) if model in opened else None,
                trial_started=float(trials[model]) if model in trials else None,
            )
            for model in models
        }


class SharedResponseCache(ResponseCache[RouteResult]):
    """`ResponseCache` with a fleet-wide Redis tier and cross-instance single flight (see the module docstring).

    Args:
        store: the fleet's RedisStore.
        max_entries: entries kept in this process (Redis keeps each for `ttl_s`).
        ttl_s: seconds an entry lives from when it is computed, here and in Redis (an entry another
            instance computed lives here only as long as it has left in Redis).
        clock: monotonic seconds for the in-process tier.
        lease_s: how long a computing instance's lock outlives it if it dies.
        poll_s: how often a waiting instance looks for the result.
    """

    def __init__(
        self,
        store: RedisStore,
        *,
        max_entries: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        lease_s: float = 10.0,
        poll_s: float = 0.05,
    ) -> None:
        super().__init__(max_entries=max_entries, ttl_s=ttl_s, clock=clock)
        self._store = store
        self._lease_ms = max(1, int(lease_s * 1000))
        self._poll_s = poll_s
        self._lease = store.redis.register_script(_LEASE_LUA)
        self._read = store.redis.register_script(_READ_LUA)

    async def get_or_compute(
        self,
        key: str,
        compute: Callable[[], Awaitable[RouteResult]],
        *,
        cacheable: Callable[[RouteResult], bool] = lambda _: True,
        share_failure: Callable[[Exception], bool] = lambda _: False,
        wait_s: float | None = None,
    ) -> tuple[RouteResult, bool]:
        """As `ResponseCache.get_or_compute`; a value another instance computed counts as a hit.

        `share_failure` and `wait_s` apply to the callers of this instance; across instances a
        caller waits for the instance computing the value as long as that one holds the lock.
        """
        if not self._enabled:
            return await super().get_or_compute(
                key, compute, cacheable=cacheable, share_failure=share_failure, wait_s=wait_s
            )
        from_fleet = False

        async def through_redis() -> RouteResult:
            nonlocal from_fleet
            value, left_s = await self._fleet_get_or_compute(key, compute, cacheable)
            from_fleet = left_s is not None
            if left_s is not None and cacheable(value):  # kept here no longer than Redis keeps it
                self.put(key, value, ttl_s=left_s)
            return value

        def computed_here_and_cacheable(value: RouteResult) -> bool:  # a fleet value was stored above
            return not from_fleet and cacheable(value)

        value, hit = await super().get_or_compute(
            key, through_redis, cacheable=computed_here_and_cacheable, share_failure=share_failure, wait_s=wait_s
        )
        if from_fleet and not hit:
            self._misses -= 1
            self._hits += 1
            return value, True
        return value, hit

    async def _fleet_get_or_compute(
        self, key: str, compute: Callable[[], Awaitable[RouteResult]], cacheable: Callable[[RouteResult], bool]
    ) -> tuple[RouteResult, float | None]:
        """The Redis tier: a stored value with the seconds it has left there, or one computed once across
        the fleet (with None)."""
        redis = self._store.redis
        entry, lock = self._store.key(f"cache:{ANSWER_GENERATION}:{key}"), self._store.key(f"cache_lock:{key}")
        token = uuid.uuid4().hex
        while True:
            found, _ = await self._read_fleet(entry, lock)
            if found is not None:
                return found
            if await redis.set(lock, token, nx=True, px=self._lease_ms):
                break
            found = await self._await_holder(entry, lock)
            if found is not None:
                return found
        # The renewal runs beside `compute` as a plain task, so `compute`'s errors reach the caller unwrapped.
        renewal = asyncio.get_running_loop().create_task(self._renew(lock, token))
        try:
            value = await compute()
            if cacheable(value):
                await self._put_fleet(entry, value)
            return value, None
        finally:
            renewal.cancel()
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._lease(keys=(lock,), args=(token, "0"))

    async def _put_fleet(self, entry: str, value: RouteResult) -> None:
        """Store `value` for the fleet (money as exact Decimal strings); a failure only costs later hits."""
        text = json.dumps(value.model_dump(), default=str, separators=(",", ":"))
        try:
            await self._store.redis.set(entry, text, px=max(1, int(self._ttl_s * 1000)))
        except Exception as exc:  # the answer is paid for and returned regardless
            log.warning("could not store a response in the shared cache: %s", exc)

    async def _await_holder(self, entry: str, lock: str) -> tuple[RouteResult, float] | None:
        """Wait while another instance holds the lock: its stored result with the seconds it has left, or
        None once the lock is gone."""
        delay = self._poll_s
        while True:
            await anyio.sleep(delay)
            delay = min(delay * 1.5, 0.25)
            found, held = await self._read_fleet(entry, lock)
            if found is not None:
                return found
            if not held:
                return None

    async def _read_fleet(self, entry: str, lock: str) -> tuple[tuple[RouteResult, float] | None, bool]:
        """The stored value with the seconds it has left in Redis (or None), and whether the lock is held:
        one atomic round trip, so the lifetime is the value's own."""
        text, left_ms, held = cast(tuple[str | None, int, int], await self._read(keys=(entry, lock)))
        if text is None:
            return None, bool(held)
        left_s = self._ttl_s if left_ms < 0 else left_ms / 1000  # -1: stored without an expiry
        return (RouteResult.model_validate_json(text), left_s), bool(held)

    async def _renew(self, lock: str, token: str) -> None:
        """Extend the lease every third of it while the compute runs (a missed renewal is retried)."""
        while True:
            await anyio.sleep(self._lease_ms / 3000)
            try:
                await self._lease(keys=(lock,), args=(token, str(self._lease_ms)))
            except Exception as exc:
                log.warning("could not renew a shared cache lease: %s", exc)
