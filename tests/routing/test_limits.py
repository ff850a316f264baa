"""Where each budget limit comes from, and which limits leave no paid model able to answer."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from modelyard.routing.budget import Tightenings
from modelyard.routing.filters import SelectionDefaults
from modelyard.routing.limits import LimitSources, blocking_limits, least_request_cost, limit_sources
from modelyard.store.base import BudgetLimits
from tests.routing.catalog_factory import FETCHED_AT, LLAMA, small_catalog

SET_AT = 1_787_000_000.0  # 2026-08-17 20:53:20 UTC
TINY = Decimal("1e-30")


def _sources(configured: BudgetLimits, tightened: BudgetLimits, set_at: dict[str, float] | None = None) -> LimitSources:
    return limit_sources(configured, Tightenings(tightened, set_at or {}))


def test_a_limit_an_agent_lowered_below_the_configured_one_shows_both_and_when_it_was_set() -> None:
    """The walkthrough: daily 10 configured, 0.5 set by set_budget. Showing only $0.5 hid why."""
    sources = _sources(BudgetLimits(daily=Decimal(10)), BudgetLimits(daily=Decimal("0.5")), {"daily": SET_AT})
    daily = sources.daily
    assert (daily.in_force, daily.source, daily.configured, daily.tightened) == (
        Decimal("0.5"),
        "run-time",
        Decimal(10),
        Decimal("0.5"),
    )
    assert daily.tightened_at == datetime(2026, 8, 17, 20, 53, 20, tzinfo=UTC)
    assert (sources.monthly.source, sources.monthly.in_force, sources.monthly.tightened_at) == ("none", None, None)


def test_a_configured_limit_below_a_stored_tightening_is_the_one_in_force() -> None:
    """The operator lowered the config after an agent's tightening: the config binds, and the tightening is kept."""
    per_request = _sources(BudgetLimits(per_request=Decimal(1)), BudgetLimits(per_request=Decimal(5))).per_request
    assert (per_request.in_force, per_request.source, per_request.tightened) == (Decimal(1), "config", Decimal(5))


def test_a_tightening_stored_without_a_time_has_none() -> None:
    assert _sources(BudgetLimits(), BudgetLimits(daily=Decimal(1))).daily.tightened_at is None


def test_the_smallest_request_costs_least_on_the_cheapest_paid_model_automatic_selection_may_pick() -> None:
    """A two-letter prompt (50 tokens at most) and max_tokens 1 on llama at $0.02 / $0.05 per 1M: free models and
    routers, which cost nothing or are never picked, are left out."""
    least = least_request_cost(small_catalog(), SelectionDefaults(), now=FETCHED_AT)
    assert least == (Decimal("0.00000105"), LLAMA)


def test_a_per_request_limit_below_the_smallest_request_blocks_every_paid_request_and_names_the_reset() -> None:
    """per_request 1e-30 set at run time: doctor said ✓ and "All checks passed" while every request was refused."""
    sources = _sources(BudgetLimits(), BudgetLimits(per_request=TINY))
    (problem,) = blocking_limits(sources, (Decimal("0.00000105"), LLAMA))
    assert problem.startswith("the per_request limit is $0.000000000000000000000000000001, below $0.00000105, ")
    assert f"({LLAMA}): every request to a paid model is refused" in problem
    assert "`modelyard budget --reset`" in problem and "MODELYARD_BUDGET__" not in problem


def test_a_configured_limit_too_low_names_the_config() -> None:
    (problem,) = blocking_limits(_sources(BudgetLimits(daily=Decimal(0)), BudgetLimits()), (Decimal("0.01"), LLAMA))
    assert "the daily limit is $0, below $0.01" in problem and "MODELYARD_BUDGET__DAILY" in problem


def test_limits_any_paid_request_fits_are_no_problem() -> None:
    sources = _sources(BudgetLimits(daily=Decimal("0.00000105")), BudgetLimits(per_request=Decimal("0.5")))
    assert blocking_limits(sources, (Decimal("0.00000105"), LLAMA)) == []


def test_without_a_catalog_only_a_limit_of_zero_is_known_to_block() -> None:
    """With no prices to compare, a tiny limit cannot be judged, but $0 refuses every paid request whatever they are."""
    sources = _sources(BudgetLimits(monthly=Decimal(0)), BudgetLimits(per_request=TINY))
    (problem,) = blocking_limits(sources, None)
    assert problem.startswith("the monthly limit is $0: every request to a paid model is refused; ")
