"""Why no model is left: the exclusions grouped by kind, each with examples, the limit that binds and
where it comes from, and a change that would let a model through (each one applied here, to check
that it does)."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from modelyard.openrouter.catalog_schemas import ModelList
from modelyard.routing.catalog import Catalog
from modelyard.routing.explain import kind_of, no_candidates_error, why_no_model
from modelyard.routing.filters import Exclusion
from modelyard.routing.request import RouteRequest
from modelyard.routing.selection import Plan, SelectionDefaults, select
from tests.conftest import shared_fixture
from tests.routing.catalog_factory import (
    FETCHED_AT,
    GPT_4O_MINI,
    GROK,
    LLAMA,
    O1_PRO,
    SONNET,
    catalog,
    model,
    small_catalog,
)

HELLO = [{"role": "user", "content": "hello"}]  # bound 53 tokens
SNAPSHOT_DAY = 1_787_200_000.0


def _plan(
    cat: Catalog | None = None,
    *,
    defaults: SelectionDefaults | None = None,
    cost_cap: Decimal | None = None,
    budget: str | None = None,
    now: float = FETCHED_AT,
    **request: Any,
) -> Plan:
    request.setdefault("messages", HELLO)
    if cost_cap is None:
        cost_cap = request.get("max_cost")
    return select(
        cat or small_catalog(),
        RouteRequest(**request),
        defaults=defaults or SelectionDefaults(),
        cost_cap=cost_cap,
        budget=budget,
        now=now,
    )


def _why(cat: Catalog | None = None, *, per_request: Decimal | None = None, **request: Any) -> str:
    plan = _plan(cat, **request)
    assert plan.candidates == [], [c.id for c in plan.candidates]
    return why_no_model(plan, cat or small_catalog(), per_request=per_request)


def _number(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in:\n{text}"
    return found[1].replace(",", "")


def _snapshot() -> Catalog:
    data = json.loads(shared_fixture("models-2026-08-19.json").read_text())
    return Catalog(ModelList.model_validate(data).data, fetched_at=SNAPSHOT_DAY)


# --------------------------------------------------------------------------- a per-request cost cap


def test_models_above_the_request_max_cost_are_one_group_naming_the_cap_its_source_and_the_cheapest() -> None:
    """Each model's worst case differs, yet they are one group: the cap, that it is max_cost, the cheapest first."""
    why = _why(model="premium", max_cost=Decimal("0.0005"))
    assert why.count("above the per-request cap $0.0005") == 1
    assert "3 models have a worst case above the per-request cap $0.0005 (the request's max_cost)" in why
    assert why.index(GROK) < why.index(SONNET) < why.index(O1_PRO)
    assert f"{GROK} $0.0020586" in why  # 53 x $0.2/M + 4,096 x $0.5/M


def test_raising_max_cost_to_the_cheapest_worst_case_named_lets_that_model_through() -> None:
    """The suggested max_cost is exactly the cheapest worst case: asking for it leaves that model in."""
    why = _why(model="premium", max_cost=Decimal("0.0005"))
    enough = _number(r"raise max_cost to at least \$([0-9.]+)", why)
    assert [c.id for c in _plan(model="premium", max_cost=Decimal(enough)).candidates] == [GROK]


def test_the_max_tokens_suggested_under_a_cost_cap_is_the_largest_that_fits_it() -> None:
    """Lower max_tokens to N: with N the cheapest model fits the same cap, with N + 1 nothing does."""
    why = _why(model="premium", max_cost=Decimal("0.0005"))
    fits = int(_number(r"lower max_tokens to ([0-9,]+)", why))
    assert fits == 978  # (0.0005 - 53 x 0.0000002) / 0.0000005
    assert _plan(model="premium", max_cost=Decimal("0.0005"), max_tokens=fits).candidates
    assert not _plan(model="premium", max_cost=Decimal("0.0005"), max_tokens=fits + 1).candidates


def test_a_per_request_budget_cap_is_named_as_the_budget_and_raising_max_cost_is_not_offered() -> None:
    """The operator's per_request limit binds, not max_cost: raising max_cost would not help, and the agent
    cannot raise the budget, so the message says who can."""
    why = _why(model="premium", max_cost=Decimal("1"), cost_cap=Decimal("0.0005"), per_request=Decimal("0.0005"))
    assert "above the per-request cap $0.0005 (the per_request budget)" in why
    assert "raise max_cost" not in why
    assert "lower max_tokens to 978" in why
    assert "MODELYARD_BUDGET__PER_REQUEST" in why


def test_a_per_request_budget_lowered_at_run_time_is_lifted_by_the_reset_not_the_config() -> None:
    """No per_request limit configured, 1e-30 set by set_budget: "only the operator can raise it
    (MODELYARD_BUDGET__PER_REQUEST)" sent the operator to a setting that would not help. The cap is written in
    plain digits."""
    tiny = Decimal("1e-30")
    plan = _plan(cost_cap=tiny)
    why = why_no_model(plan, small_catalog(), per_request=tiny, per_request_source="run-time")
    assert "above the per-request cap $0.000000000000000000000000000001 (the per_request budget)" in why
    assert "it was lowered at run time (set_budget or `modelyard budget`)" in why
    assert "`modelyard budget --reset`" in why and "MODELYARD_BUDGET__PER_REQUEST" not in why


def test_when_max_cost_and_the_budget_are_the_same_cap_raising_max_cost_is_not_offered() -> None:
    """Both bind at once: raising only max_cost would leave the same cap."""
    why = _why(model="premium", max_cost=Decimal("0.0005"), per_request=Decimal("0.0005"))
    assert "(the request's max_cost and the per_request budget)" in why
    assert "raise max_cost" not in why


def test_a_prompt_that_alone_costs_more_than_the_cap_is_told_to_shrink_not_to_lower_max_tokens() -> None:
    """No max_tokens fits when the prompt alone is above the cap: the fix is a shorter prompt (or a higher cap)."""
    long_text = [{"role": "user", "content": "word " * 20_000}]
    why = _why(model=SONNET, messages=long_text, max_cost=Decimal("0.01"))
    assert "lower max_tokens" not in why
    assert "the prompt alone costs $" in why and "shorten it" in why


# --------------------------------------------------------------------------- context windows


def _windows() -> Catalog:
    return catalog(
        [
            model("lab/small", prompt="0.000001", completion="0.000001", index=40, context=8_000),
            model("lab/large", prompt="0.000001", completion="0.000001", index=40, context=16_000),
        ]
    )


def test_a_prompt_longer_than_every_context_is_told_to_shorten_naming_the_largest_context() -> None:
    """~20K prompt tokens against contexts of 8,000 and 16,000: shorten it, and the largest context is named."""
    why = _why(_windows(), messages=[{"role": "user", "content": "x" * 80_000}])
    assert "2 models have a context too small for the prompt (~20,00" in why
    assert "shorten the prompt" in why and "16,000 (lab/large)" in why
    assert "lower max_tokens" not in why


def test_when_max_tokens_pushes_past_the_context_the_fix_is_a_max_tokens_that_fits() -> None:
    """The prompt fits the largest context but not with max_tokens on top: lowering it to N lets it through."""
    prompt = [{"role": "user", "content": "x" * 40_000}]
    why = _why(_windows(), messages=prompt, max_tokens=8_000)
    fits = int(_number(r"lower max_tokens to ([0-9,]+)", why))
    assert [c.id for c in _plan(_windows(), messages=prompt, max_tokens=fits).candidates] == ["lab/large"]
    assert not _plan(_windows(), messages=prompt, max_tokens=fits + 1).candidates


# --------------------------------------------------------------------------- capabilities, prices, limits, authors


def test_a_named_model_lacking_a_capability_says_so_and_names_models_that_meet_every_constraint() -> None:
    """gpt-4o-mini has no reasoning: drop the capability, or name one of the models that pass every check."""
    why = _why(model="gpt-4o-mini", capabilities=["reasoning"])
    assert f"{GPT_4O_MINI} lacks reasoning" in why
    assert "drop reasoning (asked for in `capabilities`)" in why
    other = _number(r"meet every constraint, best first: ([\w./:-]+)", why)
    assert other in {SONNET, O1_PRO, GROK}
    assert _plan(model=other, capabilities=["reasoning"]).candidates


def test_a_capability_the_request_implies_is_traced_to_what_implies_it() -> None:
    """Tools given to a model that cannot call them: the fix names `tools`, not `capabilities`."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    why = _why(model="mistral-small", tools=tools)
    assert "lacks tools" in why and "drop tools (`tools` needs it)" in why


def test_a_capability_the_server_requires_is_not_offered_as_one_to_drop() -> None:
    """MODELYARD_CAPABILITIES adds reasoning to every request: the agent cannot drop it, so the fix is another
    model (or the operator), where the message used to say "drop reasoning"."""
    why = _why(model="gpt-4o-mini", defaults=SelectionDefaults(capabilities=["reasoning"]))
    assert f"{GPT_4O_MINI} lacks reasoning" in why and "drop" not in why
    assert (
        "The server requires reasoning of every model (the server's default capabilities, MODELYARD_CAPABILITIES)"
        in why
    )


def test_a_price_cap_group_names_the_lowest_max_cost_per_1k_that_would_let_a_model_through() -> None:
    """Every model is above $0.0000001 per 1K: the cheapest one's dearer price is the cap to ask for."""
    why = _why(max_cost_per_1k=Decimal("0.0000001"))
    assert "priced above max_cost_per_1k $0.0000001 (the request's)" in why
    enough = _number(r"max_cost_per_1k of at least \$([0-9.]+)", why)
    assert enough == "0.00005"  # llama: $0.00002 / $0.00005 per 1K
    assert [c.id for c in _plan(max_cost_per_1k=Decimal(enough)).candidates] == [LLAMA]


def test_the_servers_default_price_cap_is_named_with_its_setting() -> None:
    """No max_cost_per_1k in the request: the binding cap is the configured default, and the message says so."""
    why = _why(defaults=SelectionDefaults(max_cost_per_1k=Decimal("0.0000001")))
    assert "(the server's default, MODELYARD_MAX_COST_PER_1K)" in why


def test_max_tokens_above_every_completion_limit_names_the_largest_limit() -> None:
    """150,000 is above every limit; o1-pro's 100,000 is the largest, and asking for it lets o1-pro through."""
    why = _why(max_tokens=150_000)
    fits = int(_number(r"lower max_tokens to ([0-9,]+)", why))
    assert fits == 100_000 and f"({O1_PRO})" in why
    assert [c.id for c in _plan(max_tokens=fits).candidates] == [O1_PRO]


def test_an_author_no_model_has_is_named_with_the_closest_one() -> None:
    """A typo in provider: no model is by 'opneai', and the message suggests 'openai'."""
    why = _why(provider=["opneai"])
    assert "no model in the catalog is by opneai" in why.lower() and "did you mean openai" in why


def test_a_tier_with_no_model_left_names_the_models_of_other_tiers_that_meet_every_constraint() -> None:
    """Premium under $0.0005: llama (economy) fits, and the message says model='auto' reaches it."""
    why = _why(model="premium", max_cost=Decimal("0.0005"))
    assert "all 3 premium-tier models were excluded" in why
    first = _number(r"Outside the premium tier, these meet every constraint, best first: ([\w./:-]+)", why)
    assert "model='auto'" in why
    assert first in [c.id for c in _plan(max_cost=Decimal("0.0005")).candidates]


# --------------------------------------------------------------------------- a model that lists no price


def test_a_named_model_that_lists_no_price_under_a_daily_budget_says_the_budget_cannot_hold_it() -> None:
    """One line naming the model and the budget, then the models that would do (those that list a price)."""
    cat = catalog([model("lab/unlisted", index=30), model("lab/cheap", prompt="0.0000001", completion="0.0000001")])
    text = _why(cat, model="lab/unlisted", budget="the daily budget")
    assert kind_of(_plan(cat, model="lab/unlisted", budget="the daily budget").exclusions[0].reason) == "unknown price"
    assert text.splitlines() == [
        "No model meets the constraints: the model named was excluded.",
        "- lab/unlisted: lists no price although it is not a free variant: what it charges is unknown, so it "
        "cannot be held to the daily budget.",
        "Of the other models, these meet every constraint, best first: lab/cheap; name one, or use model='auto'.",
    ]


# --------------------------------------------------------------------------- the message as a whole


def test_every_reason_selection_gives_falls_in_a_named_kind() -> None:
    """No reason the filters write is left to the catch-all 'other' kind."""
    plans = [
        _plan(),
        _plan(model="premium", max_cost=Decimal("0.0005")),
        _plan(capabilities=["reasoning"], max_cost_per_1k=Decimal("0.00001")),
        _plan(provider=["openai"], max_tokens=20_000),
        _plan(messages=[{"role": "user", "content": "x" * 300_000}]),
        _plan(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG"}}]}]),
    ]
    reasons = {e.reason for plan in plans for e in plan.exclusions if e.model != "*"}
    assert {kind_of(reason) for reason in reasons} >= {"capability", "context", "cost", "input", "price"}
    assert [reason for reason in reasons if kind_of(reason) == "other"] == []


def test_the_error_adds_where_to_see_every_reason_and_keeps_a_sample_of_them() -> None:
    """execute's error is the same explanation, plus a pointer to plan_route, and a model -> reason sample."""
    plan = _plan(model="gpt-4o-mini", capabilities=["reasoning"])
    error = no_candidates_error(plan, small_catalog(), per_request=None)
    assert str(error).startswith(why_no_model(plan, small_catalog(), per_request=None))
    assert "plan_route" in str(error)
    assert error.exclusions == {GPT_4O_MINI: "lacks reasoning"}


def test_on_the_real_catalog_a_huge_prompt_is_told_to_shorten_below_the_largest_context() -> None:
    """A 9 MB prompt (~2.25M tokens) overflows every context of the 414 models: the largest is named."""
    cat = _snapshot()
    why = _why(cat, messages=[{"role": "user", "content": "x" * 9_000_000}], now=SNAPSHOT_DAY)
    largest = max(e.info.capabilities.context_length or 0 for e in cat.entries.values() if not e.info.is_router)
    assert f"{largest:,}" in why and "shorten the prompt" in why
    assert len(why) < 2_000


def test_on_the_real_catalog_the_message_stays_short_and_says_how_many_kinds_it_left_out() -> None:
    """Many constraints at once exclude for many kinds: the message is bounded and counts what it left out."""
    plan = _plan(
        _snapshot(),
        now=SNAPSHOT_DAY,
        messages=[{"role": "user", "content": "x" * 1_000_000}],
        capabilities=["reasoning"],
        provider=["openai", "google", "anthropic", "x-ai", "deepseek", "qwen", "opneai"],
        max_cost_per_1k=Decimal("0.002"),
        max_cost=Decimal("0.00001"),
        max_tokens=60_000,
    )
    assert plan.candidates == []
    error = str(no_candidates_error(plan, _snapshot(), per_request=None))
    assert len(error) <= 2_000
    assert re.search(r"and \d+ more kinds? of reason", error), error


def test_a_single_model_is_named_in_the_singular() -> None:
    """One named model: 'is priced', 'does not take', 'is by', not a count of models."""
    audio = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}]}]
    assert f"{GPT_4O_MINI} does not take audio input" in _why(model="gpt-4o-mini", messages=audio)
    assert f"{GPT_4O_MINI} is priced above" in _why(model="gpt-4o-mini", max_cost_per_1k=Decimal("0.0000001"))
    assert f"{GPT_4O_MINI} is by authors not among google" in _why(model="gpt-4o-mini", provider=["google"])


def test_a_plan_made_without_the_request_is_still_grouped_by_kind() -> None:
    """A plan built by hand (no request kept on it) gets the grouping and examples, without fixes."""
    plan = Plan(candidates=[], exclusions=[Exclusion(LLAMA, "lacks tools"), Exclusion(GROK, "lacks tools")])
    why = why_no_model(plan, small_catalog(), per_request=None)
    assert why.startswith("No model meets the constraints: all 2 models were excluded.")
    assert f"2 models lack tools: {LLAMA}, {GROK}." in why


def test_raising_max_cost_is_suggested_only_as_far_as_the_per_request_budget_lets_it_work() -> None:
    """max_cost $0.0005 binds, but the per_request budget ($0.001) is below every premium worst case: raising
    max_cost to a worst case would be refused again, so that is not the change offered."""
    per_request = Decimal("0.001")
    why = _why(model="premium", max_cost=Decimal("0.0005"), per_request=per_request)
    asked = re.search(r"raise max_cost to at least \$([0-9.]+)", why)
    if asked is not None:  # the suggestion, applied, must let a model through under both caps
        raised = Decimal(asked[1])
        plan = _plan(model="premium", max_cost=raised, cost_cap=min(raised, per_request))
        assert plan.candidates, f"applying the suggestion still leaves no model:\n{why}"
    assert "Only the operator can raise the per_request budget" in why


def test_an_empty_tier_is_named_not_called_an_empty_catalog() -> None:
    """One model, in the premium tier: asking for economy leaves none, yet the catalog is not empty."""
    one = catalog([model("a/x", prompt="0.000001", completion="0.000002", index=40)])
    why = _why(one, model="economy")
    assert "the catalog has no model to consider" not in why
    assert "no economy-tier model" in why and "a/x" in why
