"""The shared store: one Redis, used by every modelyard instance of a fleet (DESIGN §6).

Selected by `MODELYARD_STORE=redis://host:port/db` (or `rediss://` for TLS); an optional `prefix`
query parameter (default `modelyard`) namespaces the keys, so several fleets can share one Redis.
Redis is the source of truth: spend totals, holds, the ledger and values outlive every instance.
Run Redis with persistence (`appendonly yes`) when the ledger must survive a Redis restart.

Money. Redis runs Lua 5.1, whose only number type is a double: integers above 2^53 lose digits and
decimal fractions are never exact, and INCRBYFLOAT is a long double with the same problem. So no
amount ever becomes a Lua number. Amounts travel and rest as exact decimal strings
(`format(Decimal, "f")`, e.g. `0.00001255`), and the scripts add, subtract and compare them with a
small arbitrary-precision routine (`redis_scripts.DECIMAL`): both operands are scaled to the larger number of
fraction digits, cut into base-10^7 limbs, and added or subtracted limb by limb with carries. Every
limb is below 10^7 and every intermediate below 2·10^7 + 1, far inside the 2^53 of exact integers a
double holds, so each operation is exact for every finite Decimal of any size or scale — the same
guarantee as SQLite's Decimal TEXT, with no unit to choose and no range to outgrow. A fixed integer
unit was rejected: 10^-15 USD caps exact sums at $9 (2^53 units) and 10^-9 USD cannot hold an upstream
cost such as 1.2345678901234567e-05.

Atomicity. Each state change is one Lua script (EVALSHA, loaded again on NOSCRIPT), and Redis runs
a script with nothing interleaved, across every connection of every instance:
- reserve: purge expired holds, read day/month spend and the held total, check both limits, hold;
- release: drop a hold and subtract it from the held total;
- renew: push the expiry of the live holds of requests still in flight (an expired one is not revived);
- commit: drop the hold, add the ledger row once (HSETNX on its id), index it by time, add its cost
  to the day and month totals.
Scripts validate nothing: every argument is checked in Python first, so no script fails half way.

Keys (one Redis Cluster hash slot through the `{prefix}` tag): `spend:day:YYYY-MM-DD`,
`spend:month:YYYY-MM` (decimal strings); `holds` (sorted set, score = expires_at), `hold_amounts`
(hash), `held` (the live total); `ledger` (hash id -> JSON row), `ledger_ts` (sorted set, score = ts,
member = 16-digit sequence + id, so equal times keep commit order), `ledger_seq`; `kv` (hash).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal, localcontext
from types import TracebackType
from typing import Any, Final, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from modelyard.errors import BudgetExceededError, ConfigurationError, StoreUnavailableError
from modelyard.store import redis_scripts as lua
from modelyard.store.base import BudgetLimits, LedgerRow, Reservation, SpendTotals, new_id

__all__ = ["DEFAULT_PREFIX", "RedisStore"]

DEFAULT_PREFIX: Final = "modelyard"
_EXACT_PREC: Final = 200
_ZERO: Final = Decimal(0)
_ROWS_CHUNK: Final = 1000
_WRITE_GRACE_S: Final = 10.0


class RedisStore:
    """A `Store` in Redis, shared by every instance pointed at the same URL and prefix.

    Creating it opens no connection (the pool connects on first use), so an unreachable Redis shows
    up as `healthy() == False` and as errors from the calls, never at construction.

    Args:
        url: `redis://[user:password@]host:port/db` or `rediss://...`; a `prefix=` query parameter
            overrides `prefix`.
        prefix: the key namespace.
        max_connections: the pool's size; callers beyond it wait for a free connection.

    Raises:
        ConfigurationError: the URL is not a valid Redis URL.
    """

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, max_connections: int = 64) -> None:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = next((value for name, value in query if name == "prefix"), prefix)
        rest = urlencode([(name, value) for name, value in query if name != "prefix"])
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                urlunsplit(parts._replace(query=rest)),
                max_connections=max_connections,
                timeout=30,
                decode_responses=True,
                socket_connect_timeout=5,
                health_check_interval=30,
            )
        except ValueError as exc:
            raise ConfigurationError(f"Invalid Redis store URL: {exc}") from None
        from modelyard.store import redacted

        self.prefix = prefix
        self.redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._where = redacted(urlunsplit(parts._replace(query="")))
        self._closed = False
        scripts = (lua.RESERVE, lua.RELEASE, lua.COMMIT, lua.TOTALS)
        self._reserve, self._release, self._commit, self._totals = (
            self.redis.register_script(lua.DECIMAL + body) for body in scripts
        )
        self._renew = self.redis.register_script(lua.RENEW)

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"

    @property
    def where(self) -> str:
        """The Redis URL without its query, its password masked: fit for logs, and who this fleet's store is."""
        return self._where

    def key(self, name: str) -> str:
        """The full Redis key of `name` in this store's namespace (shared with `routing.shared`)."""
        return f"{{{self.prefix}}}:{name}"

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def reserve(self, amount: Decimal, limits: BudgetLimits, *, now: float, ttl_s: float) -> Reservation:
        """Atomically check that `amount` fits every limit and hold it until `now + ttl_s`.

        Limits are checked in the order per_request, daily, monthly; expired holds are purged on the way.

        Raises:
            BudgetExceededError: naming the limit that refused, what remains of it and `amount`.
            ValueError: `amount` is negative or not finite, or `ttl_s` is not positive.
        """
        if not amount.is_finite() or amount < 0:
            raise ValueError(f"a reservation must be a finite amount >= 0, not {amount}")
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be positive, not {ttl_s}")
        if limits.per_request is not None and amount > limits.per_request:
            raise BudgetExceededError("per_request", limits.per_request, amount)
        day, month = _periods(now)
        reservation = Reservation(id=new_id(), amount=amount, expires_at=now + ttl_s)
        args = (repr(now), reservation.id, _text(amount), repr(reservation.expires_at))
        limit_args = tuple("" if limit is None else _text(limit) for limit in (limits.daily, limits.monthly))
        keys = (*self._holds(), self.key(day), self.key(month))
        with self._answering():
            verdict, spent_day, spent_month, held = await self._reserve(keys=keys, args=(*args, *limit_args))
        if verdict == "ok":
            return reservation
        # Both refuse, the day only for the requests in flight: name the month, which waiting does not lift.
        waiting_lifts_day = verdict == "daily" and _waits_out(limits.daily, spent_day, amount)
        if waiting_lifts_day and not _waits_out(limits.monthly, spent_month, amount):
            verdict = "monthly"
        limit = cast(Decimal, limits.daily if verdict == "daily" else limits.monthly)
        spent = Decimal(spent_day if verdict == "daily" else spent_month)
        raise _refusal(verdict, limit, spent, Decimal(held), amount)

    async def release(self, reservation_id: str) -> None:
        """Free a reservation without recording spend; nothing happens if it is already gone."""
        with self._answering(), anyio.CancelScope(shield=True), anyio.fail_after(_WRITE_GRACE_S):
            await self._release(keys=self._holds(), args=(reservation_id,))

    async def renew(self, reservation_ids: Sequence[str], *, expires_at: float, now: float) -> set[str]:
        """Push the expiry of the live holds among `reservation_ids` to `expires_at` (never earlier) in one
        script; the ids renewed. A hold expired at `now` is not revived."""
        if not reservation_ids:
            return set()
        with self._answering():
            renewed = await self._renew(keys=self._holds()[:1], args=(repr(now), repr(expires_at), *reservation_ids))
        return set(cast(list[str], renewed))

    async def commit(self, reservation_id: str | None, row: LedgerRow) -> None:
        """Atomically drop the reservation (if any, and if still there) and append the ledger row.

        Committing a row whose `id` is already in the ledger adds nothing, so a retried commit
        never counts the same spend twice. A cancelled caller still finishes the write.

        Raises:
            ValueError: `row.cost` or `row.saved` is not finite.
        """
        text = _encode_row(row)
        day, month = _periods(row.ts)
        keys = (*self._holds(), *self._ledger(), self.key(day), self.key(month))
        cost = _text(row.cost) if row.cost else ""
        args = (reservation_id or "", row.id, text, repr(row.ts), cost)
        with self._answering(), anyio.CancelScope(shield=True), anyio.fail_after(_WRITE_GRACE_S):
            await self._commit(keys=keys, args=args)

    async def totals(self, *, now: float) -> SpendTotals:
        """Spend of the UTC day and month of `now`, and the reservations still live at `now`."""
        day, month = _periods(now)
        keys = (*self._holds()[:2], self.key(day), self.key(month))
        with self._answering():
            spent_day, spent_month, held = await self._totals(keys=keys, args=(repr(now),))
        return SpendTotals(spent_today=Decimal(spent_day), spent_month=Decimal(spent_month), reserved=Decimal(held))

    async def rows(self, *, since: float | None = None, limit: int | None = None) -> list[LedgerRow]:
        """Ledger rows with `ts >= since`, oldest first (the newest `limit` when a limit is given)."""
        if limit is not None and limit <= 0:
            return []
        rows_key, index_key, _ = self._ledger()
        lower = "-inf" if since is None else repr(since)
        start, count = (None, None) if limit is None else (0, limit)
        with self._answering():
            members = cast(list[str], await self.redis.zrevrangebyscore(index_key, "+inf", lower, start, count))
            ids = [member.split(":", 1)[1] for member in reversed(members)]
            found: list[LedgerRow] = []
            for first in range(0, len(ids), _ROWS_CHUNK):
                texts = cast(list[str | None], await self.redis.hmget(rows_key, ids[first : first + _ROWS_CHUNK]))
                found.extend(_decode_row(text) for text in texts if text is not None)
        return found

    async def get_value(self, key: str) -> str | None:
        """The value stored under `key`, or None."""
        with self._answering():
            return cast(str | None, await self.redis.hget(self.key("kv"), key))

    async def set_value(self, key: str, value: str) -> None:
        """Store `value` under `key`, replacing any old one."""
        with self._answering():
            await self.redis.hset(self.key("kv"), key, value)

    async def healthy(self) -> bool:
        """True when Redis answers PING (within 5 seconds); False once the store is closed."""
        if self._closed:
            return False
        try:
            with anyio.fail_after(5):
                return bool(await self.redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def aclose(self) -> None:
        """Close the connection pool; calling it again does nothing."""
        if not self._closed:
            self._closed = True
            await self.redis.aclose(close_connection_pool=True)

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """Raise `StoreUnavailableError` for a Redis that does not answer (the call's own errors pass)."""
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(
                f"The Redis store at {self._where} does not answer ({type(exc).__name__}): check that it is "
                "running and reachable from here, or point MODELYARD_STORE elsewhere."
            ) from exc

    def _holds(self) -> tuple[str, str, str]:
        return self.key("holds"), self.key("hold_amounts"), self.key("held")

    def _ledger(self) -> tuple[str, str, str]:
        return self.key("ledger"), self.key("ledger_ts"), self.key("ledger_seq")


def _periods(ts: float) -> tuple[str, str]:
    """The spend keys of the UTC day and the UTC month that `ts` falls in."""
    t = time.gmtime(ts)
    return f"spend:day:{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", f"spend:month:{t.tm_year:04d}-{t.tm_mon:02d}"


def _text(amount: Decimal) -> str:
    """An exact plain decimal string (no exponent) that the Lua arithmetic reads."""
    if not amount.is_finite():
        raise ValueError(f"a ledger amount must be finite, not {amount}")
    return format(amount, "f")


def _waits_out(limit: Decimal | None, spent: str, amount: Decimal) -> bool:
    """`amount` fits `limit` once the requests in flight settle (as the SQLite store's `refusal` reads it)."""
    with localcontext(prec=_EXACT_PREC):
        return limit is None or Decimal(spent) + amount <= limit


def _refusal(budget: str, limit: Decimal, spent: Decimal, held: Decimal, amount: Decimal) -> BudgetExceededError:
    """The same refusal SQLiteStore gives: what remains (never below 0) and why."""
    with localcontext(prec=_EXACT_PREC):
        remaining = max(_ZERO, limit - spent - held)
    return BudgetExceededError.over_limit(budget, amount, limit=limit, spent=spent, held=held, remaining=remaining)


def _encode_row(row: LedgerRow) -> str:
    """The row as JSON, money as exact Decimal strings (`str`, so `0.000020` stays `0.000020`)."""
    data: dict[str, Any] = dataclasses.asdict(row)
    for name in ("cost", "saved"):
        value: Decimal | None = data[name]
        if value is not None:
            _text(value)
            data[name] = str(value)
    return json.dumps(data, default=str, separators=(",", ":"))


def _decode_row(text: str) -> LedgerRow:
    """A `LedgerRow` from its JSON, with its Decimals restored exactly."""
    data: dict[str, Any] = json.loads(text)
    for name in ("cost", "saved"):
        if data[name] is not None:
            data[name] = Decimal(data[name])
    return LedgerRow(**data)
