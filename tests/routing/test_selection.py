"""Selection: every filter with its exclusion reason, the price units, worst cases, scoring by the
request's preferences, determinism, tiers, and explicit chains."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from modelyard.errors import ModelNotFoundError
from modelyard.openrouter.catalog_schemas import EndpointsInfo, ModelInfo, ModelList
from modelyard.routing import shapes
from modelyard.routing.catalog import Catalog
from modelyard.routing.pricing import worst_case_cost
from modelyard.routing.request import RouteRequest
from modelyard.routing.selection import Plan, SelectionDefaults, select
from modelyard.routing.speed import SpeedBook
from tests.conftest import shared_fixture
from tests.routing.catalog_factory import (
    AUTO,
    FETCHED_AT,
    FLUX,
    GEMMA,
    GEMMA_FREE,
    GPT_4O_MINI,
    GROK,
    LLAMA,
    MISTRAL,
    O1_PRO,
    SONNET,
    catalog,
    model,
    small_catalog,
)

DEFAULTS = SelectionDefaults()
HELLO = [{"role": "user", "content": "hello"}]  # bound: 5 bytes + 16 + 32 = 53 tokens
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
ROUTABLE = {SONNET, GEMMA, LLAMA, MISTRAL, GPT_4O_MINI, O1_PRO, GROK}
AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
VIDEO = {"type": "video_url", "video_url": {"url": "https://example.com/clip.mp4"}}
PDF = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
LONG_PROMPT = [{"role": "user", "content": "word " * 240_000}]  # bound 1,200,048 tokens, estimate ~300K
SONG = "lab/song"


def _plan(
    cat: Catalog | None = None,
    *,
    defaults: SelectionDefaults = DEFAULTS,
    open_breakers: frozenset[str] = frozenset(),
    book: SpeedBook | None = None,
    cost_cap: Decimal | None = None,
    budget: str | None = None,
    now: float = FETCHED_AT,
    **request: Any,
) -> Plan:
    request.setdefault("messages", HELLO)
    return select(
        cat or small_catalog(),
        RouteRequest(**request),
        defaults=defaults,
        open_breakers=open_breakers,
        speed=book,
        cost_cap=cost_cap,
        budget=budget,
        now=now,
    )


def _ids(plan: Plan) -> list[str]:
    return [c.id for c in plan.candidates]


def _why(plan: Plan) -> dict[str, str]:
    return {e.model: e.reason for e in plan.exclusions}


def _taking(model_id: str, inputs: Sequence[str], **fields: Any) -> ModelInfo:
    """A `model` row whose architecture takes exactly `inputs`."""
    row = model(model_id, **fields).model_dump(mode="json", exclude_none=True)
    row["architecture"]["input_modalities"] = list(inputs)
    return ModelInfo.model_validate(row)


def _snapshot() -> Catalog:
    """The real 414-model catalog of 2026-08-19 (skips when ../shared is absent)."""
    data = json.loads(shared_fixture("models-2026-08-19.json").read_text())
    return Catalog(ModelList.model_validate(data).data, fetched_at=SNAPSHOT_DAY)


SNAPSHOT_DAY = 1_787_200_000.0


def _throughput(book: SpeedBook, model_id: str, tps: float) -> None:
    book.record_endpoints(
        model_id, EndpointsInfo.model_validate({"id": model_id, "endpoints": [{"throughput_last_30m": {"p50": tps}}]})
    )


# --------------------------------------------------------------------------- the plan as a whole


def test_every_model_is_either_a_candidate_or_excluded_with_a_reason() -> None:
    """The plan partitions the catalog: each id once, every exclusion with a non-empty reason."""
    plan = _plan(tools=TOOLS)
    excluded = [e.model for e in plan.exclusions]
    assert sorted(_ids(plan) + excluded) == sorted(small_catalog().entries)
    assert all(e.reason for e in plan.exclusions)


def test_with_no_constraints_the_routable_text_models_are_all_candidates() -> None:
    """Auto leaves out only the router, the free twin and the image model, each saying why."""
    plan = _plan()
    assert set(_ids(plan)) == ROUTABLE
    why = _why(plan)
    assert why[AUTO] == "a router picks its own model; name it (model='openrouter/auto') to use it"
    assert why[GEMMA_FREE].startswith("free variant")
    assert why[FLUX] == "does not output text (image)"
    assert plan.mode == "auto"


def test_each_candidate_carries_its_worst_case_cost_at_the_plans_prompt_bound() -> None:
    """Every candidate's worst case is its prices at the prompt bound and its own max_tokens."""
    plan = _plan()
    assert plan.prompt_tokens_bound == 53
    for candidate in plan.candidates:
        expected = worst_case_cost(
            candidate.entry.info.pricing, prompt_tokens=plan.prompt_tokens_bound, max_tokens=candidate.max_tokens
        )
        assert candidate.worst_case == expected


def test_a_candidates_reason_states_tier_quality_source_and_price_per_1k() -> None:
    """The selection reason shows what the score was made of, prices per 1K tokens."""
    reason = next(c.reason for c in _plan().candidates if c.id == SONNET)
    assert reason.startswith("premium tier, quality 60 (benchmark), $0.003/$0.015 per 1K, score ")


# --------------------------------------------------------------------------- units


def test_the_worst_case_of_1000_bytes_and_500_max_tokens_is_the_exact_hand_computed_decimal() -> None:
    """gpt-4o-mini: 1,048 * $0.00000015 + 500 * $0.0000006 = $0.0004572 exactly."""
    plan = _plan(model=GPT_4O_MINI, messages=[{"role": "user", "content": "x" * 1000}], max_tokens=500)
    assert plan.prompt_tokens_bound == 1048
    assert plan.candidates[0].worst_case == Decimal("0.0004572")


@pytest.mark.parametrize("cap", [Decimal("0.0002"), "0.0002", 0.0002])
def test_a_model_at_15_cents_per_million_passes_a_cap_of_0_0002_per_1k(cap: Any) -> None:
    """$0.15/M = $0.00015 per 1K, under a 0.0002 per-1K cap (given as Decimal, text or JSON number)."""
    cat = catalog([model("lab/flat", prompt="0.00000015", completion="0.00000015", index=30)])
    assert _ids(_plan(cat, max_cost_per_1k=cap)) == ["lab/flat"]


def test_a_model_at_15_cents_per_million_fails_a_cap_of_0_0001_per_1k() -> None:
    """$0.00015 per 1K is above 0.0001 per 1K: excluded, the reason in per-1K units."""
    cat = catalog([model("lab/flat", prompt="0.00000015", completion="0.00000015", index=30)])
    plan = _plan(cat, max_cost_per_1k=Decimal("0.0001"))
    assert plan.candidates == []
    assert _why(plan)["lab/flat"] == (
        "price $0.00015/$0.00015 per 1K tokens (prompt/completion) is above max_cost_per_1k $0.0001"
    )


def test_a_price_cap_holds_the_completion_price_too() -> None:
    """gpt-4o-mini's prompt ($0.00015/1K) fits 0.0002 but its completion ($0.0006/1K) does not."""
    plan = _plan(max_cost_per_1k=Decimal("0.0002"))
    assert GPT_4O_MINI not in _ids(plan)
    assert "$0.00015/$0.0006 per 1K" in _why(plan)[GPT_4O_MINI]


def test_a_price_cap_holds_the_prompt_price_too() -> None:
    """A model whose completion fits the cap but whose prompt does not is excluded."""
    cat = catalog([model("lab/dear-prompt", prompt="0.0000003", completion="0.0000001", index=30)])
    assert _ids(_plan(cat, max_cost_per_1k=Decimal("0.0002"))) == []


def test_a_price_cap_keeps_exactly_the_models_whose_both_prices_fit() -> None:
    """At 0.0003 per 1K: llama, mistral and gemma fit; gpt-4o-mini (0.0006 out) and grok (0.0005 out) do not."""
    assert set(_ids(_plan(max_cost_per_1k=Decimal("0.0003")))) == {LLAMA, MISTRAL, GEMMA}


def test_the_configured_price_cap_applies_when_the_request_gives_none() -> None:
    """SelectionDefaults.max_cost_per_1k filters like a request cap; a request cap replaces it."""
    defaults = SelectionDefaults(max_cost_per_1k=Decimal("0.0003"))
    assert set(_ids(_plan(defaults=defaults))) == {LLAMA, MISTRAL, GEMMA}
    assert GROK in _ids(_plan(defaults=defaults, max_cost_per_1k=Decimal("0.001")))


def test_a_router_with_minus_one_prices_cannot_be_held_to_a_price_cap() -> None:
    """openrouter/auto named with max_cost_per_1k is excluded: its price is only known after routing."""
    plan = _plan(model=AUTO, max_cost_per_1k=Decimal("1"))
    assert plan.candidates == []
    assert _why(plan)[AUTO] == "price is only known after routing, so it cannot be held to max_cost_per_1k"


def test_a_routers_worst_case_is_bounded_by_the_catalogs_dearest_prices() -> None:
    """openrouter/auto: 53 bound * $0.00015 (dearest prompt) + 4,096 * $0.0006 (dearest completion)."""
    plan = _plan(model=AUTO)
    (candidate,) = plan.candidates
    assert candidate.max_tokens == 4096
    assert candidate.worst_case == 53 * Decimal("0.00015") + 4096 * Decimal("0.0006") == Decimal("2.46555")
    others = _plan(model=O1_PRO).candidates[0].worst_case
    assert others is not None and candidate.worst_case >= others


def test_a_routers_worst_case_holds_the_dearest_request_fee_cache_write_and_reasoning_prices_too() -> None:
    """openrouter/auto may pick the model with a per-request fee, or one whose cache writes or reasoning cost
    more than any listed prompt or completion price: its hold covers each of them, as the model's own would."""
    cat = catalog(
        [
            model(AUTO, prompt="-1", completion="-1"),
            model("lab/fee", prompt="0.000001", completion="0.000002", request="0.01"),
            model("lab/cache", prompt="0.000002", completion="0.000002", input_cache_write="0.000008"),
            model("lab/think", prompt="0.000001", completion="0.000004", internal_reasoning="0.00001"),
        ]
    )
    (candidate,) = _plan(cat, model=AUTO, max_tokens=100).candidates
    bound = _plan(cat, model=AUTO, max_tokens=100).prompt_tokens_bound
    assert candidate.worst_case == bound * Decimal("0.000008") + 100 * Decimal("0.00001") + Decimal("0.01")
    for named in ("lab/fee", "lab/cache", "lab/think"):
        own = _plan(cat, model=named, max_tokens=100).candidates[0].worst_case
        assert own is not None and candidate.worst_case >= own


def test_a_paid_model_that_lists_no_price_cannot_be_held_to_a_price_cap_even_when_named() -> None:
    """A 0/0 row that is neither a `:free` variant nor a router (Lyria bills per clip) has an unknown
    price: excluded under max_cost_per_1k, in auto selection and in a chain alike."""
    cat = catalog([model("lab/unlisted", index=30), model("lab/cheap", prompt="0.0000001", completion="0.0000001")])
    reason = "lists no price although it is not a free variant: what it charges is unknown, so it cannot be held to"
    auto = _plan(cat, max_cost_per_1k=Decimal("0.01"))
    assert _ids(auto) == ["lab/cheap"]
    assert _why(auto)["lab/unlisted"] == f"{reason} max_cost_per_1k"
    named = _plan(cat, model="lab/unlisted", max_cost_per_1k=Decimal("0.01"))
    assert named.candidates == [] and _why(named)["lab/unlisted"] == f"{reason} max_cost_per_1k"


def test_a_paid_model_that_lists_no_price_cannot_be_held_to_a_per_request_cost_cap() -> None:
    """Its worst case would come out as $0: under a cost cap it is excluded, not waved through."""
    cat = catalog([model("lab/unlisted", index=30), model("lab/cheap", prompt="0.0000001", completion="0.0000001")])
    for plan in (_plan(cat, cost_cap=Decimal("0.0001")), _plan(cat, model="lab/unlisted", cost_cap=Decimal("1"))):
        assert "lab/unlisted" not in _ids(plan)
        assert _why(plan)["lab/unlisted"].endswith("so it cannot be held to the per-request cap")


@pytest.mark.parametrize("budget", ["the daily budget", "the monthly budget", "the daily and monthly budgets"])
def test_a_paid_model_that_lists_no_price_cannot_be_held_to_a_period_budget(budget: str) -> None:
    """Under a daily or monthly budget alone its hold would be $0, not a bound: excluded, naming the budget,
    in auto selection and named alike."""
    cat = catalog([model("lab/unlisted", index=30), model("lab/cheap", prompt="0.0000001", completion="0.0000001")])
    unknown = "lists no price although it is not a free variant: what it charges is unknown"
    reason = f"{unknown}, so it cannot be held to {budget}"
    for plan in (_plan(cat, budget=budget), _plan(cat, model="lab/unlisted", budget=budget)):
        assert "lab/unlisted" not in _ids(plan)
        assert _why(plan)["lab/unlisted"] == reason
    assert _ids(_plan(cat, model="lab/cheap", budget=budget)) == ["lab/cheap"]


def test_a_paid_model_that_lists_no_price_is_usable_when_named_without_a_cap() -> None:
    """Naming it with no cap in force sends it, as asked."""
    cat = catalog([model("lab/unlisted", index=30)])
    assert _ids(_plan(cat, model="lab/unlisted")) == ["lab/unlisted"]


def test_a_paid_model_that_lists_no_price_never_ranks_as_the_cheapest() -> None:
    """quality='low' favours cost: the unlisted model scores as the dearest, not as free."""
    cat = catalog(
        [
            model("lab/unlisted", index=40),
            model("lab/cheap", prompt="0.0000001", completion="0.0000001", index=40),
            model("lab/dear", prompt="0.00001", completion="0.00001", index=40),
        ]
    )
    plan = _plan(cat, quality="low")
    scores = {c.id: c.score for c in plan.candidates}
    assert _ids(plan)[0] == "lab/cheap"
    assert scores["lab/unlisted"] == scores["lab/dear"] < scores["lab/cheap"]


def test_a_free_variant_listed_at_zero_still_passes_any_price_cap() -> None:
    """A `:free` twin's $0 is its real price: named, it passes the tightest caps."""
    plan = _plan(model=GEMMA_FREE, max_cost_per_1k=Decimal("0.0000001"), cost_cap=Decimal("0.0000001"))
    assert _ids(plan) == [GEMMA_FREE]


@pytest.mark.parametrize(
    "path",
    [{}, {"cost_cap": Decimal(10**9)}, {"model": GROK, "models": [SONNET]}],
    ids=["auto", "auto under a cost cap", "explicit chain"],
)
def test_max_cost_per_1k_holds_the_long_prompt_prices_a_model_charges_past_its_threshold(path: dict[str, Any]) -> None:
    """Sonnet bills $6/$22.5 per 1M above 200K prompt tokens: a 0.02/1K cap keeps it for a short
    prompt (base $3/$15) and excludes it for a prompt whose bound passes 200K, saying which prices."""
    cap = Decimal("0.02")
    assert SONNET in _ids(_plan(max_cost_per_1k=cap, **path))
    plan = _plan(messages=LONG_PROMPT, max_cost_per_1k=cap, **path)
    assert SONNET not in _ids(plan) and GROK in _ids(plan)
    assert _why(plan)[SONNET] == (
        "price $0.006/$0.0225 per 1K tokens (prompt/completion) for a prompt of over 200000 tokens "
        "(this one: up to 1200048) is above max_cost_per_1k $0.02"
    )


def test_a_prompt_at_the_long_prompt_threshold_still_pays_the_base_prices() -> None:
    """An override applies to more tokens than its min_prompt_tokens: a bound of exactly 1,000 does not pass it."""
    dearer = {"min_prompt_tokens": 1000, "prompt": "0.00001", "completion": "0.00001"}
    cat = catalog([model("lab/steps", prompt="0.000001", completion="0.000001", index=30, overrides=[dearer])])
    at = [{"role": "user", "content": "x" * 952}]  # 952 + 16 + 32 = 1,000
    past = [{"role": "user", "content": "x" * 953}]
    assert _ids(_plan(cat, messages=at, max_cost_per_1k=Decimal("0.001"))) == ["lab/steps"]
    assert _ids(_plan(cat, messages=past, max_cost_per_1k=Decimal("0.001"))) == []


# --------------------------------------------------------------------------- capabilities


def test_explicit_capabilities_exclude_models_lacking_them_and_name_what_is_missing() -> None:
    """Asking for vision and reasoning leaves sonnet and o1-pro; others say which they lack."""
    plan = _plan(capabilities=["vision", "reasoning"])
    assert set(_ids(plan)) == {SONNET, O1_PRO}
    why = _why(plan)
    assert why[GPT_4O_MINI] == "lacks reasoning"
    assert why[GROK] == "lacks vision"
    assert why[MISTRAL] == "lacks reasoning, vision"


def test_configured_capabilities_apply_to_every_request() -> None:
    """SelectionDefaults.capabilities are required as if the request had asked."""
    plan = _plan(defaults=SelectionDefaults(capabilities=("reasoning",)))
    assert set(_ids(plan)) == {SONNET, O1_PRO, GROK}
    assert plan.required == {"reasoning"}


def test_giving_tools_implies_tool_support() -> None:
    """A request with tools needs the tools capability: mistral (no tools) is excluded."""
    plan = _plan(tools=TOOLS)
    assert plan.required == {"tools"}
    assert _why(plan)[MISTRAL] == "lacks tools"
    assert set(_ids(plan)) == ROUTABLE - {MISTRAL}


def test_an_image_part_implies_vision() -> None:
    """A message with an image_url part needs vision: llama, mistral and grok are excluded."""
    plan = _plan(messages=[{"role": "user", "content": [{"type": "text", "text": "what is it?"}, IMAGE]}])
    assert plan.required == {"vision"}
    assert {m for m, why in _why(plan).items() if why == "lacks vision"} == {LLAMA, MISTRAL, GROK}


def test_auto_selection_leaves_out_models_that_output_audio_or_images_besides_text() -> None:
    """A chat is not sent to a song or image generator: auto and tier selection want text alone."""
    cat = catalog(
        [
            model("lab/chat", prompt="0.000001", completion="0.000001", index=30),
            model(SONG, prompt="0.0000001", completion="0.0000001", index=30, output=("text", "audio")),
            model("lab/painter", prompt="0.0000001", completion="0.0000001", index=30, output=("image", "text")),
        ]
    )
    tier = cat.entries["lab/chat"].tier  # all three share it
    for plan in (_plan(cat, quality="low"), _plan(cat, model=tier)):
        assert _ids(plan) == ["lab/chat"]
        assert _why(plan)[SONG] == "outputs text, audio, not text alone; name it explicitly to use it"
        assert _why(plan)["lab/painter"] == "outputs image, text, not text alone; name it explicitly to use it"


def test_a_model_that_outputs_audio_besides_text_can_be_named() -> None:
    """What auto leaves out for its other outputs is a candidate when the caller names it."""
    cat = catalog([model(SONG, prompt="0.0000001", completion="0.0000001", index=30, output=("text", "audio"))])
    assert _ids(_plan(cat, model=SONG)) == [SONG]


@pytest.mark.parametrize(
    ("part", "needs"),
    [(AUDIO, "audio"), (VIDEO, "video")],
)
def test_an_audio_or_video_part_excludes_the_models_that_do_not_take_it(part: dict[str, Any], needs: str) -> None:
    """Only models whose input modalities include the part's are candidates, named or not."""
    cat = catalog(
        [
            _taking("lab/all", ["text", "image", "audio", "video"], index=30),
            _taking("lab/text", ["text"], index=30),
            _taking("lab/vision", ["text", "image"], index=30),
        ]
    )
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is in it?"}, part]}]
    plan = _plan(cat, messages=messages)
    assert _ids(plan) == ["lab/all"]
    assert _why(plan) == {"lab/text": f"does not take {needs} input", "lab/vision": f"does not take {needs} input"}
    named = _plan(cat, messages=messages, model="lab/text", models=["lab/all"])
    assert _ids(named) == ["lab/all"] and _why(named) == {"lab/text": f"does not take {needs} input"}


def test_a_file_part_goes_to_any_model_since_openrouter_parses_pdfs_for_those_that_cannot_read_them() -> None:
    """A `file` part needs no `file` input modality: every routable model stays a candidate."""
    plan = _plan(messages=[{"role": "user", "content": [{"type": "text", "text": "summarise"}, PDF]}])
    assert set(_ids(plan)) == ROUTABLE


def test_a_json_schema_response_format_implies_structured_outputs() -> None:
    """response_format json_schema needs structured_outputs: gemma and mistral (json_mode only) are out."""
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    plan = _plan(response_format=fmt)
    assert plan.required == {"structured_outputs"}
    assert _why(plan)[GEMMA] == _why(plan)[MISTRAL] == "lacks structured_outputs"


def test_a_json_object_response_format_implies_json_mode() -> None:
    """response_format json_object needs json_mode, which every text model here has."""
    plan = _plan(response_format={"type": "json_object"})
    assert plan.required == {"json_mode"}
    assert set(_ids(plan)) == ROUTABLE


@pytest.mark.parametrize(
    ("reasoning", "implied"),
    [
        ({"effort": "high"}, True),
        ({"max_tokens": 2000}, True),
        ({"enabled": False}, False),
        ({"effort": "none"}, False),
    ],
)
def test_a_reasoning_request_implies_reasoning_unless_it_turns_reasoning_off(
    reasoning: dict[str, Any], implied: bool
) -> None:
    """`reasoning` needs reasoning support, except when it is disabled or its effort is none."""
    assert ("reasoning" in _plan(reasoning=reasoning).required) is implied


# --------------------------------------------------------------------------- context and max_tokens


def test_a_prompt_that_does_not_fit_the_context_with_max_tokens_is_excluded() -> None:
    """A ~15,000-token prompt plus 4,096 max_tokens overflows llama's 16,384 context."""
    plan = _plan(messages=[{"role": "user", "content": "x" * 60_000}])
    assert plan.prompt_tokens_estimate == 15_007
    assert _why(plan)[LLAMA] == "context 16384 < ~15007 prompt + 4096 max_tokens"
    assert MISTRAL in _ids(plan)  # 32,768 context holds 15,007 + its own 2,048 max


def test_the_context_filter_admits_an_exact_fit() -> None:
    """Context ≥ prompt estimate + max_tokens passes at equality and fails one token short."""
    messages = [{"role": "user", "content": "x" * 400}]  # estimate 100 + 4 + 3 = 107
    cat = catalog([model("lab/fits", context=207, index=30), model("lab/short", context=206, index=30)])
    plan = _plan(cat, messages=messages, max_tokens=100)
    assert _ids(plan) == ["lab/fits"]
    assert _why(plan)["lab/short"] == "context 206 < ~107 prompt + 100 max_tokens"


def test_a_plans_context_reasons_quote_its_own_prompt_after_the_views_are_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prompts of ~15,007, ~16,007 and ~15,507 tokens all overflow llama's context alone (one view),
    with a short prompt's view pushing the first out (one view kept a shape): each plan, read after
    all four, quotes its own estimate, not that of the prompt that made the view it read."""
    monkeypatch.setattr(shapes, "_VIEWS_KEPT", 1)
    cat = small_catalog()
    first = _plan(cat, messages=[{"role": "user", "content": "x" * 60_000}])
    _plan(cat)  # the views are forgotten
    plans = [first] + [_plan(cat, messages=[{"role": "user", "content": "x" * n}]) for n in (64_000, 62_000)]
    assert [p.prompt_tokens_estimate for p in plans] == [15_007, 16_007, 15_507]
    for plan in plans:
        assert _why(plan)[LLAMA] == f"context 16384 < ~{plan.prompt_tokens_estimate} prompt + 4096 max_tokens"


def test_max_tokens_above_a_models_completion_limit_excludes_it() -> None:
    """Asking for 4,000 tokens excludes mistral, whose completion limit is 2,048."""
    plan = _plan(max_tokens=4000)
    assert _why(plan)[MISTRAL] == "max_tokens 4000 is above its completion limit 2048"
    assert all(c.max_tokens == 4000 for c in plan.candidates)


def test_the_default_max_tokens_is_capped_by_each_models_completion_limit() -> None:
    """With no max_tokens, mistral gets its own 2,048 and the others the configured 4,096."""
    max_tokens = {c.id: c.max_tokens for c in _plan().candidates}
    assert max_tokens[MISTRAL] == 2048
    assert max_tokens[GPT_4O_MINI] == max_tokens[SONNET] == 4096


def test_the_configured_default_max_tokens_is_used_and_never_the_models_maximum() -> None:
    """default_max_tokens=1,000 is what every candidate sends; o1-pro's 100,000 limit is not used."""
    plan = _plan(defaults=SelectionDefaults(default_max_tokens=1000))
    assert {c.max_tokens for c in plan.candidates} == {1000}


# --------------------------------------------------------------------------- other filters


def test_a_per_request_cost_cap_excludes_models_whose_worst_case_exceeds_it() -> None:
    """With a $0.01 cap, o1-pro ($2.46555 worst case) and sonnet are out; the cheap ones stay."""
    plan = _plan(cost_cap=Decimal("0.01"))
    assert _why(plan)[O1_PRO] == "worst-case cost $2.46555 is above the per-request cap $0.01"
    assert _why(plan)[SONNET].startswith("worst-case cost $")
    assert set(_ids(plan)) == ROUTABLE - {O1_PRO, SONNET}
    assert all(c.worst_case is not None and c.worst_case <= Decimal("0.01") for c in plan.candidates)


def test_the_provider_filter_keeps_only_the_named_authors_in_any_case() -> None:
    """provider=['OpenAI'] keeps openai's models; the others say whose they are."""
    plan = _plan(provider=["OpenAI"])
    assert set(_ids(plan)) == {GPT_4O_MINI, O1_PRO}
    assert _why(plan)[SONNET] == "author anthropic is not among OpenAI"


def test_a_model_with_an_open_breaker_is_excluded() -> None:
    """A model whose circuit breaker is open is not a candidate, and the plan says so."""
    plan = _plan(open_breakers=frozenset({GROK}))
    assert GROK not in _ids(plan)
    assert _why(plan)[GROK] == "circuit breaker open after repeated failures"


def test_a_retired_model_is_excluded_after_its_expiration_date() -> None:
    """A model whose expiration date has passed is out; one expiring later is kept."""
    cat = catalog(
        [
            model("lab/old", index=30, expiration_date="2026-01-01"),
            model("lab/new", index=30, expiration_date="2027-01-01"),
        ]
    )
    plan = _plan(cat)
    assert _ids(plan) == ["lab/new"]
    assert _why(plan)["lab/old"] == "retired on 2026-01-01"


def test_the_tier_filter_considers_only_that_tier() -> None:
    """tier='premium' ranks only sonnet, o1-pro and grok, and the plan notes the restriction."""
    plan = _plan(tier="premium")
    assert set(_ids(plan)) == {SONNET, O1_PRO, GROK}
    assert ("*", "only premium-tier models were considered") in [(e.model, e.reason) for e in plan.exclusions]
    assert plan.mode == "auto"


def test_a_tier_alias_as_the_model_selects_within_that_tier() -> None:
    """model='economy' ranks the economy text models (llama, mistral) and reports tier mode."""
    plan = _plan(model="economy")
    assert set(_ids(plan)) == {LLAMA, MISTRAL}
    assert all(c.entry.tier == "economy" for c in plan.candidates)
    assert plan.mode == "tier:economy"


# --------------------------------------------------------------------------- scoring


def test_the_same_inputs_give_the_same_ranking() -> None:
    """Selection is deterministic: two plans for the same request agree on order and scores."""
    first, second = _plan(tools=TOOLS), _plan(tools=TOOLS)
    assert [(c.id, c.score) for c in first.candidates] == [(c.id, c.score) for c in second.candidates]


def test_equal_scores_are_ordered_by_id() -> None:
    """Two identical models score the same and rank alphabetically by id."""
    twins = [model(i, prompt="0.000001", completion="0.000002", index=40) for i in ("zeta/twin", "alpha/twin")]
    plan = _plan(catalog(twins))
    assert _ids(plan) == ["alpha/twin", "zeta/twin"]
    assert plan.candidates[0].score == plan.candidates[1].score


def test_quality_high_ranks_a_premium_model_first() -> None:
    """With quality='high' the best-scoring premium model (sonnet, 60) comes first."""
    plan = _plan(quality="high")
    assert plan.candidates[0].id == SONNET
    assert plan.candidates[0].entry.tier == "premium"


def test_quality_low_ranks_the_cheapest_model_first() -> None:
    """With quality='low' the cheapest model (llama, $0.02/$0.05 per M) comes first."""
    plan = _plan(quality="low")
    assert plan.candidates[0].id == LLAMA
    assert plan.candidates[0].entry.tier == "economy"


def test_the_configured_quality_preference_applies_when_the_request_gives_none() -> None:
    """SelectionDefaults.quality='high' ranks like a request asking for high quality."""
    assert _ids(_plan(defaults=SelectionDefaults(quality="high"))) == _ids(_plan(quality="high"))


def test_speed_fast_prefers_a_model_with_higher_known_throughput() -> None:
    """x (200 tok/s) loses to the cheaper y (20 tok/s) by default, and wins when speed='fast'."""
    cat = catalog(
        [
            model("lab/x", prompt="0.000001", completion="0.000001", index=40),
            model("lab/y", prompt="0.0000002", completion="0.0000002", index=40),
            model("lab/z", prompt="0.0001", completion="0.0001", index=40),
        ]
    )
    book = SpeedBook()
    _throughput(book, "lab/x", 200)
    _throughput(book, "lab/y", 20)
    assert _ids(_plan(cat, book=book))[0] == "lab/y"
    assert _ids(_plan(cat, book=book, speed="fast"))[0] == "lab/x"


# --------------------------------------------------------------------------- explicit chains


def test_an_explicit_chain_is_model_then_models_then_fallbacks_in_that_order() -> None:
    """Named models keep their order (not re-ranked); a filtered one is excluded with its reason."""
    defaults = SelectionDefaults(fallback_models=(SONNET, "gone/unknown-fallback"))
    plan = _plan(defaults=defaults, model=GPT_4O_MINI, models=[GROK, MISTRAL], tools=TOOLS)
    assert plan.mode == "explicit"
    assert _ids(plan) == [GPT_4O_MINI, GROK, SONNET]
    assert _why(plan) == {MISTRAL: "lacks tools"}
    assert all(c.reason == "named in the chain" for c in plan.candidates)


def test_an_explicit_chain_is_not_reordered_by_preferences() -> None:
    """o1-pro named first stays first even with quality='low' and a cheaper model behind it."""
    assert _ids(_plan(model=O1_PRO, models=[LLAMA], quality="low")) == [O1_PRO, LLAMA]


def test_a_chain_named_by_models_alone_is_tried_in_that_order() -> None:
    """`models` without `model` is the explicit chain, not ignored in favour of auto selection."""
    plan = _plan(models=[GROK, GPT_4O_MINI])
    assert plan.mode == "explicit"
    assert _ids(plan) == [GROK, GPT_4O_MINI]


def test_a_model_named_twice_in_the_chain_is_tried_once() -> None:
    """Duplicates (also by short name) collapse to the first position."""
    assert _ids(_plan(model=GROK, models=["gpt-4o-mini", "grok-4.1-fast", GPT_4O_MINI])) == [GROK, GPT_4O_MINI]


def test_an_explicit_chain_still_applies_price_caps_and_breakers() -> None:
    """A named model above max_cost_per_1k, or with an open breaker, is excluded: no silent escalation."""
    plan = _plan(model=SONNET, models=[GROK, LLAMA], max_cost_per_1k=Decimal("0.001"), open_breakers=frozenset({LLAMA}))
    assert _ids(plan) == [GROK]
    assert _why(plan)[SONNET].startswith("price $0.003/$0.015 per 1K tokens")
    assert _why(plan)[LLAMA] == "circuit breaker open after repeated failures"


def test_a_free_variant_or_the_router_can_be_named_explicitly() -> None:
    """What auto leaves out (free twins, routers) is a candidate when the caller names it."""
    assert _ids(_plan(model=GEMMA_FREE)) == [GEMMA_FREE]
    assert _ids(_plan(model="openrouter/auto")) == [AUTO]


def test_a_configured_fallback_written_as_a_short_name_joins_the_chain() -> None:
    """Fallbacks resolve like any model reference: `llama-3.1-8b-instruct` is meta-llama's."""
    plan = _plan(defaults=SelectionDefaults(fallback_models=("llama-3.1-8b-instruct",)), model=GPT_4O_MINI)
    assert _ids(plan) == [GPT_4O_MINI, LLAMA]


def test_a_configured_fallback_that_names_no_model_is_logged_once_and_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unknown fallback is not silently dropped: a warning names it (once, however many plans)."""
    defaults = SelectionDefaults(fallback_models=("lab/no-such-fallback-model", "grok-4.1-fast"))
    with caplog.at_level(logging.WARNING, logger="modelyard.routing.selection"):
        for cat in (small_catalog(), small_catalog()):
            assert _ids(_plan(cat, defaults=defaults, model=GPT_4O_MINI)) == [GPT_4O_MINI, GROK]
    warnings = [r.getMessage() for r in caplog.records if "lab/no-such-fallback-model" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith("configured fallback model left out of every chain: 'lab/no-such-fallback-model'")


def test_an_unknown_model_in_the_chain_is_an_error_with_suggestions() -> None:
    """A typo in `models` raises rather than silently shortening the chain."""
    with pytest.raises(ModelNotFoundError) as caught:
        _plan(model=GPT_4O_MINI, models=["grok-4.1-fats"])
    assert GROK in caught.value.suggestions


# --------------------------------------------------------------------------- the per-shape fast path


def _summary(plan: Plan) -> tuple[list[tuple[str, float, int]], list[tuple[str, str]]]:
    return [(c.id, c.score, c.max_tokens) for c in plan.candidates], [(e.model, e.reason) for e in plan.exclusions]


@pytest.mark.parametrize("quality", ["low", "medium", "high"])
def test_plans_kept_per_request_shape_equal_plans_worked_out_afresh_for_every_prompt_size(quality: str) -> None:
    """Prompts that overflow no, some or most context windows, in any order, on one catalog, plan exactly
    as on a new catalog each time, and as the path that checks every model (a cost cap nothing reaches)."""
    shared = small_catalog()
    for chars in (10, 60_000, 10, 400_000, 30_000, 60_000, 900_000, 10):
        messages = [{"role": "user", "content": "x" * chars}]
        kept = _plan(shared, messages=messages, quality=quality)
        fresh = _plan(small_catalog(), messages=messages, quality=quality)
        checked = _plan(small_catalog(), messages=messages, quality=quality, cost_cap=Decimal(10**9))
        assert _summary(kept) == _summary(fresh) == _summary(checked), chars
    overflowing = _plan(shared, messages=[{"role": "user", "content": "x" * 60_000}])
    assert LLAMA not in _ids(overflowing) and "context 16384" in _why(overflowing)[LLAMA]


@pytest.mark.parametrize("quality", ["low", "high"])
def test_plans_kept_per_request_shape_under_a_price_cap_equal_plans_worked_out_afresh_across_long_prompts(
    quality: str,
) -> None:
    """Under max_cost_per_1k, prompts below and above Sonnet's 200K long-prompt threshold, in any order,
    plan on one catalog exactly as on a new one, and as the path that checks every model."""
    shared = small_catalog()
    cap = Decimal("0.02")
    for chars in (10, 1_200_000, 10, 900_000, 60_000, 1_200_000):
        messages = [{"role": "user", "content": "x" * chars}]
        kept = _plan(shared, messages=messages, quality=quality, max_cost_per_1k=cap)
        fresh = _plan(small_catalog(), messages=messages, quality=quality, max_cost_per_1k=cap)
        checked = _plan(
            small_catalog(), messages=messages, quality=quality, max_cost_per_1k=cap, cost_cap=Decimal(10**9)
        )
        assert _summary(kept) == _summary(fresh) == _summary(checked), chars
        assert (SONNET in _ids(kept)) is (chars < 200_000), chars


# --------------------------------------------------------------------------- the 414-model snapshot


def test_on_the_real_catalog_quality_low_does_not_send_a_chat_to_a_music_generator() -> None:
    """Lyria lists $0/$0 and outputs audio: the cheapest-first pick is a text model."""
    plan = _plan(_snapshot(), quality="low", now=SNAPSHOT_DAY)
    assert plan.candidates[0].entry.info.architecture.output_modalities == ["text"], plan.candidates[0].id
    assert all(c.entry.info.architecture.output_modalities == ["text"] for c in plan.candidates)


def test_on_the_real_catalog_a_tight_cost_cap_does_not_leave_the_music_generators() -> None:
    """Under $0.0001 a request only fits models whose $0 price is real: no Lyria."""
    plan = _plan(_snapshot(), cost_cap=Decimal("0.0001"), now=SNAPSHOT_DAY)
    assert not [c.id for c in plan.candidates if "lyria" in c.id]
    named = _plan(_snapshot(), model="google/lyria-3-clip-preview", cost_cap=Decimal("0.0001"), now=SNAPSHOT_DAY)
    assert named.candidates == []


def test_on_the_real_catalog_an_audio_part_goes_only_to_models_that_take_audio() -> None:
    """Every candidate for a request with an `input_audio` part lists audio among its inputs."""
    messages = [{"role": "user", "content": [{"type": "text", "text": "transcribe"}, AUDIO]}]
    plan = _plan(_snapshot(), messages=messages, now=SNAPSHOT_DAY)
    assert plan.candidates
    assert all("audio" in c.entry.info.architecture.input_modalities for c in plan.candidates)
