"""The real 414-model `/models` snapshot parses, and derived capabilities match the data."""

from __future__ import annotations

from decimal import Decimal

import pytest

from modelyard.openrouter.catalog_schemas import ModelInfo, ModelList
from tests.conftest import shared_fixture


@pytest.fixture(scope="module")
def snapshot() -> dict[str, ModelInfo]:
    path = shared_fixture("models-2026-08-19.json")
    models = ModelList.model_validate_json(path.read_bytes()).data
    return {model.id: model for model in models}


def test_all_414_models_of_the_snapshot_parse(snapshot: dict[str, ModelInfo]) -> None:
    """Every row of the real snapshot validates, none lost."""
    assert len(snapshot) == 414


def test_a_2026_row_with_omitted_zero_prices_reads_them_as_zero(snapshot: dict[str, ModelInfo]) -> None:
    """gpt-4o-mini leaves request/image prices out; they read as 0 and real prices stay exact."""
    pricing = snapshot["openai/gpt-4o-mini"].pricing
    assert pricing.prompt == Decimal("0.00000015")
    assert pricing.completion == Decimal("0.0000006")
    assert pricing.request == 0 and pricing.image == 0
    assert pricing.input_cache_read == Decimal("0.000000075")


def test_the_auto_router_is_recognised_by_its_minus_one_prices(snapshot: dict[str, ModelInfo]) -> None:
    """openrouter/auto carries -1 prices and is a router; ordinary models are not."""
    auto = snapshot["openrouter/auto"]
    assert auto.pricing.is_dynamic and auto.is_router
    assert not snapshot["openai/gpt-4o-mini"].is_router


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("openai/gpt-4o-mini", {"vision", "tools", "json_mode", "structured_outputs"}),
        ("anthropic/claude-sonnet-4.5", {"vision", "tools", "json_mode", "structured_outputs", "reasoning"}),
        ("deepseek/deepseek-r1", {"tools", "json_mode", "structured_outputs", "reasoning"}),
        ("google/gemma-4-31b-it:free", {"vision", "tools", "json_mode", "reasoning"}),
        ("meta-llama/llama-3.1-8b-instruct", {"tools", "json_mode", "structured_outputs"}),
        ("gryphe/mythomax-l2-13b", {"json_mode", "structured_outputs"}),
    ],
)
def test_capabilities_are_derived_from_modalities_and_parameters(
    snapshot: dict[str, ModelInfo], model_id: str, expected: set[str]
) -> None:
    """Vision from image input, tools/json/structured/reasoning from supported parameters."""
    assert set(snapshot[model_id].capabilities.names()) == expected


def test_context_and_completion_limits_come_from_the_row(snapshot: dict[str, ModelInfo]) -> None:
    """Context length and max completion tokens are read, and a router's unknown max stays None."""
    sonnet = snapshot["anthropic/claude-sonnet-4.5"].capabilities
    assert (sonnet.context_length, sonnet.max_completion_tokens) == (1_000_000, 64_000)
    assert snapshot["openrouter/auto"].capabilities.max_completion_tokens is None


def test_intelligence_index_is_read_where_present_and_none_elsewhere(snapshot: dict[str, ModelInfo]) -> None:
    """Artificial Analysis' index is a float where the row has one, None where it is null or absent."""
    assert snapshot["anthropic/claude-sonnet-4.5"].intelligence_index == pytest.approx(37.4)
    assert snapshot["meta-llama/llama-3.1-8b-instruct"].intelligence_index is None
    assert snapshot["mistralai/mistral-nemo"].intelligence_index is None
    with_index = [m for m in snapshot.values() if m.intelligence_index is not None]
    assert 100 < len(with_index) <= 166


def test_the_sonnet_long_context_override_is_kept(snapshot: dict[str, ModelInfo]) -> None:
    """Conditional prices above 200K prompt tokens survive parsing."""
    overrides = snapshot["anthropic/claude-sonnet-4.5"].pricing.overrides
    assert overrides and overrides[0]["min_prompt_tokens"] == 200000
