"""`usage.cost`: the §8.2 formula in Decimal, on the wire as a double, and in the ledger."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelyard.openrouter.schemas import ChatResponse
from modelyard.sandbox import Sandbox, SandboxConfig
from modelyard.sandbox.catalog import CatalogModel
from modelyard.sandbox.pricing import TokenCounts, compute_cost, effective_prices, json_number, to_wire
from tests.sandbox.conftest import KEY, chat

pytestmark = pytest.mark.anyio

SONNET_45 = {
    "prompt": "0.000003",
    "completion": "0.000015",
    "input_cache_read": "0.0000003",
    "input_cache_write": "0.00000375",
    "input_cache_write_1h": "0.000006",
    "overrides": [
        {
            "min_prompt_tokens": 200000,
            "prompt": "0.000006",
            "completion": "0.0000225",
            "input_cache_read": "0.0000006",
            "input_cache_write": "0.0000075",
            "input_cache_write_1h": "0.000012",
        }
    ],
}


def expected_cost(model: CatalogModel, usage: dict[str, Any]) -> Decimal:
    """The §8.2 cost of a usage object, computed here independently of the sandbox's code."""
    prices = effective_prices(model.pricing, usage["prompt_tokens"])

    def price(key: str) -> Decimal:
        return prices.get(key, Decimal(0))

    cached = usage["prompt_tokens_details"]["cached_tokens"]
    written = usage["prompt_tokens_details"]["cache_write_tokens"]
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    total = (
        (usage["prompt_tokens"] - cached - written) * price("prompt")
        + cached * price("input_cache_read")
        + written * price("input_cache_write")
        + price("request")
        + (usage["completion_tokens"] - reasoning) * price("completion")
        + reasoning * (price("internal_reasoning") or price("completion"))
    )
    return Decimal(repr(float(total)))


def test_the_recorded_costs_are_reproduced_exactly() -> None:
    """The worked checks of reference §8.2 (gpt-5.4-nano, claude-haiku-4.5, grok, glm) come out exact."""
    nano = compute_cost({"prompt": "0.0000002", "completion": "0.00000125"}, TokenCounts(19, 7))
    assert (nano.prompt, nano.completion, nano.total) == (
        Decimal("0.0000038"),
        Decimal("0.00000875"),
        Decimal("0.00001255"),
    )
    haiku = {"prompt": "0.000001", "completion": "0.000005"}
    assert compute_cost(haiku, TokenCounts(16, 18)).total == Decimal("0.000106")
    assert compute_cost(haiku, TokenCounts(607, 105, reasoning=52)).total == Decimal("0.001132")
    grok = {"prompt": "0.0000002", "input_cache_read": "0.00000005", "completion": "0.0000005"}
    grok_cost = compute_cost(grok, TokenCounts(445, 278, cached=151))
    assert (grok_cost.prompt, grok_cost.completion) == (Decimal("0.00006635"), Decimal("0.000139"))
    glm = {"prompt": "0.0000012", "input_cache_read": "0.00000024", "completion": "0.000004"}
    assert compute_cost(glm, TokenCounts(359, 0, cached=256)).prompt == Decimal("0.00018504")


def test_overrides_apply_strictly_above_min_prompt_tokens() -> None:
    """At exactly 200,000 prompt tokens the base price holds; one more token switches to the override."""
    at = compute_cost(SONNET_45, TokenCounts(200_000, 10))
    above = compute_cost(SONNET_45, TokenCounts(200_001, 10))
    assert at.total == 200_000 * Decimal("0.000003") + 10 * Decimal("0.000015")
    assert above.total == 200_001 * Decimal("0.000006") + 10 * Decimal("0.0000225")


def test_cache_writes_reads_request_images_internal_reasoning_and_discount_all_count() -> None:
    """Every term of the formula, including the 1-hour cache write price and the discount."""
    pricing = {
        "prompt": "0.000001",
        "completion": "0.000002",
        "input_cache_read": "0.0000001",
        "input_cache_write": "0.00000125",
        "input_cache_write_1h": "0.000002",
        "request": "0.01",
        "image": "0.001",
        "internal_reasoning": "0.000003",
        "discount": "0.5",
    }
    tokens = TokenCounts(1000, 100, cached=200, cache_write=300, reasoning=40, images=2)
    prompt = 500 * Decimal("0.000001") + 200 * Decimal("0.0000001") + 300 * Decimal("0.00000125")
    prompt += Decimal("0.01") + 2 * Decimal("0.001")
    completion = 60 * Decimal("0.000002") + 40 * Decimal("0.000003")
    cost = compute_cost(pricing, tokens)
    assert cost.total == (prompt + completion) / 2
    one_hour = compute_cost(pricing, TokenCounts(1000, 0, cache_write=300, cache_ttl_1h=True))
    assert one_hour.prompt == (700 * Decimal("0.000001") + 300 * Decimal("0.000002") + Decimal("0.01")) / 2


def test_time_of_day_overrides_only_apply_inside_their_window() -> None:
    """utc_start/utc_end overrides are half-open and may wrap around midnight."""
    pricing = {
        "prompt": "0.000001",
        "completion": "0",
        "overrides": [{"utc_start": 2200, "utc_end": 600, "prompt": "0.0000005"}],
    }
    assert effective_prices(pricing, 10, utc_hhmm=2300)["prompt"] == Decimal("0.0000005")
    assert effective_prices(pricing, 10, utc_hhmm=600)["prompt"] == Decimal("0.000001")
    assert effective_prices(pricing, 10)["prompt"] == Decimal("0.000001")


@given(
    tokens=st.integers(min_value=0, max_value=2_000_000),
    digits=st.integers(min_value=1, max_value=999_999),
    exponent=st.integers(min_value=-12, max_value=-3),
)
def test_json_cost_read_back_as_float_then_decimal_is_the_ledger_value(tokens: int, digits: int, exponent: int) -> None:
    """For any price and count, Decimal(repr(float(json text))) equals the wire Decimal kept."""
    price = Decimal(digits).scaleb(exponent) / 3  # deliberately not representable as a double
    wire = to_wire(tokens * price)
    text = json_number(wire)
    assert "e" not in text.lower()
    assert Decimal(repr(float(text))) == wire
    assert Decimal(repr(json.loads(f'{{"c":{text}}}')["c"])) == wire


@pytest.mark.parametrize(
    "model",
    [
        "openai/gpt-4o-mini",
        "openai/gpt-5.4-nano",
        "anthropic/claude-haiku-4.5",
        "google/gemini-2.5-flash",
        "meta-llama/llama-3.1-8b-instruct",
        "deepseek/deepseek-r1",
        "x-ai/grok-4.3",
        "google/gemma-4-31b-it:free",
    ],
)
async def test_served_costs_follow_the_formula_and_equal_the_ledger(
    sandbox: Sandbox, client: httpx2.AsyncClient, model: str
) -> None:
    """Each model's usage.cost is the §8.2 cost of its usage; pydantic reads back the ledger Decimal."""
    response = await client.post("/chat/completions", json=chat(model, text="Compare two things, briefly"))
    usage = response.json()["usage"]
    served = sandbox.state.catalog.get(model)
    assert served is not None
    entry = sandbox.state.ledger[-1]
    assert entry.cost == expected_cost(served, usage)
    assert ChatResponse.model_validate_json(response.content).usage.cost == entry.cost  # type: ignore[union-attr]
    assert Decimal(repr(usage["cost"])) == entry.cost
    assert usage["cost_details"]["upstream_inference_cost"] == usage["cost"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert (entry.cost == 0) == model.endswith(":free")


async def test_a_repeated_prefix_is_read_from_the_cache(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """The second turn of a conversation reads its first two messages from the cache, at the read price."""
    first = chat("openai/gpt-4o-mini", text="Remember the number seven")
    answer = (await client.post("/chat/completions", json=first)).json()
    second = dict(first)
    second["messages"] = [
        *first["messages"],
        {"role": "assistant", "content": answer["choices"][0]["message"]["content"]},
        {"role": "user", "content": "Which number?"},
    ]
    usage = (await client.post("/chat/completions", json=second)).json()["usage"]
    system, user = (4 + (len(m["content"].encode()) + 3) // 4 for m in first["messages"])
    assert usage["prompt_tokens_details"]["cached_tokens"] == 3 + system + user
    served = sandbox.state.catalog.get("openai/gpt-4o-mini")
    assert served is not None
    assert sandbox.state.ledger[-1].cost == expected_cost(served, usage)
    assert sandbox.state.ledger[-1].cached_tokens == 3 + system + user


async def test_cache_reads_need_the_threshold_and_a_cache_price(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """Below the threshold (default 1024) nothing is cached; models without a read price never cache."""
    sandbox.state.config.cache_threshold = 1024
    short = chat("openai/gpt-4o-mini")
    long = chat("openai/gpt-4o-mini", text="lorem ipsum " * 400)
    for body in (short, short, long, long):
        usage = (await client.post("/chat/completions", json=body)).json()["usage"]
    assert sandbox.state.ledger[1].cached_tokens == 0
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] >= 1024
    sandbox.state.config.cache_threshold = 0
    for _ in range(2):
        usage = (await client.post("/chat/completions", json=chat("deepseek/deepseek-r1"))).json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0


async def test_cache_control_writes_are_billed_at_the_write_price(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """An Anthropic cache_control breakpoint writes the prefix; the next request reads it."""
    system = {
        "role": "system",
        "content": [{"type": "text", "text": "rules " * 50, "cache_control": {"type": "ephemeral"}}],
    }
    body = {"model": "anthropic/claude-haiku-4.5", "messages": [system, {"role": "user", "content": "hi"}]}
    first = (await client.post("/chat/completions", json=body)).json()["usage"]
    body["messages"][1] = {"role": "user", "content": "hello again"}
    second = (await client.post("/chat/completions", json=body)).json()["usage"]
    prefix = 3 + 4 + (len(("rules " * 50).encode()) + 3) // 4
    assert first["prompt_tokens_details"]["cache_write_tokens"] == prefix
    assert second["prompt_tokens_details"] == {
        "cached_tokens": prefix,
        "cache_write_tokens": 0,
        "audio_tokens": 0,
        "video_tokens": 0,
    }
    served = sandbox.state.catalog.get("anthropic/claude-haiku-4.5")
    assert served is not None
    assert sandbox.state.ledger[0].cost == expected_cost(served, first)


async def test_reasoning_tokens_use_the_internal_reasoning_price_when_set(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """Sonar Deep Research prices reasoning separately; Claude bills it as completion."""
    sonar = (
        await client.post("/chat/completions", json=chat("perplexity/sonar-deep-research", reasoning={"effort": "low"}))
    ).json()
    haiku = (
        await client.post("/chat/completions", json=chat("anthropic/claude-haiku-4.5", reasoning={"enabled": True}))
    ).json()
    for model, answer in (("perplexity/sonar-deep-research", sonar), ("anthropic/claude-haiku-4.5", haiku)):
        usage = answer["usage"]
        reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
        served = sandbox.state.catalog.get(model)
        assert served is not None and reasoning > 0
        prices = effective_prices(served.pricing, usage["prompt_tokens"])
        completion_side = (usage["completion_tokens"] - reasoning) * prices["completion"] + reasoning * prices.get(
            "internal_reasoning", prices["completion"]
        )
        assert Decimal(repr(usage["cost_details"]["upstream_inference_completions_cost"])) == to_wire(completion_side)
    assert effective_prices(sandbox.state.catalog.get("perplexity/sonar-deep-research").pricing, 0)[  # type: ignore[union-attr]
        "internal_reasoning"
    ] == Decimal("0.000003")


async def test_sonnet_prompts_above_200k_tokens_cost_the_override_price(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """A 200,001+ token prompt to claude-sonnet-4.5 is billed at $6/$22.50 per million."""
    sandbox.state.config.cache_threshold = 10**9
    text = "x" * (4 * 200_010)
    answer = (await client.post("/chat/completions", json=chat("anthropic/claude-sonnet-4.5", text=text))).json()
    usage = answer["usage"]
    assert usage["prompt_tokens"] > 200_000
    exact = usage["prompt_tokens"] * Decimal("0.000006") + usage["completion_tokens"] * Decimal("0.0000225")
    assert sandbox.state.ledger[-1].cost == to_wire(exact)


async def test_request_and_image_prices_are_added(tmp_path: Path) -> None:
    """A catalog with a per-request and a per-image price bills both (images also count 85 tokens)."""
    row = {
        "id": "acme/vision-1",
        "canonical_slug": "acme/vision-1-20260101",
        "name": "Acme: Vision 1",
        "context_length": 100000,
        "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"]},
        "pricing": {"prompt": "0.000001", "completion": "0.000002", "request": "0.005", "image": "0.001"},
        "top_provider": {"context_length": 100000, "max_completion_tokens": 1000, "is_moderated": False},
        "supported_parameters": ["max_tokens"],
    }
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"data": [row]}))
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
    ]
    body = {"model": "acme/vision-1", "messages": [{"role": "user", "content": content}]}
    async with (
        Sandbox.running(catalog_path=catalog, config=SandboxConfig(cache_threshold=0)) as sb,
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        usage = (await http.post(f"{sb.base_url}/chat/completions", json=body)).json()["usage"]
        assert usage["prompt_tokens"] == 3 + 4 + (len(b"What is this?") + 3) // 4 + 85
        exact = (
            usage["prompt_tokens"] * Decimal("0.000001")
            + usage["completion_tokens"] * Decimal("0.000002")
            + Decimal("0.005")
            + Decimal("0.001")
        )
        assert sb.state.ledger[-1].cost == to_wire(exact)


async def test_openrouter_auto_is_billed_at_the_routed_models_price(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """The router row's -1 prices are never used: the routed model's prices are."""
    answer = (await client.post("/chat/completions", json=chat("openrouter/auto"))).json()
    served = sandbox.state.catalog.get(answer["model"])
    assert served is not None
    assert sandbox.state.ledger[-1].cost == expected_cost(served, answer["usage"]) > 0
