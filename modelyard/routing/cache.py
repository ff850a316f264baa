"""Exact-match response cache: canonical request keys, TTL + LRU storage, single-flight computes.

DESIGN §3 "Cache": a request is cached on the sha256 of its canonical JSON; `auto` mode caches only
deterministic requests (temperature 0 or a seed), `on` caches anything, `off` nothing; identical
requests in flight share one upstream call. This module is a leaf: it knows nothing of OpenRouter,
MCP or the router, and works on any value type.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, Literal, TypeAlias, TypeVar

import anyio
import pydantic_core

__all__ = [
    "CacheMode",
    "CacheStats",
    "CoalescedFailure",
    "ResponseCache",
    "cache_allowed",
    "canonical_key",
    "is_deterministic",
]

V = TypeVar("V")

CacheMode: TypeAlias = Literal["auto", "on", "off"]

_ATOMS = frozenset({str, int, bool, type(None)})
_STR_ONLY = frozenset({str})


def canonical_key(payload: Mapping[str, Any]) -> str:
    """Return the sha256 hex digest of the canonical JSON form of `payload`.

    The canonical form has sorted keys, compact separators and raw (non-ASCII-escaped) text.
    `Decimal` is encoded as its `str`, tuples as lists, and integral floats as integers, so
    `0`, `0.0` and `-0.0` (and `1` and `1.0`) give the same key.

    Args:
        payload: The request to key; nested mappings must have `str` keys.

    Returns:
        64 lowercase hex characters.

    Raises:
        TypeError: A value is not JSON-like (e.g. a set, bytes, an object) or a key is not a `str`.
        ValueError: A float is NaN or infinite, or text holds a lone surrogate (no UTF-8 form).
    """
    exponents: list[float] = []
    normal = _normalise(payload, exponents)  # sorted keys and plain types: compact JSON is then canonical
    text = None if exponents else _fast_json(normal)
    if text is None:  # json's own text, and json's own errors (a lone surrogate, nesting past the recursion limit)
        text = json.dumps(normal, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    return hashlib.sha256(text).hexdigest()


def _fast_json(normal: Any) -> bytes | None:
    """`normal` as json writes it, but 3-4x faster on long text (the same text: a test pins it), or None
    where pydantic_core refuses it (a lone surrogate; nesting past 255 levels)."""
    try:
        return pydantic_core.to_json(normal)
    except pydantic_core.PydanticSerializationError:
        return None


def _normalise(value: Any, exponents: list[float]) -> Any:
    """Rewrite `value` into plain JSON types with sorted keys, canonicalising floats and Decimals; the
    floats whose text has an exponent are added to `exponents`."""
    kind = type(value)  # exact-type checks first: isinstance against an ABC is slow
    if kind in _ATOMS:
        return value
    if kind is float or isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"canonical_key cannot encode {value!r}: JSON has no NaN or infinity")
        if value.is_integer():
            return int(value)
        if "e" in float.__repr__(value):
            exponents.append(value)
        return float(value)
    if kind is dict or isinstance(value, Mapping):  # dict first: the common case
        if _STR_ONLY.issuperset(map(type, value)):
            items = sorted(value.items())  # a dict's keys differ, so the values are never compared
        else:  # StrEnum keys too: their plain text, as json writes them
            items = sorted([(_key(k), v) for k, v in value.items()], key=_by_key)
        # Atoms (most values) kept without a call.
        return {k: v if type(v) in _ATOMS else _normalise(v, exponents) for k, v in items}
    if kind is list or kind is tuple:
        return [v if type(v) in _ATOMS else _normalise(v, exponents) for v in value]
    if isinstance(value, list | tuple):
        return [_normalise(v, exponents) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str):  # subclasses such as StrEnum: their plain text
        return str.__str__(value)
    if isinstance(value, int):  # subclasses such as IntEnum: their plain number
        return int.__int__(value)
    raise TypeError(f"canonical_key cannot encode a value of type {kind.__name__}")


async def _wait_for(flight: _Flight[Any], deadline: float | None) -> None:
    """Wait for `flight` to end, or raise `CoalescedFailure(TimeoutError)` at `deadline`."""
    if deadline is None:
        await flight.done.wait()
        return
    with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
        await flight.done.wait()
    if not flight.done.is_set():
        raise CoalescedFailure(TimeoutError("gave up waiting for an identical request's answer"))


def _by_key(item: tuple[str, Any]) -> str:
    return item[0]


def _key(key: object) -> str:
    """A mapping key as plain text; it must be a `str` so that `{1: x}` and `{"1": x}` never collide."""
    if not isinstance(key, str):
        raise TypeError(f"canonical_key needs str mapping keys, got {type(key).__name__}")
    return str.__str__(key)


def is_deterministic(temperature: float | None, seed: int | None) -> bool:
    """Whether a request should give the same answer twice: temperature 0 or a fixed seed.

    `temperature=None` means the model's default, which samples, so it is not deterministic.
    """
    return seed is not None or (temperature is not None and temperature == 0)


def cache_allowed(mode: CacheMode, *, temperature: float | None, seed: int | None) -> bool:
    """Whether a request may be served from, and stored in, the cache.

    Args:
        mode: `auto` caches deterministic requests only, `on` caches everything, `off` nothing.
        temperature: The request's temperature, `None` for the model default (sampled).
        seed: The request's seed, `None` when not given.

    Raises:
        ValueError: `mode` is not one of the three modes.
    """
    if mode == "auto":
        return is_deterministic(temperature, seed)
    if mode == "on":
        return True
    if mode == "off":
        return False
    raise ValueError(f"unknown cache mode {mode!r}: expected 'auto', 'on' or 'off'")


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a `ResponseCache`'s counters (lifetime totals, except `size`)."""

    hits: int
    """Lookups answered from a stored entry."""
    misses: int
    """Lookups that found nothing; in `get_or_compute`, each one ran `compute`."""
    coalesced: int
    """`get_or_compute` calls answered by waiting on an identical in-flight compute."""
    evictions: int
    """Live entries dropped to keep within `max_entries`."""
    expirations: int
    """Entries dropped because their TTL had passed."""
    size: int
    """Entries held now (some may have expired but not yet been dropped)."""


def _always(_: object) -> bool:
    return True


def _never(_: object) -> bool:
    return False


class CoalescedFailure(Exception):
    """A caller that waited for another's compute gets no value: `error` is that compute's failure
    (one `share_failure` accepted), or a `TimeoutError` when the caller stopped waiting at `wait_s`."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _Flight(Generic[V]):
    """One in-flight compute: waiters block on `done`; `result` is set only if it succeeded, `error`
    only if it failed in a way its waiters share."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: tuple[V] | None = None
        self.error: Exception | None = None


class ResponseCache(Generic[V]):
    """An in-memory TTL + LRU cache with single-flight `get_or_compute`.

    Every operation is O(1). Not thread-safe: use it from one event loop.
    """

    def __init__(self, *, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        """Create an empty cache.

        Args:
            max_entries: Most entries held; the least recently used goes first. 0 disables storing.
            ttl_s: Seconds an entry lives after it is stored. 0 disables storing.
            clock: Monotonic seconds; injected so tests control expiry.

        Raises:
            ValueError: `max_entries` or `ttl_s` is negative.
        """
        if max_entries < 0 or ttl_s < 0:
            raise ValueError(f"max_entries and ttl_s must be >= 0, got {max_entries} and {ttl_s}")
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._enabled = max_entries > 0 and ttl_s > 0
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._flights: dict[str, _Flight[V]] = {}
        self._hits = self._misses = self._coalesced = self._evictions = self._expirations = 0

    def get(self, key: str) -> V | None:
        """Return the live value stored under `key`, or `None` on a miss or an expired entry."""
        entry = self._lookup(key)
        if entry is None:
            self._misses += 1
            return None
        self._hits += 1
        return entry[1]

    def put(self, key: str, value: V, *, ttl_s: float | None = None) -> None:
        """Store `value` under `key` as the most recently used entry, evicting beyond `max_entries`.

        Args:
            key: The cache key.
            value: The value to store.
            ttl_s: Seconds this entry lives, capped at the cache's TTL (its default): a value that was
                fresh elsewhere for part of its life keeps only what is left of it.
        """
        if not self._enabled:
            return
        lifetime = self._ttl_s if ttl_s is None else min(ttl_s, self._ttl_s)
        entries = self._entries
        if lifetime <= 0:  # already stale: nothing to keep, not even an older value
            entries.pop(key, None)
            return
        now = self._clock()
        entries[key] = (now + lifetime, value)
        entries.move_to_end(key)
        while len(entries) > self._max_entries:
            expires_at, _ = entries.popitem(last=False)[1]
            if now >= expires_at:
                self._expirations += 1
            else:
                self._evictions += 1

    def clear(self) -> None:
        """Drop every stored entry; counters and in-flight computes are left alone."""
        self._entries.clear()

    async def get_or_compute(
        self,
        key: str,
        compute: Callable[[], Awaitable[V]],
        *,
        cacheable: Callable[[V], bool] = _always,
        share_failure: Callable[[Exception], bool] = _never,
        wait_s: float | None = None,
    ) -> tuple[V, bool]:
        """Return the value for `key`, computing it at most once at a time.

        While one caller (the leader) computes `key`, other callers wait and receive its value
        (counted as coalesced), whether or not it is cacheable. If the leader's compute raises an
        error `share_failure` accepts, its waiters get that error too (so N identical requests to a
        failing upstream fail once, together, not one after another). If it raises another error or
        is cancelled, the waiters retry: one becomes the new leader.

        Args:
            key: The cache key, usually from `canonical_key`.
            compute: Produces the value on a miss.
            cacheable: Whether a computed value may be stored.
            share_failure: Whether a compute's error is the answer for its waiters as well.
            wait_s: The longest this caller waits for another's compute (None: no limit).

        Returns:
            `(value, hit)`, where `hit` is False only for the caller that ran `compute`.

        Raises:
            CoalescedFailure: this caller waited for another's compute, which failed with an error
                `share_failure` accepts, or did not finish within `wait_s`.
            Exception: Whatever `compute` raised, to the caller that ran it.
        """
        deadline = None if wait_s is None else anyio.current_time() + wait_s
        while True:
            entry = self._lookup(key)
            if entry is not None:
                self._hits += 1
                return entry[1], True
            flight = self._flights.get(key)
            if flight is None:
                break
            await _wait_for(flight, deadline)
            if flight.result is not None:
                self._coalesced += 1
                return flight.result[0], True
            if flight.error is not None:
                raise CoalescedFailure(flight.error)
        # No checkpoint since the lookup above, so no other task can have become leader meanwhile.
        self._misses += 1
        return await self._lead(key, compute, cacheable, share_failure), False

    async def _lead(
        self,
        key: str,
        compute: Callable[[], Awaitable[V]],
        cacheable: Callable[[V], bool],
        share_failure: Callable[[Exception], bool],
    ) -> V:
        """Run `compute` as the single flight for `key`, always releasing the waiters."""
        flight: _Flight[V] = _Flight()
        self._flights[key] = flight
        try:
            try:
                value = await compute()
            except Exception as exc:
                if share_failure(exc):
                    flight.error = exc
                raise
            store = cacheable(value)
            flight.result = (value,)
            if store:
                self.put(key, value)
            return value
        finally:
            del self._flights[key]
            flight.done.set()

    @property
    def stats(self) -> CacheStats:
        """The counters so far and the current number of entries."""
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            coalesced=self._coalesced,
            evictions=self._evictions,
            expirations=self._expirations,
            size=len(self._entries),
        )

    def _lookup(self, key: str) -> tuple[float, V] | None:
        """The live entry for `key`, marked most recently used; expired entries are dropped."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            del self._entries[key]
            self._expirations += 1
            return None
        self._entries.move_to_end(key)
        return entry
