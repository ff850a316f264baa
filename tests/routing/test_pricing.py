"""Cost maths in OpenRouter's units (USD per token), exact to the last digit as Decimals."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from modelyard.openrouter.catalog_schemas import Pricing
from modelyard.openrouter.client import OpenRouterClient
from modelyard.openrouter.schemas import ChatRequest, ChatResponse, Usage
from modelyard.routing.pricing import (
    asks_for_1h_cache,
    cost_of_usage,
    per_1k,
    per_million,
    prompt_token_bound,
    prompt_token_estimate,
    worst_case_cost,
)
from modelyard.routing.request import RouteRequest
from modelyard.sandbox import Sandbox
from modelyard.sandbox.pricing import TokenCounts, compute_cost
from tests.routing.conftest import KEY, Rig, RigFactory

MINI = Pricing(prompt=Decimal("0.00000015"), completion=Decimal("0.0000006"))
SONNET = Pricing.model_validate(
    {
        "prompt": "0.000003",
        "completion": "0.000015",
        "input_cache_read": "0.0000003",
        "input_cache_write": "0.00000375",
        "input_cache_write_1h": "0.000006",
        "overrides": [{"min_prompt_tokens": 200000, "prompt": "0.000006", "completion": "0.0000225"}],
    }
)
# deepseek/deepseek-v4-pro in the 2026-08-19 catalog: twice the price 01:00-04:00 and 06:00-10:00 UTC.
PEAK_HOURS = {
    "prompt": "0.00000066",
    "completion": "0.00000198",
    "input_cache_read": "0.000000022",
    "overrides": [
        {"utc_start": 1000, "utc_end": 100, "prompt": "0.00000066", "completion": "0.00000198"},
        {"utc_start": 100, "utc_end": 400, "prompt": "0.00000132", "completion": "0.00000396"},
        {"utc_start": 400, "utc_end": 600, "prompt": "0.00000066", "completion": "0.00000198"},
        {"utc_start": 600, "utc_end": 1000, "prompt": "0.00000132", "completion": "0.00000396"},
    ],
}
# An off-peak discount 16:30-00:30 UTC (a window that wraps past midnight), a long-context price, and
# a cheaper long-context price at night with a discount of its own.
OFF_PEAK = {
    "prompt": "0.00000027",
    "completion": "0.0000011",
    "input_cache_read": "0.00000007",
    "input_cache_write": "0.0000003375",
    "input_cache_write_1h": "0.00000054",
    "discount": "0.1",
    "overrides": [
        {"utc_start": 1630, "utc_end": 30, "prompt": "0.000000135", "completion": "0.00000055"},
        {"min_prompt_tokens": 100000, "prompt": "0.00000054", "input_cache_write": "0.000000675"},
        {"min_prompt_tokens": 100000, "utc_start": 2200, "prompt": "0.0000004", "discount": "0.5"},
    ],
}
HAIKU = "anthropic/claude-haiku-4.5"
PEAKY = "acme/peaky"


def _usage(prompt: int, completion: int, *, cached: int = 0, written: int = 0, reasoning: int = 0) -> Usage:
    return Usage.model_validate(
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
    )


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _at(hhmm: str) -> float:
    """Epoch seconds at this UTC time of day on 10 March 2025."""
    hours, minutes = int(hhmm[:2]), int(hhmm[3:])
    return datetime(2025, 3, 10, hours, minutes, tzinfo=UTC).timestamp()


def _counts(usage: Usage, *, ttl_1h: bool = False) -> TokenCounts:
    return TokenCounts(
        prompt=usage.prompt_tokens,
        completion=usage.completion_tokens,
        cached=usage.cached_tokens,
        cache_write=usage.cache_write_tokens,
        reasoning=usage.reasoning_tokens,
        cache_ttl_1h=ttl_1h,
    )


def _without_cost(monkeypatch: pytest.MonkeyPatch, client: OpenRouterClient, *, created: float | None = None) -> None:
    """The client reads every answer as if OpenRouter had sent `cost: null` (and, if given, this `created`)."""
    chat = client.chat

    async def chat_without_cost(body: ChatRequest, **options: Any) -> ChatResponse:
        response = await chat(body, **options)
        if response.usage is not None:
            response.usage.cost = None
        if created is not None:
            response.created = int(created)
        return response

    monkeypatch.setattr(client, "chat", chat_without_cost)


# --------------------------------------------------------------------------- units


def test_a_price_per_token_is_a_thousand_times_larger_per_1k_tokens() -> None:
    """$0.15 per million tokens is 0.00000015 per token and exactly $0.00015 per 1K tokens."""
    assert per_1k(Decimal("0.00000015")) == Decimal("0.00015")
    assert per_million(Decimal("0.00000015")) == Decimal("0.15")


# --------------------------------------------------------------------------- cost_of_usage (§8.2)


def test_cost_of_usage_matches_the_gpt_5_4_nano_worked_example() -> None:
    """19 prompt and 7 completion tokens at $0.20/$1.25 per M cost exactly $0.00001255."""
    pricing = Pricing(prompt=Decimal("0.0000002"), completion=Decimal("0.00000125"))
    assert cost_of_usage(pricing, _usage(19, 7)) == Decimal("0.00001255")


def test_cost_of_usage_bills_reasoning_tokens_at_the_completion_price_when_not_priced_apart() -> None:
    """claude-haiku-4.5: 607 prompt and 105 completion (52 of them reasoning) cost exactly $0.001132."""
    pricing = Pricing(prompt=Decimal("0.000001"), completion=Decimal("0.000005"))
    assert cost_of_usage(pricing, _usage(607, 105, reasoning=52)) == Decimal("0.001132")


def test_cost_of_usage_bills_cached_prompt_tokens_at_the_cache_read_price() -> None:
    """grok-4.1-fast: 445 prompt (151 cached) → $0.00006635, plus 278 completion → $0.000139."""
    pricing = Pricing(
        prompt=Decimal("0.0000002"), completion=Decimal("0.0000005"), input_cache_read=Decimal("0.00000005")
    )
    prompt_side = cost_of_usage(pricing, _usage(445, 0, cached=151))
    assert prompt_side == Decimal("0.00006635")
    assert cost_of_usage(pricing, _usage(445, 278, cached=151)) == Decimal("0.00006635") + Decimal("0.000139")


def test_cost_of_usage_bills_cache_writes_at_the_cache_write_price() -> None:
    """Written tokens cost input_cache_write; the rest of the prompt costs the prompt price."""
    cost = cost_of_usage(SONNET, _usage(1000, 0, written=400))
    assert cost == 600 * Decimal("0.000003") + 400 * Decimal("0.00000375")


def test_cost_of_usage_bills_reasoning_tokens_at_their_own_price_when_one_is_set() -> None:
    """With internal_reasoning priced, reasoning tokens use it and the rest of the completion does not."""
    pricing = Pricing(prompt=Decimal("0.000001"), completion=Decimal("0.000004"), internal_reasoning=Decimal("0.00001"))
    cost = cost_of_usage(pricing, _usage(10, 100, reasoning=30))
    assert cost == 10 * Decimal("0.000001") + 70 * Decimal("0.000004") + 30 * Decimal("0.00001")


def test_an_override_applies_only_above_its_min_prompt_tokens() -> None:
    """At 200,000 prompt tokens the base price holds; at 200,001 the override's dearer prices do."""
    at_threshold = cost_of_usage(SONNET, _usage(200_000, 10))
    above = cost_of_usage(SONNET, _usage(200_001, 10))
    assert at_threshold == 200_000 * Decimal("0.000003") + 10 * Decimal("0.000015")
    assert above == 200_001 * Decimal("0.000006") + 10 * Decimal("0.0000225")


def test_a_discount_reduces_the_whole_cost_by_its_fraction() -> None:
    """A 0.25 discount charges exactly three quarters of the undiscounted cost."""
    discounted = MINI.model_copy(update={"discount": Decimal("0.25")})
    assert cost_of_usage(discounted, _usage(1000, 1000)) == Decimal("0.00075") * Decimal("0.75")


def test_request_and_image_prices_are_added_once_per_request_and_per_image() -> None:
    """A per-request price is added once and a per-image price once per image."""
    pricing = MINI.model_copy(update={"request": Decimal("0.005"), "image": Decimal("0.001")})
    assert cost_of_usage(pricing, _usage(0, 0), images=2) == Decimal("0.007")


def test_a_1h_cache_write_costs_the_1h_cache_write_price() -> None:
    """With a 1-hour TTL, written tokens cost input_cache_write_1h, not the 5-minute input_cache_write."""
    cost = cost_of_usage(SONNET, _usage(1000, 0, written=400), cache_ttl_1h=True)
    assert cost == 600 * Decimal("0.000003") + 400 * Decimal("0.000006")


def test_a_1h_cache_write_without_a_1h_price_costs_the_cache_write_price() -> None:
    """A catalog row without input_cache_write_1h bills a 1-hour write at its input_cache_write."""
    five_minutes_only = SONNET.model_copy(update={"input_cache_write_1h": None})
    cost = cost_of_usage(five_minutes_only, _usage(1000, 0, written=400), cache_ttl_1h=True)
    assert cost == 600 * Decimal("0.000003") + 400 * Decimal("0.00000375")


def test_a_1h_ttl_on_any_message_or_message_part_asks_for_1h_cache_writes() -> None:
    """`ttl: "1h"` on a content part or a message asks for 1-hour writes; no TTL or `5m` does not."""

    def marked(ttl: str | None) -> dict[str, Any]:
        mark = {"type": "ephemeral"} | ({"ttl": ttl} if ttl else {})
        return {"role": "system", "content": [{"type": "text", "text": "a long prefix", "cache_control": mark}]}

    assert asks_for_1h_cache([marked("1h"), *_user("hi")])
    assert asks_for_1h_cache([*_user("hi"), {"role": "user", "content": "x", "cache_control": {"ttl": "1h"}}])
    assert not asks_for_1h_cache([marked("5m"), *_user("hi")])
    assert not asks_for_1h_cache([marked(None), *_user("hi")])
    assert not asks_for_1h_cache(_user("hi"))


@pytest.mark.parametrize(
    ("hhmm", "peak"),
    [("00:59", False), ("01:00", True), ("03:59", True), ("04:00", False), ("06:00", True), ("10:00", False)],
)
def test_a_time_of_day_override_applies_inside_its_utc_window_only(hhmm: str, peak: bool) -> None:
    """deepseek-v4-pro costs twice as much from 01:00 to 04:00 and 06:00 to 10:00 UTC, start included, end not."""
    pricing = Pricing.model_validate(PEAK_HOURS)
    base = 1000 * Decimal("0.00000066") + 500 * Decimal("0.00000198")
    assert cost_of_usage(pricing, _usage(1000, 500), at=_at(hhmm)) == (2 * base if peak else base)


@pytest.mark.parametrize(("hhmm", "off_peak"), [("16:29", False), ("16:30", True), ("23:59", True), ("00:29", True)])
def test_a_time_window_that_wraps_past_midnight_applies_on_both_sides_of_it(hhmm: str, off_peak: bool) -> None:
    """A 16:30-00:30 window holds from 16:30 to midnight and from midnight to 00:29."""
    pricing = Pricing.model_validate(OFF_PEAK)
    prompt, completion = ("0.000000135", "0.00000055") if off_peak else ("0.00000027", "0.0000011")
    expected = (1000 * Decimal(prompt) + 500 * Decimal(completion)) * Decimal("0.9")
    assert cost_of_usage(pricing, _usage(1000, 500), at=_at(hhmm)) == expected


def test_an_override_applies_only_when_all_its_conditions_hold_and_brings_its_own_discount() -> None:
    """Above 100,000 prompt tokens and after 22:00 the night price and its 0.5 discount apply; either alone does not."""
    pricing = Pricing.model_validate(OFF_PEAK)
    night_long = cost_of_usage(pricing, _usage(100_001, 0), at=_at("22:00"))
    assert night_long == 100_001 * Decimal("0.0000004") * Decimal("0.5")
    day_long = cost_of_usage(pricing, _usage(100_001, 0), at=_at("12:00"))
    assert day_long == 100_001 * Decimal("0.00000054") * Decimal("0.9")
    night_short = cost_of_usage(pricing, _usage(100_000, 0), at=_at("22:00"))
    assert night_short == 100_000 * Decimal("0.000000135") * Decimal("0.9")


@pytest.mark.parametrize("hhmm", ["00:00", "00:30", "02:00", "05:00", "07:45", "12:00", "16:30", "22:00", "23:59"])
@pytest.mark.parametrize(
    ("raw", "usage", "ttl_1h"),
    [
        (PEAK_HOURS, _usage(1000, 500), False),
        (PEAK_HOURS, _usage(4000, 300, cached=1500, reasoning=100), False),
        (OFF_PEAK, _usage(1000, 500), False),
        (OFF_PEAK, _usage(4000, 300, cached=1500, written=2000, reasoning=100), False),
        (OFF_PEAK, _usage(4000, 300, cached=1500, written=2000, reasoning=100), True),
        (OFF_PEAK, _usage(150_000, 2000, cached=50_000, written=90_000), True),
    ],
    ids=["peak", "peak-cached", "off-peak", "off-peak-5m-write", "off-peak-1h-write", "off-peak-long-1h-write"],
)
def test_a_computed_cost_equals_what_the_sandbox_bills_at_any_time_of_day(
    raw: Mapping[str, Any], usage: Usage, ttl_1h: bool, hhmm: str
) -> None:
    """cost_of_usage and the sandbox's compute_cost agree to the last digit: overrides, windows, TTLs, discounts."""
    billed = compute_cost(raw, _counts(usage, ttl_1h=ttl_1h), utc_hhmm=int(hhmm.replace(":", ""))).total
    assert cost_of_usage(Pricing.model_validate(raw), usage, cache_ttl_1h=ttl_1h, at=_at(hhmm)) == billed


@pytest.mark.anyio
async def test_a_cost_computed_for_a_1h_cache_write_is_what_was_billed(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the router, OpenRouter sending no cost: a prompt written to a 1-hour cache costs what it billed."""
    rig.sandbox.state.config.cache_threshold = 0
    _without_cost(monkeypatch, rig.client)
    mark = {"type": "ephemeral", "ttl": "1h"}
    system = {
        "role": "system",
        "content": [{"type": "text", "text": "A prefix worth caching. " * 40, "cache_control": mark}],
    }
    result = await rig.router.execute(RouteRequest(messages=[system, *_user("Say hi")], model=HAIKU, cache="off"))
    assert rig.sandbox.state.ledger[-1].cache_write_tokens > 0 and result.cost_source == "computed"
    assert result.cost == rig.billed()


@pytest.mark.anyio
async def test_a_cost_computed_for_an_answer_uses_the_prices_of_the_time_it_was_created(
    rig_factory: RigFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the router: an answer OpenRouter made at 02:00 UTC without a cost is priced at 02:00's peak price."""
    row = {
        "id": PEAKY,
        "name": "Acme: Peaky",
        "context_length": 100000,
        "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
        "pricing": PEAK_HOURS,
        "top_provider": {"context_length": 100000, "max_completion_tokens": 1000, "is_moderated": False},
        "supported_parameters": ["max_tokens"],
    }
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"data": [row]}))
    async with Sandbox.running(api_key=KEY, catalog_path=catalog) as sandbox:
        rig: Rig = await rig_factory(sandbox=sandbox)
        _without_cost(monkeypatch, rig.client, created=_at("02:00"))
        result = await rig.router.execute(rig.ask(model=PEAKY, cache="off"))
    entry = sandbox.state.ledger[-1]
    counts = TokenCounts(prompt=entry.prompt_tokens, completion=entry.completion_tokens)
    assert result.cost_source == "computed" and entry.completion_tokens > 0
    assert result.cost == compute_cost(PEAK_HOURS, counts, utc_hhmm=200).total
    assert result.cost == 2 * compute_cost(PEAK_HOURS, counts, utc_hhmm=1200).total


# --------------------------------------------------------------------------- prompt bound and estimate


def test_the_bound_of_a_1000_byte_prompt_is_its_bytes_plus_the_fixed_allowances() -> None:
    """One 1,000-byte message bounds at 1,000 + 16 (per message) + 32 (per request) = 1,048 tokens."""
    assert prompt_token_bound(_user("x" * 1000)) == 1048


@pytest.mark.parametrize(
    "text",
    ["plain ascii text " * 20, "héllo wörld ñandú " * 10, "日本語のテキスト" * 30, "🎉🚀✨" * 50, ""],
)
def test_the_prompt_bound_is_at_least_the_utf8_bytes_and_the_estimate(text: str) -> None:
    """Multibyte text bounds by its UTF-8 bytes (not its characters), never below the realistic estimate."""
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]
    bound = prompt_token_bound(messages)
    assert bound >= len(text.encode()) + len(b"be brief")
    assert bound >= prompt_token_estimate(messages)


def test_emoji_count_by_bytes_in_the_bound() -> None:
    """Fifty 4-byte emoji add 200 to the bound, not 50."""
    assert prompt_token_bound(_user("🎉" * 50)) - prompt_token_bound(_user("")) == 200


@pytest.mark.parametrize("text", ["x" * 1000, 'héllo\n"wörld" 🎉' * 40])
def test_a_text_part_bounds_by_its_text_bytes_plus_its_other_keys(text: str) -> None:
    """A text part counts its UTF-8 bytes (escapes add no tokens) plus its wrapper's JSON, cache_control included."""
    wrapped = prompt_token_bound(_user(text)) + len('{"type": "text", "text": ""}')
    part = {"type": "text", "text": text}
    assert prompt_token_bound([{"role": "user", "content": [part]}]) == wrapped
    marked = {**part, "cache_control": {"type": "ephemeral"}}
    extra = len(', "cache_control": {"type": "ephemeral"}')
    assert prompt_token_bound([{"role": "user", "content": [marked]}]) == wrapped + extra


def test_tools_and_response_format_count_towards_the_bound() -> None:
    """Extras (tool schemas, response_format) add at least their JSON bytes."""
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    assert prompt_token_bound(_user("hi"), tools) >= prompt_token_bound(_user("hi")) + 60


def test_each_image_part_adds_a_generous_allowance_to_the_bound() -> None:
    """An image part is bounded by thousands of tokens, whatever the size of its URL."""
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    one = prompt_token_bound([{"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]}])
    none = prompt_token_bound([{"role": "user", "content": [{"type": "text", "text": "what is it?"}]}])
    assert one - none >= 6_000


def test_tool_calls_and_tool_call_ids_count_towards_the_bound() -> None:
    """An assistant turn with only tool calls still adds their bytes."""
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": {"arguments": "x" * 300}}]}
    assert prompt_token_bound([*_user("hi"), call]) >= prompt_token_bound(_user("hi")) + 300


# --------------------------------------------------------------------------- worst case


def test_worst_case_of_a_1000_byte_prompt_and_500_max_tokens_is_exact() -> None:
    """1,048 * $0.00000015 + 500 * $0.0000006 = $0.0001572 + $0.0003 = $0.0004572, to the digit."""
    bound = prompt_token_bound(_user("x" * 1000))
    assert worst_case_cost(MINI, prompt_tokens=bound, max_tokens=500) == Decimal("0.0004572")


def test_worst_case_adds_the_request_and_image_prices() -> None:
    """A per-request price and a per-image price are part of the worst case."""
    pricing = MINI.model_copy(update={"request": Decimal("0.01"), "image": Decimal("0.002")})
    worst = worst_case_cost(pricing, prompt_tokens=1000, max_tokens=1000, images=3)
    assert worst == Decimal("0.00075") + Decimal("0.01") + 3 * Decimal("0.002")


def test_worst_case_prices_the_completion_at_the_dearer_reasoning_price() -> None:
    """When reasoning tokens cost more than output tokens, max_tokens is bounded at the reasoning price."""
    pricing = MINI.model_copy(update={"internal_reasoning": Decimal("0.000002")})
    assert worst_case_cost(pricing, prompt_tokens=0, max_tokens=1000) == Decimal("0.002")


def test_worst_case_uses_the_override_prices_when_the_bound_passes_their_threshold() -> None:
    """A bound above 200,000 prompt tokens is priced at the long-context override."""
    worst = worst_case_cost(SONNET, prompt_tokens=250_000, max_tokens=100)
    assert worst == 250_000 * Decimal("0.000006") + 100 * Decimal("0.0000225")


def test_worst_case_covers_a_one_hour_cache_write() -> None:
    """A prompt written to a 1-hour cache costs input_cache_write_1h per token; the bound covers that."""
    usage = _usage(1000, 100, written=1000)
    one_hour = SONNET.model_copy(update={"input_cache_write": SONNET.input_cache_write_1h})
    actual = cost_of_usage(one_hour, usage)
    assert worst_case_cost(SONNET, prompt_tokens=1000, max_tokens=100) >= actual


def test_worst_case_covers_a_peak_hour_time_window_price() -> None:
    """A time-of-day override (deepseek-v4-pro peak hours, twice the base) is inside the bound at any hour."""
    pricing = Pricing.model_validate(
        {
            "prompt": "0.00000066",
            "completion": "0.00000198",
            "overrides": [
                {"utc_start": 100, "utc_end": 400, "prompt": "0.00000132", "completion": "0.00000396"},
                {"utc_start": 400, "utc_end": 600, "prompt": "0.00000066", "completion": "0.00000198"},
            ],
        }
    )
    worst = worst_case_cost(pricing, prompt_tokens=1000, max_tokens=1000)
    assert worst == 1000 * Decimal("0.00000132") + 1000 * Decimal("0.00000396")


@pytest.mark.parametrize(
    ("prompt", "completion", "cached", "written", "reasoning"),
    [(1048, 500, 0, 0, 0), (900, 500, 600, 0, 0), (1000, 400, 0, 1000, 200), (1, 1, 0, 0, 1), (0, 0, 0, 0, 0)],
)
def test_worst_case_is_never_below_the_cost_of_a_usage_within_its_bounds(
    prompt: int, completion: int, cached: int, written: int, reasoning: int
) -> None:
    """For any usage with prompt ≤ bound and completion ≤ max_tokens, the real cost fits the worst case."""
    worst = worst_case_cost(SONNET, prompt_tokens=1048, max_tokens=500)
    assert (
        cost_of_usage(SONNET, _usage(prompt, completion, cached=cached, written=written, reasoning=reasoning)) <= worst
    )


def test_worst_case_refuses_a_router_price_of_minus_one() -> None:
    """A -1 (router) price has no bound of its own: asking for one is an error, not a negative cost."""
    with pytest.raises(ValueError, match="router"):
        worst_case_cost(Pricing(prompt=Decimal(-1), completion=Decimal(-1)), prompt_tokens=10, max_tokens=10)
