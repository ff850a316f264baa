"""Usage metrics computed from ledger rows (so they survive restarts), plus live breaker state.

Counting rules:
- every row in the window is a request, except a billed attempt's row (below): status `ok` is a
  success, `error` and `cancelled` are failures, `refused` (stopped before sending, e.g. by a budget)
  is counted apart;
- a billed attempt's row (`detail["billed_attempt"]`: an answer the JSON schema rejected, or one
  abandoned after it began and priced later by the reconciler, `detail["abandoned"]`) is money and
  tokens of the request that made the attempt, not a request or a call of its own: its cost and tokens
  add to the totals and to its model; the call itself is counted from the request's own row;
- a cache hit is a row with `cache_hit`; it costs nothing and `saved` holds what it would have cost;
- an unknown cost (`None`) adds nothing to any total and is left out of the average's denominator;
- per-model figures describe upstream calls only, so refused rows and cache hits are left out of them.
  A request's calls are the attempts its `detail["attempts"]` lists (`ok` a success, `error` a
  failure, `skipped` no call), each under the model it tried, with that attempt's own latency (not the
  failed attempts and backoff before it); a failed request's row is no call of its own, so one that
  made no attempt made no call. A row without an attempts list (hand-written, or from before they were
  recorded) stands for one call, except a request that waited for an identical one
  (`detail["coalesced"]`), which sent nothing;
- a row's money and tokens count under the catalog id it was sent to (`detail["resolved"]`, the id
  breakers and attempts use, not the dated id OpenRouter reports back), else `model`, else
  `requested_model`; so when every cost is known the models' costs add up to `total_cost`;
- token `total` is prompt + completion (cached tokens are part of the prompt, reasoning tokens part
  of the completion, as OpenRouter reports them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from modelyard.routing.circuit import BreakerState
from modelyard.routing.limits import LimitSources, limit_sources
from modelyard.routing.money import Usd
from modelyard.routing.schema import ResultModel
from modelyard.store.base import BudgetLimits, LedgerRow, SpendTotals

if TYPE_CHECKING:
    from modelyard.routing.budget import BudgetManager

__all__ = [
    "BudgetStatus",
    "Metrics",
    "ModelMetrics",
    "TokenTotals",
    "Window",
    "budget_status",
    "compute_metrics",
    "current_budget",
    "percentile",
    "window_start",
]

Window = Literal["today", "7d", "all"]

_DAY_S = 86_400.0
_TOP = 5
_ZERO = Decimal(0)


def window_start(window: Window, now: float) -> float | None:
    """The first epoch second of `window`: UTC midnight of today, 7 days before `now`, or None (all)."""
    if window == "today":
        return now - now % _DAY_S  # epoch seconds have no leap seconds, so days align with UTC midnight
    if window == "7d":
        return now - 7 * _DAY_S
    return None


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile (`pct` in 0..100) of `values`, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class ModelMetrics(ResultModel):
    """Upstream calls to one model in the window."""

    model: str
    calls: int
    successes: int
    failures: int
    error_rate: float
    """failures / calls, 0.0 when there were no calls."""
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    cost: Usd
    tokens: int
    breaker: BreakerState | None
    """The live circuit-breaker state, None when the breaker never saw this model."""


class TokenTotals(ResultModel):
    """Tokens of upstream calls; `total` is prompt + completion."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0
    reasoning: int = 0
    total: int = 0


class BudgetStatus(ResultModel):
    """Limits (None = no limit), what is spent and held, and what remains (USD)."""

    daily: Usd | None
    monthly: Usd | None
    per_request: Usd | None
    spent_today: Usd
    spent_month: Usd
    reserved: Usd
    remaining_today: Usd | None
    """daily - spent_today - reserved, never below 0; None when there is no daily limit."""
    remaining_month: Usd | None
    """monthly - spent_month - reserved, never below 0; None when there is no monthly limit."""
    sources: LimitSources | None = Field(
        default=None,
        description="Per limit: the configured value, the run-time tightening (set_budget or `modelyard budget`) "
        "and when it was set, and which of them is in force (the lower one).",
    )


class Metrics(ResultModel):
    """Everything `get_metrics` reports for one window."""

    window: Window
    total_requests: int
    successes: int
    failures: int
    refused: int
    cache_hits: int
    cache_savings: Usd
    total_cost: Usd
    average_cost_per_request: Usd | None
    """total_cost over the requests whose cost is known; None when there are none."""
    tokens: TokenTotals
    by_model: list[ModelMetrics]
    """Sorted by calls (most first), then by model id."""
    top_models: list[str]
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    error_rate: float
    """failures / (successes + failures), 0.0 when there were none."""
    budget: BudgetStatus | None
    spooled_rows: int = 0
    """Ledger rows the store could not take (locked or down) kept in the local spool until it can: their
    requests and costs are not in the figures above yet. They are replayed into the store, each once."""


async def current_budget(budgets: BudgetManager) -> BudgetStatus:
    """The limits in force, where each comes from, and the store's spend totals."""
    limits = await budgets.limits()
    sources = limit_sources(budgets.configured, await budgets.tightenings())
    return budget_status(limits, await budgets.totals(), sources=sources)


def budget_status(limits: BudgetLimits, totals: SpendTotals, *, sources: LimitSources | None = None) -> BudgetStatus:
    """Combine the limits in force with the store's spend totals (and, when given, where each limit comes from)."""
    held = totals.reserved
    return BudgetStatus(
        sources=sources,
        daily=limits.daily,
        monthly=limits.monthly,
        per_request=limits.per_request,
        spent_today=totals.spent_today,
        spent_month=totals.spent_month,
        reserved=held,
        remaining_today=_remaining(limits.daily, totals.spent_today + held),
        remaining_month=_remaining(limits.monthly, totals.spent_month + held),
    )


def _remaining(limit: Decimal | None, used: Decimal) -> Decimal | None:
    return None if limit is None else max(_ZERO, limit - used)


@dataclass(slots=True)
class _Tally:
    """Running counts for one model."""

    successes: int = 0
    failures: int = 0
    cost: Decimal = _ZERO
    tokens: int = 0
    latencies: list[float] = field(default_factory=list)

    def add_call(self, ok: bool, latency_ms: object) -> None:
        """One upstream call, with its own latency when it is known."""
        if ok:
            self.successes += 1
        else:
            self.failures += 1
        if isinstance(latency_ms, int | float) and not isinstance(latency_ms, bool):
            self.latencies.append(float(latency_ms))

    def add_spend(self, row: LedgerRow) -> None:
        """The row's money (when known) and tokens."""
        if row.cost is not None:
            self.cost += row.cost
        self.tokens += row.prompt_tokens + row.completion_tokens


def _is_billed_attempt(row: LedgerRow) -> bool:
    """A row for one attempt's bill (a rejected or an abandoned answer), not for a request."""
    return "billed_attempt" in row.detail or bool(row.detail.get("abandoned"))


def _row_model(row: LedgerRow) -> str:
    resolved = row.detail.get("resolved")
    return resolved if isinstance(resolved, str) and resolved else row.model or row.requested_model


def _calls(row: LedgerRow) -> list[tuple[str, bool, object]]:
    """(model, succeeded, latency) of each upstream call a request's row made.

    The attempts its detail lists, `skipped` ones left out; without a list, the row itself is one call
    (none for a request that only waited for an identical one)."""
    attempts = row.detail.get("attempts")
    if isinstance(attempts, list):
        return [
            (str(a.get("model")), a["outcome"] == "ok", a.get("latency_ms"))
            for a in attempts
            if isinstance(a, dict) and a.get("outcome") in ("ok", "error")
        ]
    if row.detail.get("coalesced"):
        return []
    return [(_row_model(row), row.status == "ok", row.latency_ms)]


def compute_metrics(
    rows: Sequence[LedgerRow],
    *,
    window: Window,
    now: float,
    breakers: Mapping[str, BreakerState] | None = None,
    budget: BudgetStatus | None = None,
    spooled_rows: int = 0,
) -> Metrics:
    """Metrics of the ledger rows inside `window`, with live breaker states and budget merged in.

    Args:
        rows: ledger rows, in any order; rows before the window's start are ignored.
        window: `today` (since UTC midnight), `7d` (the last 7 days) or `all`.
        now: epoch seconds.
        breakers: the live breaker state per model (`CircuitBreakers.snapshot()`); a model with a
            breaker state but no calls in the window is listed with zero calls.
        budget: the budget status to report alongside, if any.
        spooled_rows: rows waiting in the spool for the store to take them.
    """
    start = window_start(window, now)
    in_window = [row for row in rows if start is None or row.ts >= start]
    # A billed attempt's row (a rejected answer, or an abandoned one priced later) is money and tokens, not a request.
    billed = [row for row in in_window if _is_billed_attempt(row)]
    selected = [row for row in in_window if not _is_billed_attempt(row)]
    upstream = [row for row in selected if row.status != "refused" and not row.cache_hit]
    states = breakers or {}
    by_model = _by_model(upstream, billed, states)
    latencies = [row.latency_ms for row in upstream if row.latency_ms is not None]
    priced = [row.cost for row in selected if row.cost is not None and row.status != "refused"]
    total_cost = sum(priced, _ZERO) + sum((row.cost for row in billed if row.cost is not None), _ZERO)
    successes = sum(1 for row in selected if row.status == "ok")
    failures = sum(1 for row in selected if row.status in ("error", "cancelled"))
    hits = [row for row in selected if row.cache_hit]
    return Metrics(
        window=window,
        total_requests=len(selected),
        successes=successes,
        failures=failures,
        refused=sum(1 for row in selected if row.status == "refused"),
        cache_hits=len(hits),
        cache_savings=sum((row.saved for row in hits if row.saved is not None), _ZERO),
        total_cost=total_cost,
        average_cost_per_request=total_cost / len(priced) if priced else None,
        tokens=_token_totals([*upstream, *billed]),
        by_model=by_model,
        top_models=[m.model for m in by_model if m.calls > 0][:_TOP],
        p50_latency_ms=percentile(latencies, 50),
        p95_latency_ms=percentile(latencies, 95),
        error_rate=_rate(failures, successes + failures),
        budget=budget,
        spooled_rows=spooled_rows,
    )


def _by_model(
    requests: Iterable[LedgerRow], billed: Iterable[LedgerRow], states: Mapping[str, BreakerState]
) -> list[ModelMetrics]:
    """Per-model calls from the requests' attempts, and spend from every row that has any."""
    tallies: dict[str, _Tally] = {model: _Tally() for model in states}
    for row in requests:
        for model, ok, latency in _calls(row):
            tallies.setdefault(model, _Tally()).add_call(ok, latency)
        if row.cost or row.prompt_tokens or row.completion_tokens:  # a failed request's row mostly has neither
            tallies.setdefault(_row_model(row), _Tally()).add_spend(row)
    for row in billed:
        tallies.setdefault(_row_model(row), _Tally()).add_spend(row)
    models = [
        ModelMetrics(
            model=model,
            calls=t.successes + t.failures,
            successes=t.successes,
            failures=t.failures,
            error_rate=_rate(t.failures, t.successes + t.failures),
            p50_latency_ms=percentile(t.latencies, 50),
            p95_latency_ms=percentile(t.latencies, 95),
            cost=t.cost,
            tokens=t.tokens,
            breaker=states.get(model),
        )
        for model, t in tallies.items()
    ]
    return sorted(models, key=lambda m: (-m.calls, m.model))


def _token_totals(rows: Sequence[LedgerRow]) -> TokenTotals:
    prompt = sum(row.prompt_tokens for row in rows)
    completion = sum(row.completion_tokens for row in rows)
    return TokenTotals(
        prompt=prompt,
        completion=completion,
        cached=sum(row.cached_tokens for row in rows),
        reasoning=sum(row.reasoning_tokens for row in rows),
        total=prompt + completion,
    )


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
