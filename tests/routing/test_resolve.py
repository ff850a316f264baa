"""Model references: exact id, canonical slug (either in any case), `openrouter/` prefix, short name,
routing variants, tier aliases, and errors that list the closest ids."""

from __future__ import annotations

import json

import pytest

from modelyard.errors import ModelNotFoundError
from modelyard.openrouter.catalog_schemas import ModelList
from modelyard.routing.catalog import Catalog
from modelyard.routing.resolve import resolve_model, resolve_reference
from tests.conftest import shared_fixture
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
        ("OpenAI/GPT-4o-mini", GPT_4O_MINI),
        ("openrouter/OpenAI/GPT-4o-mini", GPT_4O_MINI),
        ("Anthropic/Claude-4.5-Sonnet-20250929", SONNET),
    ],
)
def test_a_model_reference_resolves_to_one_catalog_id(reference: str, expected: str) -> None:
    """Exact id, canonical slug, openrouter/ prefix and short names, in any case, all name the same model."""
    assert resolve_model(small_catalog(), reference).id == expected


def test_a_canonical_slug_of_the_real_snapshot_is_the_base_model_not_its_batch_or_free_row() -> None:
    """Sonnet 4.5's slug is shared with its `:batch` row, gemma's with its `:free` row: both name the base."""
    data = json.loads(shared_fixture("models-2026-08-19.json").read_text())
    cat = Catalog(ModelList.model_validate(data).data, fetched_at=0.0)
    assert resolve_model(cat, "anthropic/claude-4.5-sonnet-20250929").id == "anthropic/claude-sonnet-4.5"
    assert resolve_model(cat, "google/gemma-4-31b-it-20260402").id == "google/gemma-4-31b-it"


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


@pytest.mark.parametrize("variant", [":floor", ":FLOOR", ":nitro", ":exacto", ":Exacto"])
def test_a_routing_variant_is_the_listed_model_carrying_the_variant_to_send(variant: str) -> None:
    """`:floor`, `:nitro` and `:exacto` are not in `/models`: the entry is the base model's (id, prices,
    limits) and the variant is kept for the wire (under a limit, `provider.max_price` holds it to those prices)."""
    cat = small_catalog()
    entry = resolve_model(cat, GPT_4O_MINI + variant)
    wanted = variant.lower()
    assert (entry.id, entry.variant, entry.wire_id) == (GPT_4O_MINI, wanted, GPT_4O_MINI + wanted)
    assert entry.info is cat.entries[GPT_4O_MINI].info and entry.tier == cat.entries[GPT_4O_MINI].tier


@pytest.mark.parametrize(
    ("reference", "expected", "variant"),
    [
        ("gpt-4o-mini:floor", GPT_4O_MINI, ":floor"),
        (f"openrouter/{GPT_4O_MINI}:floor", GPT_4O_MINI, ":floor"),
        ("OpenAI/GPT-4o-mini:Floor", GPT_4O_MINI, ":floor"),
        (f"{SONNET_CANONICAL}:floor", SONNET, ":floor"),
        (f"{GEMMA_FREE}:floor", GEMMA_FREE, ":floor"),
        (GPT_4O_MINI, GPT_4O_MINI, ""),
    ],
)
def test_a_routing_variant_applies_to_any_way_of_naming_a_model(reference: str, expected: str, variant: str) -> None:
    """Short names, the openrouter/ prefix, another case, canonical slugs and `:free` rows take a variant too."""
    entry = resolve_model(small_catalog(), reference)
    assert (entry.id, entry.variant) == (expected, variant)


def test_a_listed_row_with_a_variant_suffix_is_that_row_not_a_variant() -> None:
    """Where `/models` lists `X:online` itself, its own row (and prices) is used, with nothing appended."""
    listed = model("lab/m:online", prompt="0.000002", completion="0.000004")
    entry = resolve_model(catalog([*rows(), model("lab/m"), listed]), "lab/m:online")
    assert (entry.id, entry.variant, entry.wire_id) == ("lab/m:online", "", "lab/m:online")


@pytest.mark.parametrize("suffix", [":extended", ":thinking", ":turbo", ":online"])
def test_a_suffix_whose_prices_a_budget_cannot_bound_is_unknown_unless_listed(suffix: str) -> None:
    """`:extended` and `:thinking` change context or reasoning (and prices); `:online` adds per-search
    charges no max_price caps: only a listed row is trusted, and the base model is suggested."""
    reference = GPT_4O_MINI + suffix
    with pytest.raises(ModelNotFoundError, match="is not a known model") as caught:
        resolve_model(small_catalog(), reference)
    assert GPT_4O_MINI in caught.value.suggestions


def test_a_routing_variant_of_an_unknown_model_suggests_the_model_meant() -> None:
    """A typo before the variant is unknown, named as written, suggesting the base ids that are close."""
    with pytest.raises(ModelNotFoundError, match="'openai/gpt-4o-mni:floor' is not a known model") as caught:
        resolve_model(small_catalog(), "openai/gpt-4o-mni:floor")
    assert GPT_4O_MINI in caught.value.suggestions


def test_a_routing_variant_of_openrouters_router_is_unknown() -> None:
    """`openrouter/auto` picks the model itself: a provider-sort variant on it names nothing."""
    with pytest.raises(ModelNotFoundError):
        resolve_model(small_catalog(), f"{AUTO}:floor")


def test_a_model_reference_with_a_routing_variant_carries_it() -> None:
    """`resolve_reference` keeps the variant on its entry; a plain model has none."""
    assert resolve_reference(small_catalog(), f"{GPT_4O_MINI}:floor").variant == ":floor"
    assert resolve_reference(small_catalog(), GPT_4O_MINI).variant == ""
    assert resolve_reference(small_catalog(), "economy").variant == ""


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
