"""Selection under a per-request cost cap: on one catalog, whatever was planned before, a capped plan
equals the one worked out the long way (every worst case by `pricing.worst_case_cost`, the models the
cap keeps ranked afresh), candidates, order, scores, worst cases and exclusions alike."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from modelyard.openrouter.catalog_schemas import ModelList
from modelyard.routing.catalog import Catalog
from modelyard.routing.catalog_facts import facts_of
from modelyard.routing.filters import Exclusion
from modelyard.routing.pricing import worst_case_cost
from modelyard.routing.ranking import rank
from modelyard.routing.request import RouteRequest
from modelyard.routing.selection import TIER_QUALITY, Plan, SelectionDefaults, select
from modelyard.routing.speed import SpeedBook
from tests.conftest import shared_fixture
from tests.routing.catalog_factory import FETCHED_AT, catalog, model, rows

DEFAULTS = SelectionDefaults()
SNAPSHOT_DAY = 1_787_200_000.0
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
_Summary = tuple[list[tuple[str, float, int, str]], list[tuple[str, str]]]


def _messages(chars: int, images: int = 0) -> list[dict[str, Any]]:
    text = "x" * chars
    return [{"role": "user", "content": [{"type": "text", "text": text}, *[IMAGE] * images] if images else text}]


# Prompt sizes: short; past seed-2.0-code's 128K long-prompt threshold (bound) while inside most contexts;
# overflowing many contexts (estimate ~75K); and most (estimate ~300K). Caps from nothing fits to all fits.
REQUESTS: list[tuple[dict[str, Any], Decimal]] = [
    ({"messages": _messages(40)}, Decimal("0.05")),
    ({"messages": _messages(40)}, Decimal("0.0001")),
    ({"messages": _messages(40)}, Decimal(0)),
    ({"messages": _messages(40)}, Decimal("1e9")),
    ({"messages": _messages(40), "quality": "low"}, Decimal("0.0123456789")),
    ({"messages": _messages(40), "quality": "high", "speed": "fast"}, Decimal("0.2")),
    ({"messages": _messages(40, images=2)}, Decimal("0.01")),
    ({"messages": _messages(40), "tools": TOOLS, "max_tokens": 20_000}, Decimal("0.05")),
    ({"messages": _messages(40), "max_cost_per_1k": Decimal("0.002")}, Decimal("0.005")),
    ({"messages": _messages(130_000)}, Decimal("0.2")),
    ({"messages": _messages(130_000), "max_cost_per_1k": Decimal("0.01")}, Decimal("0.5")),
    ({"messages": _messages(300_000)}, Decimal("0.3")),
    ({"messages": _messages(300_000), "max_tokens": 100}, Decimal("0.3")),
    ({"messages": _messages(1_200_000), "quality": "low"}, Decimal(1)),
    ({"messages": _messages(40), "model": "premium"}, Decimal("0.05")),
    ({"messages": _messages(40), "tier": "economy", "max_tokens": 100}, Decimal("0.001")),
    ({"messages": _messages(40), "provider": ["openai", "google"]}, Decimal("0.02")),
]


def _summary(plan: Plan) -> _Summary:
    candidates = [(c.id, c.score, c.max_tokens, str(c.worst_case)) for c in plan.candidates]
    return candidates, [(e.model, e.reason) for e in plan.exclusions]


def _the_long_way(cat: Catalog, request: RouteRequest, cap: Decimal, book: SpeedBook | None) -> _Summary:
    """The capped plan from the uncapped one (on nothing kept from earlier requests): each candidate's
    worst case by `worst_case_cost`, those above the cap excluded in catalog order, the rest ranked."""
    facts = facts_of(cat)
    facts.shapes.clear()
    plan = select(cat, request, defaults=DEFAULTS, speed=book, now=SNAPSHOT_DAY)
    bound, images = plan.prompt_tokens_bound, request.image_count()
    kept, late = [], []
    for candidate in plan.candidates:
        pricing = candidate.entry.info.pricing
        worst = worst_case_cost(pricing, prompt_tokens=bound, max_tokens=candidate.max_tokens, images=images)
        if facts.by_id[candidate.id].unpriced:
            late.append(Exclusion(candidate.id, "lists no price although it is not a free variant: what it charges "
                                  "is unknown, so it cannot be held to the per-request cap"))  # fmt: skip
        elif worst > cap:
            reason = f"worst-case cost ${worst.normalize():f} is above the per-request cap ${cap.normalize():f}"
            late.append(Exclusion(candidate.id, reason))
        else:
            kept.append((candidate.id, candidate.max_tokens, worst))
    tiers = [e for e in plan.exclusions if e.model == "*"]
    exclusions = sorted([e for e in plan.exclusions if e.model != "*"] + late, key=lambda e: e.model) + tiers
    tier = request.model if request.model in TIER_QUALITY else request.tier
    quality = request.quality or (TIER_QUALITY[tier] if tier else DEFAULTS.quality)  # a tier implies its own
    fast = request.speed == "fast"
    in_id_order = [(facts.by_id[i], n) for i, n, _ in sorted(kept)]
    scored = rank(in_id_order, quality=quality, fast=fast, speed=book or SpeedBook())
    worst_of = {i: w for i, _, w in kept}
    candidates = [(f.id, round(score, 6), n, str(worst_of[f.id])) for score, f, n in scored]
    return candidates, [(e.model, e.reason) for e in exclusions]


def _check(cat: Catalog, book: SpeedBook | None = None) -> None:
    """Every request, then every request again (on what the first round kept), in a mixed order with
    uncapped plans between them, plans as the long way does."""
    oracle = Catalog(list(e.info for e in cat.entries.values()), fetched_at=cat.fetched_at)
    for _ in range(2):
        for fields, cap in REQUESTS[::2] + REQUESTS[1::2]:
            request = RouteRequest(**fields)
            select(cat, request, defaults=DEFAULTS, speed=book, now=SNAPSHOT_DAY)  # an uncapped plan between
            plan = select(cat, request, defaults=DEFAULTS, speed=book, cost_cap=cap, now=SNAPSHOT_DAY)
            assert _summary(plan) == _the_long_way(oracle, request, cap, book), (fields.keys(), cap)


def test_on_the_real_catalog_capped_plans_equal_the_long_way_for_varied_requests() -> None:
    """Prompt sizes, images, caps, price caps, preferences, tiers and providers over the 414-model snapshot."""
    data = json.loads(shared_fixture("models-2026-08-19.json").read_text())
    _check(Catalog(ModelList.model_validate(data).data, fetched_at=SNAPSHOT_DAY))


def test_on_the_small_catalog_capped_plans_equal_the_long_way_for_varied_requests() -> None:
    """The same over the hand-made catalog plus a paid text model that lists no price (runs without ../shared)."""
    _check(catalog([*rows(), model("lab/unlisted", index=30)], fetched_at=FETCHED_AT))


def test_capped_plans_equal_the_long_way_while_speeds_are_known() -> None:
    """Known speeds change the ranking (never kept): still the same plans."""
    book = SpeedBook()
    book.record_endpoints("openai/gpt-4o-mini", _endpoints("openai/gpt-4o-mini", 150.0))
    _check(catalog(rows(), fetched_at=FETCHED_AT), book)


def _endpoints(model_id: str, tps: float) -> Any:
    from modelyard.openrouter.catalog_schemas import EndpointsInfo

    return EndpointsInfo.model_validate({"id": model_id, "endpoints": [{"throughput_last_30m": {"p50": tps}}]})


def test_an_exclusion_reason_given_as_a_callable_is_worked_out_once_when_first_read() -> None:
    """It reads, compares, hashes and prints as the same exclusion with the reason given as text."""
    calls = []

    def why() -> str:
        calls.append(1)
        return "too dear"

    lazy = Exclusion("lab/x", why)
    assert calls == []
    assert lazy == Exclusion("lab/x", "too dear") and hash(lazy) == hash(Exclusion("lab/x", "too dear"))
    assert repr(lazy) == "Exclusion(model='lab/x', reason='too dear')" and lazy.reason == "too dear"
    assert calls == [1]
    assert lazy != Exclusion("lab/y", "too dear")


@pytest.mark.parametrize("chars", [120_000, 160_000])
def test_a_capped_plans_context_reasons_state_its_own_prompt_estimate(chars: int) -> None:
    """Two prompts that overflow the same context windows each state their own estimate, whichever came first."""
    cat = catalog(rows(), fetched_at=FETCHED_AT)
    select(cat, RouteRequest(messages=_messages(140_000)), defaults=DEFAULTS, cost_cap=Decimal(5), now=FETCHED_AT)
    plan = select(cat, RouteRequest(messages=_messages(chars)), defaults=DEFAULTS, cost_cap=Decimal(5), now=FETCHED_AT)
    reason = {e.model: e.reason for e in plan.exclusions}["meta-llama/llama-3.1-8b-instruct"]
    assert f"~{plan.prompt_tokens_estimate} prompt" in reason


def test_caps_that_each_leave_out_other_models_keep_a_bounded_number_of_rankings() -> None:
    """Eighty caps over eighty models priced a step apart: at most 64 capped rankings kept, each plan
    still the long way's, and the uncapped plan's ranking is kept throughout."""
    priced = [model(f"lab/m{k:02}", prompt=f"0.000000{k + 10}", completion=f"0.00000{k + 10}") for k in range(80)]
    cat = catalog(priced, fetched_at=FETCHED_AT)
    oracle = catalog(priced, fetched_at=FETCHED_AT)
    request = RouteRequest(messages=_messages(40))
    select(cat, request, defaults=DEFAULTS, now=SNAPSHOT_DAY)
    shape = next(iter(facts_of(cat).shapes.values()))
    whole = dict(shape.rankings)
    for k in range(80):
        cap = (k + 10) * Decimal("0.000411")  # the first k + 1 models fit
        plan = select(cat, request, defaults=DEFAULTS, cost_cap=cap, now=SNAPSHOT_DAY)
        assert _summary(plan) == _the_long_way(oracle, request, cap, None), cap
        assert len(shape._capped) <= 64
    assert shape.rankings == whole


def test_long_prompts_under_a_price_cap_keep_a_bounded_number_of_views() -> None:
    """Each long prompt's token bound names its own view under a price cap (the reason states it), so a
    long-running server must not keep one per distinct prompt: at most 256 a shape, plans unchanged."""
    cat = catalog(rows(), fetched_at=FETCHED_AT)
    sonnet = rows()[0].id
    plan = None
    for k in range(300):
        request = RouteRequest(messages=_messages(900_000 + 40 * k), max_cost_per_1k=Decimal("0.02"))
        plan = select(cat, request, defaults=DEFAULTS, now=SNAPSHOT_DAY)
        assert all(len(shape.views) <= 256 for shape in facts_of(cat).shapes.values())
    assert plan is not None and any(e.model == sonnet and "1K" in e.reason for e in plan.exclusions), plan.exclusions
