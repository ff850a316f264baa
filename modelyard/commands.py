"""The terminal commands `models`, `metrics` and `budget` (`run` is in `modelyard.run_command`, `doctor` in
`modelyard.doctor`), and the text they, `run`, `doctor` and the demo print money, tables and times with.

Each is an async function of `(settings, args)` that opens the same `AppContext` the server uses and
prints readable text to stdout. A failure the user can fix raises a `ModelyardError` (the CLI prints it on
stderr and exits 1).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from modelyard.error_text import dollars
from modelyard.errors import ConfigurationError
from modelyard.routing.budget import BudgetRaiseRefusedError
from modelyard.routing.catalog import CatalogEntry
from modelyard.routing.limits import LIMIT_NAMES, LimitSource, limit_sources
from modelyard.routing.metrics import BudgetStatus, Metrics, current_budget
from modelyard.routing.pricing import per_million
from modelyard.routing.request import CAPABILITIES
from modelyard.server.context import AppContext, open_app_context
from modelyard.settings import Settings

__all__ = [
    "budget",
    "budget_lines",
    "metrics",
    "metrics_lines",
    "model_table",
    "models",
    "ms",
    "origin",
    "table",
    "usd",
]

NO_KEY = (
    "No OpenRouter API key. Set OPENROUTER_API_KEY, or try it offline: start `modelyard sandbox` in another "
    "terminal, then set OPENROUTER_BASE_URL=http://127.0.0.1:8399/api/v1 and OPENROUTER_API_KEY=sk-or-v1-sandbox."
)
_CLI = "the CLI (`modelyard budget`)"
"""Who tightens or resets the budget from the terminal, as the log says it."""


# ---------------------------------------------------------------------------------------------- formatting


def usd(value: Decimal | None) -> str:
    """`$0.00000175`, `$0`, or `unknown` (an unknown cost is never shown as 0); `error_text.dollars` otherwise,
    the one way modelyard writes money (a limit of 1e-30 is not `$0`)."""
    if value is None:
        return "unknown"
    return dollars(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: frozenset[int] = frozenset()) -> str:
    """An aligned text table; the columns whose index is in `right` are right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def ms(value: float | None) -> str:
    """Milliseconds as the tables show them: `1,234.5`, or `-` when unknown."""
    return "-" if value is None else f"{value:,.1f}"


# ---------------------------------------------------------------------------------------------- models


def _quality(entry: CatalogEntry) -> str:
    marker = "~" if entry.quality_source == "estimate" else ""
    return f"{marker}{entry.quality:.1f}"


def _price(entry: CatalogEntry, value: Decimal) -> str:
    if entry.info.pricing.is_dynamic:
        return "dynamic"
    return f"{per_million(value).normalize():f}"


def _model_row(entry: CatalogEntry) -> list[str]:
    info = entry.info
    context = info.capabilities.context_length
    return [
        info.id,
        entry.tier,
        _quality(entry),
        _price(entry, info.pricing.prompt),
        _price(entry, info.pricing.completion),
        f"{context:,}" if context else "-",
        ",".join(info.capabilities.names()) or "-",
    ]


_SORTS: dict[str, Callable[[CatalogEntry], Any]] = {
    "quality": lambda e: (-e.quality, e.id),
    "price": lambda e: (e.info.pricing.is_dynamic, e.info.pricing.prompt + e.info.pricing.completion, e.id),
    "context": lambda e: (-(e.info.capabilities.context_length or 0), e.id),
    "name": lambda e: e.id,
}


def _selected(entries: Sequence[CatalogEntry], args: argparse.Namespace) -> list[CatalogEntry]:
    unknown = sorted(set(args.capabilities) - set(CAPABILITIES))
    if unknown:
        raise ConfigurationError(
            f"Unknown capability {', '.join(unknown)}; expected one of: {', '.join(CAPABILITIES)}."
        )
    search = (args.search or "").lower()
    chosen = [
        e
        for e in entries
        if all(getattr(e.info.capabilities, c) for c in args.capabilities)
        and (args.tier is None or e.tier == args.tier)
        and search in f"{e.info.id} {e.info.name}".lower()
    ]
    return sorted(chosen, key=_SORTS[args.sort])


async def models(settings: Settings, args: argparse.Namespace) -> None:
    """The catalog as a table; it works offline from the copy stored at the last successful fetch."""
    async with open_app_context(settings) as app:
        catalog = await app.router.catalogs.current()
        stale = app.router.catalogs.last_error
    chosen = _selected(list(catalog.entries.values()), args)
    shown = chosen[: max(0, args.limit)]
    headers = ["id", "tier", "quality", "$/1M in", "$/1M out", "context", "capabilities"]
    print(table(headers, [_model_row(e) for e in shown], right=frozenset({2, 3, 4, 5})))
    age = catalog.age_s(time.time())
    print(f"\n{len(shown)} of {len(chosen)} matching models ({len(catalog)} in the catalog, fetched {age:,.0f} s ago).")
    print("~ marks an estimated quality (no benchmark score); prices are USD per 1M tokens.")
    if stale:
        print(f"(offline: showing the stored catalog; the refresh failed: {stale})")


# ---------------------------------------------------------------------------------------------- metrics


def metrics_lines(m: Metrics) -> list[str]:
    """A heading, then requests, cache, spend, tokens and latency, one line each (and the spooled rows, if any)."""
    average = usd(m.average_cost_per_request) if m.average_cost_per_request is not None else "-"
    rate = f"{m.error_rate:.0%}"
    spooled = [f"  spooled       {m.spooled_rows} row(s) the store has not taken yet"] if m.spooled_rows else []
    return [
        f"Metrics ({m.window})",
        f"  requests      {m.total_requests} (ok {m.successes}, failed {m.failures}, refused {m.refused})",
        f"  cache         {m.cache_hits} hits, saved {usd(m.cache_savings)}",
        f"  spend         {usd(m.total_cost)} total, {average} average per request",
        f"  tokens        {m.tokens.total:,} (prompt {m.tokens.prompt:,}, completion {m.tokens.completion:,}, "
        f"cached {m.tokens.cached:,}, reasoning {m.tokens.reasoning:,})",
        f"  latency       p50 {ms(m.p50_latency_ms)} ms, p95 {ms(m.p95_latency_ms)} ms, error rate {rate}",
        *spooled,
    ]


def model_table(m: Metrics) -> str:
    """Per model: calls, p50/p95 latency, error rate, cost and breaker state."""
    rows = [
        [
            x.model,
            str(x.calls),
            ms(x.p50_latency_ms),
            ms(x.p95_latency_ms),
            f"{x.error_rate:.0%}",
            usd(x.cost),
            x.breaker or "-",
        ]
        for x in m.by_model
    ]
    headers = ["model", "calls", "p50 ms", "p95 ms", "errors", "cost", "breaker"]
    return table(headers, rows, right=frozenset({1, 2, 3, 4, 5}))


async def metrics(settings: Settings, args: argparse.Namespace) -> None:
    """Requests, cache savings, spend and per-model latency from the ledger."""
    async with open_app_context(settings) as app:
        result = await app.router.metrics(args.window)
    print("\n".join(metrics_lines(result)))
    if result.budget is not None:
        print("  budget        " + "\n                ".join(budget_lines(result.budget)))
    print()
    print(model_table(result) if result.by_model else "No upstream calls in this window.")


# ---------------------------------------------------------------------------------------------- budget


def _limit(value: Decimal | None) -> str:
    return "no limit" if value is None else usd(value)


def origin(source: LimitSource) -> str:
    """Where a limit in force comes from: `configured`, or `set at run time on 2026-08-20 10:00 UTC; configured
    $10`; nothing when there is no limit."""
    if source.source in ("none", "config"):
        return "configured" if source.source == "config" else ""
    when = f" on {source.tightened_at:%Y-%m-%d %H:%M} UTC" if source.tightened_at is not None else ""
    return f"set at run time{when}; configured {_limit(source.configured)}"


def budget_lines(status: BudgetStatus) -> list[str]:
    """Limits (each with where it comes from), spend, held reservations and what remains."""
    lines = [
        f"daily        {_limit(status.daily)} (spent today {usd(status.spent_today)}, "
        f"remaining {_limit(status.remaining_today)})",
        f"monthly      {_limit(status.monthly)} (spent this month {usd(status.spent_month)}, "
        f"remaining {_limit(status.remaining_month)})",
        f"per request  {_limit(status.per_request)}",
    ]
    if status.sources is not None:
        origins = [origin(getattr(status.sources, name)) for name in LIMIT_NAMES]
        lines = [f"{line}, {where}" if where else line for line, where in zip(lines, origins, strict=True)]
    return [*lines, f"reserved     {usd(status.reserved)} held by requests in flight"]


async def _tighten(app: AppContext, wanted: dict[str, Decimal | None]) -> None:
    """Lower the given limits, refusing (with what to do instead) any value that would raise one.

    Raises:
        BudgetRaiseRefusedError: a value above the limit in force, or below zero.
    """
    budgets = app.router.budgets
    sources = limit_sources(budgets.configured, await budgets.tightenings())
    for name, value in wanted.items():
        source: LimitSource = getattr(sources, name)
        limit = source.in_force
        if value is not None and limit is not None and value > limit:
            flag = "--" + name.replace("_", "-")
            raise BudgetRaiseRefusedError(
                f"Refused: {flag} {usd(value)} would raise the {name} limit, which is {usd(limit)} "
                f"({origin(source)}).\n{_raise_hint(name, source)}"
            )
    await budgets.tighten(daily=wanted["daily"], monthly=wanted["monthly"], per_request=wanted["per_request"], by=_CLI)


def _raise_hint(name: str, source: LimitSource) -> str:
    """How the operator lifts the `name` limit: `--reset` for one set at run time, the config for its own."""
    variable = f"MODELYARD_BUDGET__{name.upper()}"
    reset = (
        "`modelyard budget --reset` drops the limits set at run time, back to the configured ones "
        f"({variable}: {_limit(source.configured)})"
    )
    config = f"raising a configured limit needs the operator's config ({variable}, or [budget] in the TOML file)"
    hints = {"run-time": [reset], "both": [reset, config]}.get(source.source, [config])
    return f"The CLI only tightens limits too: {'; '.join(hints)}."


async def budget(settings: Settings, args: argparse.Namespace) -> None:
    """Show the budget; `--reset` drops run-time tightenings; `--daily/--monthly/--per-request` tighten."""
    wanted = {"daily": args.daily, "monthly": args.monthly, "per_request": args.per_request}
    async with open_app_context(settings) as app:
        if args.reset:
            await app.router.budgets.clear_tightenings(by=_CLI)
            print("Cleared the limits tightened at run time; the configured limits apply again.")
        if any(value is not None for value in wanted.values()):
            await _tighten(app, wanted)
            print("Tightened: " + ", ".join(f"{k} {usd(v)}" for k, v in wanted.items() if v is not None))
        status = await current_budget(app.router.budgets)
    print("Budget (USD)")
    print("\n".join("  " + line for line in budget_lines(status)))
    if status.sources is not None and any(
        getattr(status.sources, name).source in ("run-time", "both") for name in LIMIT_NAMES
    ):
        print("Limits set at run time hold until `modelyard budget --reset` (set_budget can only lower them).")
