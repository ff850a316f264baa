"""`modelyard doctor`: the upstream, the key, the account's credit, the catalog, the store and the budget,
one ✓/✗ line each (the credit's only when the key may read it), and a ! warning when ledger rows wait in
the store's spool.

Every check runs whatever failed before it: a store that cannot be opened is reported on its own line,
and the other checks run on a stand-in store kept in memory. The upstream line is decided by a request
(`/key`, or `/models` without a key), not by the URL alone. Exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from modelyard.commands import NO_KEY, origin, usd
from modelyard.errors import (
    AuthenticationError,
    ForbiddenError,
    InsufficientCreditsError,
    ModelyardError,
    RateLimitError,
    UpstreamConnectError,
    UpstreamNotFoundError,
    UpstreamTimeoutError,
)
from modelyard.openrouter.schemas import KeyInfo
from modelyard.routing.limits import LIMIT_NAMES, LimitSources, blocking_limits, least_request_cost
from modelyard.routing.metrics import BudgetStatus, current_budget
from modelyard.server.context import AppContext, open_app_context
from modelyard.settings import Settings
from modelyard.store import spool_location
from modelyard.store.base import MEMORY, BudgetLimits
from modelyard.store.spool import Spool

if TYPE_CHECKING:
    from modelyard.routing.catalog import Catalog

__all__ = ["doctor"]

_ANSWERED = (AuthenticationError, InsufficientCreditsError, ForbiddenError, RateLimitError)
"""Failures that show the upstream answered as OpenRouter does: the key or the account is the problem."""
_SILENT = (UpstreamConnectError, UpstreamTimeoutError)
"""Failures that show nothing answered at all."""
_ADD_CREDIT = "https://openrouter.ai/settings/credits"
REQUEST_TIMEOUT_S = 10.0
"""The longest `doctor` waits on one upstream read: `/key` and `/models` answer in about a second, and an
upstream that accepts and never answers must not hold the verdict for `request_timeout_s` (120 s) per call."""


class _Checks:
    """Prints ✓/✗ lines and keeps the problems behind the ✗s."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def ok(self, label: str, text: str) -> None:
        print(f"  ✓ {label:<11} {text}", flush=True)

    def bad(self, label: str, text: str) -> None:
        print(f"  ✗ {label:<11} {text}", flush=True)
        self.problems.append(f"{label}: {text}")

    def warn(self, label: str, text: str) -> None:
        """Something to know that stops no request (not a problem: the verdict does not count it)."""
        print(f"  ! {label:<11} {text}", flush=True)


@dataclass(frozen=True, slots=True)
class _KeyAnswer:
    """What `/key` said: the key's record, or why there is none (no key at all when both are None)."""

    info: KeyInfo | None = None
    error: ModelyardError | None = None
    elapsed_ms: float = 0.0


@asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[tuple[AppContext, str | None]]:
    """The app context, and why the configured store could not be opened (None when it was)."""
    async with AsyncExitStack() as stack:
        try:
            app = await stack.enter_async_context(open_app_context(settings))
            failure = None
        except ModelyardError as exc:
            failure = str(exc)
            stand_in = settings.model_copy(update={"store": f"sqlite:///{MEMORY}"})
            app = await stack.enter_async_context(open_app_context(stand_in))  # fails again unless it was the store
        yield app, failure


async def _ask_key(app: AppContext) -> _KeyAnswer:
    if not app.client.has_key:
        return _KeyAnswer()
    began = time.perf_counter()
    try:
        info = await app.client.key_info()
    except ModelyardError as exc:
        return _KeyAnswer(error=exc)
    return _KeyAnswer(info=info, elapsed_ms=(time.perf_counter() - began) * 1000)


async def _upstream_failure(app: AppContext, key: _KeyAnswer) -> ModelyardError | None:
    """Why the upstream is not answering as OpenRouter does, or None when it is (`/models` asks without a key)."""
    if key.info is not None or isinstance(key.error, _ANSWERED):
        return None
    if key.error is not None:
        return key.error
    try:
        await app.client.list_models()
    except ModelyardError as exc:
        return exc
    return None


def _check_upstream(checks: _Checks, base: str, failure: ModelyardError | None) -> None:
    local = any(host in base for host in ("127.0.0.1", "localhost", "[::1]"))
    where = f"{base} ({'sandbox / local' if local else 'live OpenRouter'})"
    if failure is None:
        checks.ok("upstream", where)
    elif isinstance(failure, _SILENT):
        checks.bad("upstream", f"{where} does not answer: {failure}")
    else:
        checks.bad("upstream", f"{where} does not answer as OpenRouter does: {failure}")


def _credit(key: KeyInfo) -> str:
    """The key's own limit, or that it has none: then only the account's credit bounds it (not "unlimited")."""
    if key.limit is None:
        return f"no per-key limit (spent {usd(key.usage)} with this key; the account's credit bounds it)"
    reset = f" (resets {key.limit_reset})" if key.limit_reset else ""
    return f"per-key limit {usd(key.limit)}{reset}, {usd(key.limit_remaining)} left"


async def _check_credit(app: AppContext, checks: _Checks, key: _KeyAnswer) -> None:
    """The account's credit, when the key may read it: since 2026 only a management key may (an ordinary
    key's 403, or a 404, leaves the line out: nothing is wrong with the setup)."""
    if key.info is None:
        return  # no key, or /key failed: the key line says so
    try:
        credits = await app.client.credits()
    except (ForbiddenError, UpstreamNotFoundError):
        return
    except ModelyardError as exc:
        checks.bad("credit", f"/credits failed: {exc}")
        return
    if (left := credits.remaining) is None:
        return
    text = f"account credit {usd(left)} left of {usd(credits.total_credits)}"
    if left > 0:
        checks.ok("credit", text)
    else:
        checks.bad("credit", f"{text}: add credit at {_ADD_CREDIT}")


def _check_key(checks: _Checks, key: _KeyAnswer) -> None:
    if key.error is not None:
        checks.bad("key", f"present, but /key failed: {key.error}")
    elif key.info is None:
        checks.bad("key", NO_KEY)
    else:
        checks.ok("key", f"present and valid ({key.info.label}); {_credit(key.info)}")
        checks.ok("round trip", f"{key.elapsed_ms:,.1f} ms to /key")


async def _check_catalog(app: AppContext, checks: _Checks) -> Catalog | None:
    try:
        catalog = await app.router.catalogs.current()
    except ModelyardError as exc:
        checks.bad("catalog", str(exc))
        return None
    age = f"{len(catalog)} models, fetched {catalog.age_s(time.time()):,.0f} s ago"
    if app.router.catalogs.last_error:
        checks.bad("catalog", f"{age} (stored copy; refresh failed: {app.router.catalogs.last_error})")
    else:
        checks.ok("catalog", age)
    return catalog


async def _check_store(app: AppContext, checks: _Checks, failure: str | None) -> None:
    if failure is not None:
        checks.bad("store", failure)
    elif await app.store.healthy():
        checks.ok("store", f"{app.store!r} answers")
    else:
        checks.bad("store", f"{app.store!r} does not answer")


async def _check_spool(settings: Settings, checks: _Checks) -> None:
    """Rows of answers already paid for that the store has not taken yet (opening it replayed what it could)."""
    try:
        path = spool_location(settings.store)
    except ModelyardError:
        return  # the store line says what is wrong with its URL
    if path is None or not path.exists():
        return
    pending = await Spool(path).count()
    if pending:
        checks.warn(
            "spool",
            f"{pending} ledger row(s) of answers already paid for wait in {path}: the store did not take them; "
            "they are replayed into it once it does (`modelyard serve` keeps trying), and until then no request "
            "is sent",
        )


def _limit(value: Decimal | None) -> str:
    return "no limit" if value is None else usd(value)


def _limits(limits: BudgetLimits) -> str:
    return f"daily {_limit(limits.daily)}, monthly {_limit(limits.monthly)}, per request {_limit(limits.per_request)}"


def _sourced(sources: LimitSources) -> str:
    """`daily $0.5 (set at run time on 2026-08-20 10:00 UTC; configured $10), monthly no limit, per request $1
    (configured)`."""
    parts = []
    for name in LIMIT_NAMES:
        item = getattr(sources, name)
        where = origin(item)
        parts.append(f"{name.replace('_', ' ')} {_limit(item.in_force)}" + (f" ({where})" if where else ""))
    return ", ".join(parts)


def _free_models_still_answer(catalog: Catalog | None, status: BudgetStatus) -> str:
    """For a limit that keeps out every paid model on purpose (only free ones wanted): the free models that
    still answer when named, so the operator can tell a deliberate limit from a mistake. None do once today's
    or this month's spend is past its limit: even a free model's $0 hold does not fit (spent + 0 > limit)."""
    spent_past = any(
        limit is not None and spent > limit
        for limit, spent in ((status.daily, status.spent_today), (status.monthly, status.spent_month))
    )
    free = [] if catalog is None or spent_past else [i for i in catalog.entries if i.endswith(":free")][:2]
    if not free:
        return ""
    named = ", ".join(free)
    return f" Free models named explicitly ({named}) still answer: if that is what the limit is for, all is well."


async def _check_budget(app: AppContext, checks: _Checks, store_failure: str | None, catalog: Catalog | None) -> None:
    """The limits and where each comes from; ✗ for one under which no paid model can answer (`blocking_limits`)."""
    try:
        if store_failure is not None:  # the stand-in store holds no spend and no tightening
            unknown = "spend and run-time tightenings unknown: the store could not be opened"
            checks.bad("budget", f"{_limits(await app.router.budgets.limits())} (as configured); {unknown}")
            return
        status = await current_budget(app.router.budgets)
    except ModelyardError as exc:
        checks.bad("budget", f"could not be read: {exc}")
        return
    assert status.sources is not None
    router = app.router
    least = None if catalog is None else least_request_cost(catalog, router.defaults, now=router.clock.now())
    text = f"{_sourced(status.sources)}; spent today {usd(status.spent_today)}"
    if blocked := blocking_limits(status.sources, least):
        problems = " ".join(p[0].upper() + p[1:] for p in blocked)
        checks.bad("budget", f"{text}. {problems}{_free_models_still_answer(catalog, status)}")
    else:
        checks.ok("budget", text)


async def doctor(settings: Settings, args: argparse.Namespace) -> None:
    """What `test_connection` reports, as ✓/✗ lines and a verdict; exits 1 when something is wrong."""
    print("modelyard doctor", flush=True)
    checks = _Checks()
    timeout_s = min(settings.request_timeout_s, REQUEST_TIMEOUT_S)
    settings = settings.model_copy(update={"request_timeout_s": timeout_s})
    async with _opened(settings) as (app, store_failure):
        key = await _ask_key(app)
        _check_upstream(checks, settings.openrouter_base_url, await _upstream_failure(app, key))
        _check_key(checks, key)
        await _check_credit(app, checks, key)
        catalog = await _check_catalog(app, checks)
        await _check_store(app, checks, store_failure)
        await _check_spool(settings, checks)
        await _check_budget(app, checks, store_failure, catalog)
    if checks.problems:
        print(f"\n{len(checks.problems)} problem(s) found.")
        sys.exit(1)
    print("\nAll checks passed.")
