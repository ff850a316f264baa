"""The float screen against a cost cap at the edges of float range: it must never keep a model the exact
Decimal worst case puts above the cap, nor fail where the exact maths answers."""

from __future__ import annotations

from decimal import Decimal

from modelyard.routing.pricing import worst_case_cost
from modelyard.routing.request import RouteRequest
from modelyard.routing.selection import SelectionDefaults, select
from tests.routing.catalog_factory import FETCHED_AT, catalog, model

DEFAULTS = SelectionDefaults()
HI = [{"role": "user", "content": "hi"}]


def test_a_price_that_underflows_to_a_float_zero_is_not_taken_for_free() -> None:
    """1e-400 USD a token is 0.0 as a float but not zero: with 1e200 max_tokens the worst case is 1e-200,
    above a 1e-220 cap, so the model is excluded (the exact maths says so; the screen said "surely within")."""
    tiny = model("lab/tiny", prompt="0", completion="1e-400", index=30, context=None, max_completion=None)
    cat = catalog([tiny], fetched_at=FETCHED_AT)
    request = RouteRequest(messages=HI, max_tokens=10**200)
    cap = Decimal("1e-220")
    plan = select(cat, request, defaults=DEFAULTS, cost_cap=cap, now=FETCHED_AT)
    worst = worst_case_cost(tiny.pricing, prompt_tokens=plan.prompt_tokens_bound, max_tokens=10**200)
    assert worst > cap
    assert [c.id for c in plan.candidates] == []
    assert [e.model for e in plan.exclusions] == ["lab/tiny"]
    assert "is above the per-request cap" in plan.exclusions[0].reason


def test_a_max_tokens_beyond_float_range_is_screened_without_overflow() -> None:
    """A max_tokens past 1.8e308 (RouteRequest bounds it below only) cannot be a float: the plan is the
    exact maths' (here: every model excluded, none kept), not an OverflowError."""
    cat = catalog(
        [
            model("lab/open", prompt="0.000001", completion="0.000002", index=30, context=None, max_completion=None),
            model("lab/capped", prompt="0.000001", completion="0.000002", index=20),
        ],
        fetched_at=FETCHED_AT,
    )
    request = RouteRequest(messages=HI, max_tokens=10**310)
    plan = select(cat, request, defaults=DEFAULTS, cost_cap=Decimal("0.5"), now=FETCHED_AT)
    assert list(plan.candidates) == []
    reasons = {e.model: e.reason for e in plan.exclusions}
    assert "is above the per-request cap" in reasons["lab/open"]
    assert "completion limit" in reasons["lab/capped"]
