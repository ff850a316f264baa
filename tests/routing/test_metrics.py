"""compute_metrics, window_start, percentile and budget_status over hand-built ledger rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from itertools import count
from typing import Any

import pytest

from modelyard import errors
from modelyard.routing.circuit import BreakerState
from modelyard.routing.metrics import (
    BudgetStatus,
    budget_status,
    compute_metrics,
    percentile,
    window_start,
)
from modelyard.store.base import BudgetLimits, LedgerRow, SpendTotals
from tests.routing.conftest import Rig

# 00:30 UTC on 10 March 2025: half an hour after midnight, so "yesterday" is close by.
NOW = datetime(2025, 3, 10, 0, 30, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2025, 3, 10, tzinfo=UTC).timestamp()
DAY = 86_400.0
CHEAP, BACKUP = "meta-llama/llama-3.1-8b-instruct", "openai/gpt-4o-mini"
NEVER = {"type": "json_schema", "json_schema": {"name": "never", "schema": {"not": {}}}}
_ids = count()


def row(**fields: Any) -> LedgerRow:
    """A ledger row at NOW for `a/m` unless told otherwise."""
    fields.setdefault("ts", NOW)
    fields.setdefault("requested_model", "a/m")
    fields.setdefault("model", fields["requested_model"])
    return LedgerRow(id=f"r{next(_ids)}", **fields)


def test_today_starts_at_utc_midnight() -> None:
    """The today window begins at 00:00 UTC of the day of `now`."""
    assert window_start("today", NOW) == MIDNIGHT
    assert window_start("today", MIDNIGHT) == MIDNIGHT
    assert window_start("today", MIDNIGHT - 1) == MIDNIGHT - DAY


def test_seven_days_and_all_windows() -> None:
    """7d is exactly 7 days of 24 h before now; all has no start."""
    assert window_start("7d", NOW) == NOW - 7 * DAY
    assert window_start("all", NOW) is None


def test_nearest_rank_percentiles() -> None:
    """Nearest rank: p50 of 1..10 is 5, p95 is 10, and one value is every percentile."""
    values = [float(v) for v in range(10, 0, -1)]
    assert percentile(values, 50) == 5.0
    assert percentile(values, 95) == 10.0
    assert percentile(values, 0) == 1.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_totals_count_successes_failures_and_refusals() -> None:
    """ok is a success, error and cancelled are failures, refused is counted apart."""
    rows = [
        row(status="ok", cost=Decimal("0.01")),
        row(status="ok", cost=Decimal("0.03")),
        row(status="error"),
        row(status="cancelled", cost=Decimal("0.002")),
        row(status="refused", model=None, requested_model="auto"),
    ]
    metrics = compute_metrics(rows, window="all", now=NOW)
    assert (metrics.total_requests, metrics.successes, metrics.failures, metrics.refused) == (5, 2, 2, 1)
    assert metrics.total_cost == Decimal("0.042")
    assert metrics.error_rate == 0.5
    assert [m.model for m in metrics.by_model] == ["a/m"]


def test_unknown_costs_add_nothing_and_leave_the_average_denominator() -> None:
    """A None cost is unknown, not zero: the average divides by priced requests only."""
    rows = [row(cost=Decimal("0.02")), row(cost=Decimal("0.04")), row(cost=None), row(cost=None)]
    metrics = compute_metrics(rows, window="all", now=NOW)
    assert metrics.total_cost == Decimal("0.06")
    assert metrics.average_cost_per_request == Decimal("0.03")


def test_the_average_is_none_without_priced_requests() -> None:
    """No known cost at all gives no average rather than a misleading 0."""
    metrics = compute_metrics([row(cost=None), row(status="refused")], window="all", now=NOW)
    assert metrics.average_cost_per_request is None
    assert metrics.total_cost == Decimal(0)


def test_an_empty_ledger_gives_zeros_and_nones() -> None:
    """No rows: zero counts, no latencies, no average, error rate 0."""
    metrics = compute_metrics([], window="today", now=NOW)
    assert metrics.total_requests == 0
    assert metrics.by_model == [] and metrics.top_models == []
    assert metrics.p50_latency_ms is None and metrics.p95_latency_ms is None
    assert metrics.average_cost_per_request is None
    assert metrics.error_rate == 0.0


def test_today_window_excludes_rows_before_utc_midnight() -> None:
    """A row one second before midnight belongs to yesterday; one at midnight to today."""
    rows = [row(ts=MIDNIGHT - 1, cost=Decimal(1)), row(ts=MIDNIGHT, cost=Decimal(2)), row(cost=Decimal(4))]
    today = compute_metrics(rows, window="today", now=NOW)
    assert (today.total_requests, today.total_cost) == (2, Decimal(6))
    assert compute_metrics(rows, window="7d", now=NOW).total_requests == 3


def test_seven_day_window_excludes_older_rows() -> None:
    """7d keeps rows from exactly 7 days ago onward; all keeps everything."""
    rows = [row(ts=NOW - 7 * DAY - 1), row(ts=NOW - 7 * DAY), row(ts=NOW - DAY)]
    assert compute_metrics(rows, window="7d", now=NOW).total_requests == 2
    assert compute_metrics(rows, window="all", now=NOW).total_requests == 3


def test_per_model_latency_percentiles_and_error_rate() -> None:
    """Each model has its own nearest-rank p50/p95 and error rate over its upstream calls."""
    fast = [row(model="a/fast", latency_ms=float(ms)) for ms in range(100, 2100, 100)]  # 20 calls
    slow = [
        row(model="b/slow", latency_ms=1000.0),
        row(model="b/slow", latency_ms=3000.0),
        row(model="b/slow", latency_ms=2000.0, status="error"),
        row(model="b/slow", latency_ms=None, status="error"),
    ]
    metrics = compute_metrics([*fast, *slow], window="all", now=NOW)
    by = {m.model: m for m in metrics.by_model}
    assert (by["a/fast"].p50_latency_ms, by["a/fast"].p95_latency_ms) == (1000.0, 1900.0)
    assert (by["b/slow"].p50_latency_ms, by["b/slow"].p95_latency_ms) == (2000.0, 3000.0)
    assert (by["b/slow"].calls, by["b/slow"].failures, by["b/slow"].error_rate) == (4, 2, 0.5)
    assert by["a/fast"].error_rate == 0.0
    assert metrics.p50_latency_ms == 1100.0
    assert metrics.p95_latency_ms == 2000.0


def test_rows_without_a_resolved_model_count_under_the_requested_one() -> None:
    """A request that failed before any model answered is filed under what was asked for."""
    rows = [row(requested_model="auto", model=None, status="error"), row(requested_model="auto", model="a/m")]
    assert {m.model: m.calls for m in compute_metrics(rows, window="all", now=NOW).by_model} == {
        "auto": 1,
        "a/m": 1,
    }


def test_answers_count_under_the_catalog_id_they_were_sent_to_not_the_dated_id_reported_back() -> None:
    """OpenRouter answers `m/x` as `m/x-2506`: both are one model, keyed as the breaker keys it."""
    rows = [
        row(model="m/x-2506", detail={"resolved": "m/x", "attempts": [{"model": "m/x", "outcome": "ok"}]}),
        row(model="m/x-2506", detail={"resolved": "m/x"}),
    ]
    metrics = compute_metrics(rows, window="all", now=NOW, breakers={"m/x": "closed"})
    assert [(m.model, m.calls, m.breaker is not None) for m in metrics.by_model] == [("m/x", 2, True)]


def test_a_models_latency_is_its_own_attempt_not_the_failed_attempts_and_backoff_before_it() -> None:
    """A fallback answer that took 900 ms in all, 40 ms of it on its own model, counts 40 ms for that model."""
    attempts = [
        {"model": "a/down", "outcome": "error", "latency_ms": 500.0},
        {"model": "b/up", "outcome": "ok", "latency_ms": 40.0},
    ]
    rows = [row(model="b/up", latency_ms=900.0, detail={"resolved": "b/up", "attempts": attempts})]
    metrics = compute_metrics(rows, window="all", now=NOW)
    by = {m.model: m for m in metrics.by_model}
    assert (by["b/up"].p50_latency_ms, by["a/down"].p50_latency_ms) == (40.0, 500.0)
    assert metrics.p50_latency_ms == 900.0  # the request as the caller saw it


def test_by_model_is_sorted_by_calls_then_id_and_top_models_has_five() -> None:
    """Most calls first, ties broken by id; top_models lists the first five ids."""
    calls = {"f/six": 1, "e/five": 2, "a/tie": 3, "b/tie": 3, "c/most": 9, "d/four": 2}
    rows = [row(model=model) for model, n in calls.items() for _ in range(n)]
    metrics = compute_metrics(rows, window="all", now=NOW)
    assert [m.model for m in metrics.by_model] == ["c/most", "a/tie", "b/tie", "d/four", "e/five", "f/six"]
    assert metrics.top_models == ["c/most", "a/tie", "b/tie", "d/four", "e/five"]


def test_cache_hits_are_counted_with_their_savings_but_not_as_model_calls() -> None:
    """A hit costs 0, adds its `saved` to the savings, and is left out of per-model figures."""
    rows = [
        row(cost=Decimal("0.05"), latency_ms=900.0, prompt_tokens=100, completion_tokens=50),
        row(cache_hit=True, cost=Decimal(0), saved=Decimal("0.05"), latency_ms=1.0, prompt_tokens=100),
        row(cache_hit=True, cost=Decimal(0), saved=Decimal("0.05"), latency_ms=1.0),
        row(cache_hit=True, cost=Decimal(0), saved=None),
    ]
    metrics = compute_metrics(rows, window="all", now=NOW)
    assert (metrics.cache_hits, metrics.cache_savings) == (3, Decimal("0.10"))
    assert (metrics.total_requests, metrics.successes) == (4, 4)
    assert metrics.total_cost == Decimal("0.05")
    assert metrics.average_cost_per_request == Decimal("0.0125")
    assert metrics.p50_latency_ms == 900.0
    assert metrics.tokens.prompt == 100
    (model,) = metrics.by_model
    assert (model.calls, model.cost, model.tokens, model.p50_latency_ms) == (1, Decimal("0.05"), 150, 900.0)


def test_token_totals_add_up_upstream_calls() -> None:
    """Tokens sum per kind; total is prompt + completion (cached and reasoning are inside them)."""
    rows = [
        row(prompt_tokens=1000, completion_tokens=200, cached_tokens=800, reasoning_tokens=50),
        row(prompt_tokens=10, completion_tokens=5, status="error"),
        row(status="refused", prompt_tokens=999),
    ]
    tokens = compute_metrics(rows, window="all", now=NOW).tokens
    assert tokens.model_dump() == {
        "prompt": 1010,
        "completion": 205,
        "cached": 800,
        "reasoning": 50,
        "total": 1215,
    }


def test_breaker_states_are_merged_into_by_model() -> None:
    """Each model shows its live breaker; a breaker without calls in the window still appears."""
    rows = [row(model="a/m"), row(model="a/m"), row(model="b/m", status="error")]
    breakers: dict[str, BreakerState] = {"b/m": "open", "z/quiet": "half_open"}
    metrics = compute_metrics(rows, window="all", now=NOW, breakers=breakers)
    assert [(m.model, m.calls, m.breaker) for m in metrics.by_model] == [
        ("a/m", 2, None),
        ("b/m", 1, "open"),
        ("z/quiet", 0, "half_open"),
    ]
    assert metrics.top_models == ["a/m", "b/m"]


def test_budget_status_reports_what_remains_after_spend_and_reservations() -> None:
    """Remaining = limit - spent - reserved, floored at 0; None where there is no limit."""
    limits = BudgetLimits(daily=Decimal("5"), monthly=None, per_request=Decimal("0.50"))
    totals = SpendTotals(spent_today=Decimal("3.25"), spent_month=Decimal("40"), reserved=Decimal("0.75"))
    status = budget_status(limits, totals)
    assert status == BudgetStatus(
        daily=Decimal("5"),
        monthly=None,
        per_request=Decimal("0.50"),
        spent_today=Decimal("3.25"),
        spent_month=Decimal("40"),
        reserved=Decimal("0.75"),
        remaining_today=Decimal("1.00"),
        remaining_month=None,
    )


def test_an_overspent_budget_has_nothing_remaining() -> None:
    """Spend beyond the limit (a late reconcile) shows 0 remaining, never a negative figure."""
    limits = BudgetLimits(daily=Decimal("1"), monthly=Decimal("10"))
    totals = SpendTotals(spent_today=Decimal("1.20"), spent_month=Decimal("9.90"), reserved=Decimal("0.30"))
    status = budget_status(limits, totals)
    assert (status.remaining_today, status.remaining_month) == (Decimal(0), Decimal(0))


def test_metrics_carry_the_budget_and_serialise_money_as_json() -> None:
    """The budget passes through, and the whole result dumps to JSON with exact money."""
    budget = budget_status(
        BudgetLimits(daily=Decimal("2")),
        SpendTotals(spent_today=Decimal("0.5"), spent_month=Decimal("0.5"), reserved=Decimal(0)),
    )
    rows = [row(cost=Decimal("0.000123"), latency_ms=420.0)]
    metrics = compute_metrics(rows, window="today", now=NOW, budget=budget)
    assert metrics.budget == budget
    dumped = json.loads(metrics.model_dump_json())
    assert dumped["window"] == "today"
    assert Decimal(str(dumped["total_cost"])) == Decimal("0.000123")
    assert Decimal(str(dumped["budget"]["remaining_today"])) == Decimal("1.5")


def test_an_abandoned_attempts_row_adds_its_cost_and_tokens_but_is_not_a_request() -> None:
    """The row the reconciler writes for an answer abandoned after it began is money, not a request."""
    rows = [
        row(cost=Decimal("0.002"), prompt_tokens=10, completion_tokens=5, latency_ms=100.0),
        row(
            cost=Decimal("0.001"),
            status="error",
            prompt_tokens=10,
            completion_tokens=3,
            detail={"abandoned": True, "billed_attempt": True, "generation_id": "gen-1"},
        ),
    ]
    metrics = compute_metrics(rows, window="today", now=NOW)
    assert (metrics.total_requests, metrics.successes, metrics.failures) == (1, 1, 0)
    assert metrics.total_cost == Decimal("0.003") and metrics.average_cost_per_request == Decimal("0.003")
    assert (metrics.tokens.prompt, metrics.tokens.completion) == (20, 8)


def _failed(model: str, latency_ms: float, kind: str = "server_error") -> dict[str, Any]:
    return {"model": model, "outcome": "error", "error_kind": kind, "latency_ms": latency_ms}


def test_answers_the_schema_rejected_are_money_of_their_request_not_requests_or_calls() -> None:
    """Two rejected answers are billed rows of the one request that made them: its money and tokens."""
    rejected = [
        row(
            model=f"{model}-2506",
            status="error",
            cost=Decimal(cost),
            prompt_tokens=10,
            completion_tokens=4,
            attempts=1,
            detail={"billed_attempt": True, "resolved": model, "generation_id": f"gen-{model}"},
        )
        for model, cost in ((BACKUP, "0.002"), (CHEAP, "0.001"))
    ]
    attempts = [_failed(BACKUP, 300.0, "schema_validation"), _failed(CHEAP, 100.0, "schema_validation")]
    request = row(requested_model=BACKUP, model=BACKUP, status="error", attempts=2, detail={"attempts": attempts})
    metrics = compute_metrics([*rejected, request], window="all", now=NOW)
    by = {m.model: m for m in metrics.by_model}
    assert (metrics.total_requests, metrics.successes, metrics.failures) == (1, 0, 1)
    assert (by[BACKUP].calls, by[BACKUP].failures, by[CHEAP].calls, by[CHEAP].failures) == (1, 1, 1, 1)
    assert metrics.total_cost == Decimal("0.003") and (by[BACKUP].cost, by[CHEAP].cost) == (
        Decimal("0.002"),
        Decimal("0.001"),
    )
    assert (metrics.tokens.total, by[BACKUP].tokens, by[CHEAP].tokens) == (28, 14, 14)
    assert (by[BACKUP].p50_latency_ms, by[CHEAP].p50_latency_ms) == (300.0, 100.0)


def test_a_failed_requests_calls_count_against_each_model_it_tried_not_its_first_candidate() -> None:
    """Three failed calls to each of two models are (3, 3) and (3, 3): the row itself is no extra call."""
    attempts = [_failed(CHEAP, 10.0), _failed(CHEAP, 20.0), _failed(CHEAP, 30.0)]
    attempts += [_failed(BACKUP, 40.0), _failed(BACKUP, 50.0), _failed(BACKUP, 60.0)]
    request = row(requested_model=CHEAP, model=CHEAP, status="error", attempts=6, detail={"attempts": attempts})
    metrics = compute_metrics([request], window="all", now=NOW)
    by = {m.model: (m.calls, m.failures, m.p50_latency_ms) for m in metrics.by_model}
    assert by == {CHEAP: (3, 3, 20.0), BACKUP: (3, 3, 50.0)}
    assert (metrics.total_requests, metrics.failures) == (1, 1)


def test_a_request_that_made_no_attempt_made_no_call() -> None:
    """Skipped candidates (open breaker, refused hold) and a request that only waited send nothing upstream."""
    skipped = [{"model": CHEAP, "outcome": "skipped", "error": "circuit breaker open"}]
    rows = [
        row(requested_model=CHEAP, model=CHEAP, status="error", detail={"attempts": skipped}),
        row(requested_model=BACKUP, model=BACKUP, status="error", detail={"attempts": []}),
        row(requested_model="auto", model=None, status="error", cost=Decimal(0), detail={"coalesced": True}),
    ]
    metrics = compute_metrics(rows, window="all", now=NOW)
    assert (metrics.total_requests, metrics.failures) == (3, 3)
    assert metrics.by_model == [] and metrics.top_models == []


def test_per_model_costs_add_up_to_the_total_with_an_abandoned_attempts_cost() -> None:
    """The cost the reconciler found for an abandoned attempt counts under the model it was sent to."""
    attempts = [_failed(CHEAP, 300.0, "timeout"), {"model": BACKUP, "outcome": "ok", "latency_ms": 50.0}]
    rows = [
        row(
            requested_model=CHEAP,
            model=BACKUP,
            cost=Decimal("0.002"),
            latency_ms=360.0,
            prompt_tokens=10,
            completion_tokens=5,
            detail={"resolved": BACKUP, "attempts": attempts},
        ),
        row(
            requested_model=CHEAP,
            model=CHEAP,
            status="error",
            cost=Decimal("0.001"),
            prompt_tokens=10,
            completion_tokens=3,
            detail={"billed_attempt": True, "abandoned": True, "generation_id": "gen-1", "resolved": CHEAP},
        ),
    ]
    metrics = compute_metrics(rows, window="all", now=NOW)
    by = {m.model: m for m in metrics.by_model}
    assert metrics.total_cost == Decimal("0.003") == sum(m.cost for m in metrics.by_model)
    assert (by[CHEAP].cost, by[CHEAP].tokens, by[CHEAP].calls, by[CHEAP].failures) == (Decimal("0.001"), 13, 1, 1)
    assert (by[BACKUP].cost, by[BACKUP].tokens, by[BACKUP].calls) == (Decimal("0.002"), 15, 1)


@pytest.mark.anyio
async def test_a_request_whose_answers_fail_the_schema_counts_once_in_get_metrics(rig: Rig) -> None:
    """Through the router: one request, one call to each model, and every billed cent in the totals."""
    with pytest.raises(errors.AllCandidatesFailedError):
        await rig.router.execute(rig.ask(model=BACKUP, models=[CHEAP], response_format=NEVER, cache="off"))
    metrics = await rig.router.metrics("all")
    by = {m.model: m for m in metrics.by_model}
    assert rig.received() == 2 and (metrics.total_requests, metrics.failures) == (1, 1)
    assert (by[BACKUP].calls, by[CHEAP].calls) == (1, 1)
    assert metrics.total_cost == rig.billed() == sum(m.cost for m in metrics.by_model)


@pytest.mark.anyio
async def test_a_request_whose_every_call_failed_charges_each_failure_to_its_model(rig: Rig) -> None:
    """Through the router: three failed calls to each of two models, each counted once where it went."""
    rig.sandbox.state.faults.add(model="*", kind="server_error", count=None)
    with pytest.raises(errors.AllCandidatesFailedError):
        await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP], cache="off"))
    by = {m.model: (m.calls, m.failures) for m in (await rig.router.metrics("all")).by_model}
    assert by == {CHEAP: (3, 3), BACKUP: (3, 3)}
