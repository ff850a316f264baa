"""A tier named as the model implies its own quality preference: premium ranks for quality, economy for
price, balanced as the default does; a `quality` the request gives still wins."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelyard.openrouter.catalog_schemas import ModelList
from modelyard.routing.catalog import Catalog
from modelyard.routing.request import RouteRequest
from modelyard.routing.selection import Plan, SelectionDefaults, select
from tests.conftest import shared_fixture
from tests.routing.catalog_factory import FETCHED_AT, GROK, LLAMA, SONNET, small_catalog

HELLO = [{"role": "user", "content": "hello"}]
SNAPSHOT_DAY = 1_787_200_000.0


def _plan(cat: Catalog | None = None, *, defaults: SelectionDefaults | None = None, **request: Any) -> Plan:
    return select(
        cat or small_catalog(),
        RouteRequest(messages=HELLO, **request),
        defaults=defaults or SelectionDefaults(),
        now=SNAPSHOT_DAY if cat is not None else FETCHED_AT,
    )


def _ids(plan: Plan) -> list[str]:
    return [c.id for c in plan.candidates]


def _snapshot() -> Catalog:
    data = json.loads(shared_fixture("models-2026-08-19.json").read_text())
    return Catalog(ModelList.model_validate(data).data, fetched_at=SNAPSHOT_DAY)


def test_premium_without_a_quality_ranks_the_strongest_model_first() -> None:
    """Sonnet (60) leads the premium tier, not the cheaper grok (50) that medium quality puts first."""
    assert _ids(_plan(model="premium"))[0] == SONNET
    assert _ids(_plan(model="premium")) == _ids(_plan(model="premium", quality="high"))


def test_a_quality_the_request_gives_wins_over_the_tiers() -> None:
    """premium with quality='medium' ranks as it always did: grok first."""
    assert _ids(_plan(model="premium", quality="medium"))[0] == GROK


def test_the_tier_outranks_the_servers_default_quality() -> None:
    """A configured default of 'low' is for automatic selection; asking for premium still ranks for quality."""
    assert _ids(_plan(model="premium", defaults=SelectionDefaults(quality="low")))[0] == SONNET


def test_economy_ranks_as_quality_low_and_balanced_as_medium() -> None:
    """Each tier's implied preference: economy → low, balanced → medium."""
    assert _ids(_plan(model="economy")) == _ids(_plan(model="economy", quality="low"))
    assert _ids(_plan(model="economy"))[0] == LLAMA
    assert _ids(_plan(model="balanced")) == _ids(_plan(model="balanced", quality="medium"))


def test_the_tier_field_implies_the_same_preference_as_a_tier_model() -> None:
    """`tier='premium'` with model auto ranks like model='premium'."""
    assert _ids(_plan(tier="premium")) == _ids(_plan(model="premium"))


def test_auto_without_a_tier_keeps_the_default_quality() -> None:
    """No tier: the server's default (medium) applies, as before."""
    assert _ids(_plan()) == _ids(_plan(quality="medium"))


@pytest.mark.parametrize("tier", ["premium", "economy", "balanced"])
def test_on_the_real_catalog_a_tier_ranks_as_its_implied_quality(tier: str) -> None:
    """Over the 414 models, each tier without a quality ranks exactly as with its implied one."""
    implied = {"premium": "high", "economy": "low", "balanced": "medium"}[tier]
    cat = _snapshot()
    assert _ids(_plan(cat, model=tier)) == _ids(_plan(cat, model=tier, quality=implied))


def test_on_the_real_catalog_premium_leads_with_the_strongest_models_not_the_cheapest() -> None:
    """The tier's best (63.1) leads and the first five score 55 or more; before, deepseek-v4-flash (51.8) led."""
    cat = _snapshot()
    leaders = _plan(cat, model="premium").candidates[:5]
    assert all(c.entry.quality >= 55 for c in leaders), [(c.id, c.entry.quality) for c in leaders]
    top = max(e.quality for e in cat.entries.values() if e.tier == "premium")
    assert leaders[0].entry.quality == top
