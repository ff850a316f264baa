"""Worst cases with the prices worked out once (`WorstCase`) equal `pricing.worst_case_cost` to the digit,
and the float screen against a cost cap never places a model on the wrong side of it."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from modelyard.openrouter.catalog_schemas import ModelList, Pricing
from modelyard.routing.pricing import prompt_thresholds, worst_case_cost
from modelyard.routing.worst_case import Screen, WorstCase, float_cap
from tests.conftest import shared_fixture

# Long-prompt steps (one at a fractional and one at an unparseable threshold), a time-of-day window,
# cache writes dearer than the prompt, reasoning dearer than the completion, request and image prices.
STEPPED = Pricing.model_validate(
    {
        "prompt": "0.000001",
        "completion": "0.000004",
        "internal_reasoning": "0.000005",
        "input_cache_write": "0.00000125",
        "request": "0.0002",
        "image": "0.001",
        "overrides": [
            {"min_prompt_tokens": 128000, "prompt": "0.000002", "completion": "0.000008"},
            {"min_prompt_tokens": "1000.5", "input_cache_write_1h": "0.000003"},
            {"min_prompt_tokens": "many", "prompt": "0.1"},
            {"utc_start": 100, "utc_end": 400, "completion": "0.00001"},
            {"min_prompt_tokens": 256000, "request": "0.0005", "image": "0.002"},
        ],
    }
)
PLAIN = Pricing(prompt=Decimal("0.00000015"), completion=Decimal("0.0000006"))
SIZES = (0, 1, 999, 1000, 1001, 1002, 127_999, 128_000, 128_001, 255_999, 256_000, 256_001, 2_000_000)


def _snapshot_pricings() -> list[Pricing]:
    """Every priced (non-router) model's pricing in the 414-model catalog of 2026-08-19 (skips when
    ../shared is absent)."""
    data = json.loads(shared_fixture("models-2026-08-19.json").read_text())
    return [m.pricing for m in ModelList.model_validate(data).data if not m.pricing.is_dynamic]


def _sizes(pricing: Pricing) -> list[int]:
    """Prompt sizes on both sides of each of the pricing's thresholds, and a few others."""
    near = [t + d for t in prompt_thresholds(pricing) for d in (-1, 0, 1, 2)]
    return sorted({size for size in (*SIZES, *near) if size >= 0})


# --------------------------------------------------------------------------- WorstCase


def test_the_thresholds_are_whole_numbers_lowest_first_and_skip_one_that_is_not_a_number() -> None:
    """A prompt passes `1000.5` from 1,001 tokens on, as it passes `1000`; `many` is never passed."""
    assert prompt_thresholds(STEPPED) == [1000, 128000, 256000]
    assert prompt_thresholds(PLAIN) == []


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("max_tokens", "images"), [(0, 0), (1, 0), (4096, 2), (100_000, 7)])
def test_a_worst_case_equals_worst_case_cost_on_each_side_of_every_threshold(
    size: int, max_tokens: int, images: int
) -> None:
    """The same Decimal, to the digit and in the same form, at every prompt size class."""
    expected = worst_case_cost(STEPPED, prompt_tokens=size, max_tokens=max_tokens, images=images)
    got = WorstCase(STEPPED).cost(size, max_tokens, images)
    assert (got, str(got)) == (expected, str(expected))


def test_on_the_real_catalog_every_worst_case_equals_worst_case_cost() -> None:
    """Every priced model of the 414, at prompt sizes around each of its thresholds, with and without images."""
    for pricing in _snapshot_pricings():
        worst = WorstCase(pricing)
        for size in _sizes(pricing):
            for max_tokens, images in ((4096, 0), (333, 3)):
                expected = worst_case_cost(pricing, prompt_tokens=size, max_tokens=max_tokens, images=images)
                assert str(worst.cost(size, max_tokens, images)) == str(expected), (pricing, size)


def test_a_price_out_of_the_float_range_leaves_no_float_prices() -> None:
    """A negative or vanishingly small price is left to the exact maths."""
    assert WorstCase(PLAIN).floats(10) == (1.5e-07, 6e-07, 0.0, 0.0)
    assert WorstCase(PLAIN.model_copy(update={"request": Decimal(-1)})).floats(10) is None
    assert WorstCase(PLAIN.model_copy(update={"image": Decimal("1e-300")})).floats(10) is None


# --------------------------------------------------------------------------- Screen


def _check_split(models: list[tuple[int, WorstCase, int]], cap: Decimal, size: int, images: int) -> None:
    """Every model the screen calls surely above the cap is above it, and every one it leaves out of
    both lists is within it, by the exact Decimal worst case."""
    over, unsure = Screen(models).split(float_cap(cap), size, images)
    exact = {key: worst.cost(size, max_tokens, images) for key, worst, max_tokens in models}
    assert all(exact[key] > cap for key in over)
    assert all(exact[key] <= cap for key in exact.keys() - set(over) - set(unsure))


@pytest.mark.parametrize("cap", ["0", "0.0001", "0.0125", "0.05", "0.2", "3", "1e9"])
def test_the_screen_never_places_a_model_on_the_wrong_side_of_the_cap(cap: str) -> None:
    """Across sizes, max_tokens and images, the float screen agrees with the exact maths on every model it places."""
    models = [(k, WorstCase(p), m) for k, (p, m) in enumerate([(STEPPED, 100), (STEPPED, 20_000), (PLAIN, 4096)])]
    for size in SIZES:
        for images in (0, 3):
            _check_split(models, Decimal(cap), size, images)


def test_on_the_real_catalog_the_screen_never_places_a_model_on_the_wrong_side_of_the_cap() -> None:
    """Every priced model of the 414 at a few caps, sizes and image counts."""
    models = [(k, WorstCase(p), 4096) for k, p in enumerate(_snapshot_pricings())]
    for cap in ("0.001", "0.05", "1"):
        for size in (53, 130_000, 300_000):
            for images in (0, 2):
                _check_split(models, Decimal(cap), size, images)


def test_a_worst_case_exactly_at_the_cap_is_left_to_the_exact_maths() -> None:
    """Neither surely within nor surely above: the exact comparison (at most the cap fits) decides."""
    worst = WorstCase(PLAIN)
    cap = worst.cost(1000, 500)
    assert Screen([(7, worst, 500)]).split(float_cap(cap), 1000, 0) == ([], [7])
    assert Screen([(7, worst, 500)]).split(float_cap(cap * 2), 1000, 0) == ([], [])
    assert Screen([(7, worst, 500)]).split(float_cap(cap / 2), 1000, 0) == ([7], [])


@pytest.mark.parametrize(
    "models",
    [[(1, None, 10)], [(1, WorstCase(PLAIN.model_copy(update={"request": Decimal(-1)})), 10)]],
    ids=["no-worst-case", "negative-price"],
)
def test_a_model_without_float_prices_is_always_unsure(models: Any) -> None:
    """No float estimate, no placement: its worst case is worked out exactly."""
    for size in (0, 1000):
        assert Screen(models).split(1.0, size, 0) == ([], [1])


@pytest.mark.parametrize("cap", ["-1", "1e-300", "1e300"])
def test_a_cap_out_of_the_float_range_screens_nothing(cap: str) -> None:
    """No float cap: every model is left to the exact maths."""
    assert float_cap(Decimal(cap)) is None
    assert Screen([(3, WorstCase(PLAIN), 10)]).split(None, 1000, 0) == ([], [3])
