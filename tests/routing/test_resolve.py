"""Model references: exact id, canonical slug, `openrouter/` prefix, short name, tier aliases, and
errors that list the closest ids."""

from __future__ import annotations

import pytest

from modelyard.errors import ModelNotFoundError
from modelyard.routing.resolve import resolve_model, resolve_reference
from tests.routing.catalog_factory import (
    AUTO,
    GEMMA,
    GEMMA_FREE,
    GPT_4O_MINI,
    SONNET,
    SONNET_CANONICAL,
    catalog,
    model,
    rows,
    small_catalog,
)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (GPT_4O_MINI, GPT_4O_MINI),
        (SONNET_CANONICAL, SONNET),
        (f"openrouter/{GPT_4O_MINI}", GPT_4O_MINI),
        (f"openrouter/{SONNET_CANONICAL}", SONNET),
        ("gpt-4o-mini", GPT_4O_MINI),
        ("GPT-4o-Mini", GPT_4O_MINI),
        ("openrouter/gpt-4o-mini", GPT_4O_MINI),
        ("  gpt-4o-mini  ", GPT_4O_MINI),
        ("claude-sonnet-4.5", SONNET),
    ],
)
def test_a_model_reference_resolves_to_one_catalog_id(reference: str, expected: str) -> None:
    """Exact id, canonical slug, openrouter/ prefix and short names (any case) all name the same model."""
    assert resolve_model(small_catalog(), reference).id == expected


def test_a_short_name_with_a_free_twin_is_the_paid_model_not_ambiguous() -> None:
    """`gemma-4-31b-it` is the paid gemma; its `:free` twin does not make the name ambiguous."""
    assert resolve_model(small_catalog(), "gemma-4-31b-it").id == GEMMA


def test_a_free_variant_is_reached_by_naming_it() -> None:
    """The full `:free` id, and its short name, resolve to the free twin."""
    cat = small_catalog()
    assert resolve_model(cat, GEMMA_FREE).id == GEMMA_FREE
    assert resolve_model(cat, "gemma-4-31b-it:free").id == GEMMA_FREE


def test_a_short_name_two_authors_share_is_ambiguous_and_lists_both() -> None:
    """The same slug under two authors raises, marked ambiguous, naming both ids."""
    cat = catalog([*rows(), model("openai/gpt-oss-120b"), model("nebius/gpt-oss-120b")])
    with pytest.raises(ModelNotFoundError, match="ambiguous") as caught:
        resolve_model(cat, "gpt-oss-120b")
    assert caught.value.ambiguous
    assert set(caught.value.suggestions) == {"openai/gpt-oss-120b", "nebius/gpt-oss-120b"}


@pytest.mark.parametrize("reference", ["gpt-4o-mni", "openai/gpt-4o-mni", "openrouter/gpt4o-mini"])
def test_an_unknown_name_lists_the_closest_ids(reference: str) -> None:
    """A typo raises ModelNotFoundError that suggests the model that was meant."""
    with pytest.raises(ModelNotFoundError, match="is not a known model; did you mean") as caught:
        resolve_model(small_catalog(), reference)
    assert not caught.value.ambiguous
    assert GPT_4O_MINI in caught.value.suggestions
    assert len(caught.value.suggestions) <= 5


def test_a_name_like_nothing_is_unknown_with_no_suggestions() -> None:
    """A name close to no id is still a clear error, pointing at list_models."""
    with pytest.raises(ModelNotFoundError, match="list_models") as caught:
        resolve_model(small_catalog(), "zzzzzzzzzzzz")
    assert caught.value.suggestions == []


@pytest.mark.parametrize("reference", [None, "", "auto", "AUTO", " auto "])
def test_auto_and_no_model_mean_automatic_selection(reference: str | None) -> None:
    """No model, or `auto` in any case, is automatic selection."""
    assert resolve_reference(small_catalog(), reference).kind == "auto"


@pytest.mark.parametrize("tier", ["economy", "balanced", "premium"])
def test_a_tier_name_is_a_tier_alias(tier: str) -> None:
    """`economy`, `balanced`, `premium` (any case) select within that tier, not a model."""
    reference = resolve_reference(small_catalog(), tier.upper())
    assert (reference.kind, reference.tier, reference.entry) == ("tier", tier, None)


def test_openrouter_auto_passes_through_as_the_router_model() -> None:
    """`openrouter/auto` is OpenRouter's own router: it resolves to that row, its prefix kept."""
    reference = resolve_reference(small_catalog(), AUTO)
    assert reference.kind == "model"
    assert reference.entry is not None and reference.entry.id == AUTO


def test_a_model_reference_carries_its_catalog_entry() -> None:
    """A resolved model reference holds the entry with its quality and tier."""
    reference = resolve_reference(small_catalog(), "gpt-4o-mini")
    assert reference.kind == "model"
    assert reference.entry is not None and (reference.entry.id, reference.entry.tier) == (GPT_4O_MINI, "balanced")
