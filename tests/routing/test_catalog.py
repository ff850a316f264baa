"""The catalog: quality scores and their source, tiers in thirds, lookup by id or canonical slug in any
case, JSON round trip, and the service that fetches `/models`, stores it, refreshes it on a TTL,
refuses an answer with nothing to route to, and survives a restart without network."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx2
import pytest

from modelyard.errors import ModelyardError
from modelyard.openrouter.catalog_schemas import ModelInfo, ModelList
from modelyard.openrouter.client import OpenRouterClient
from modelyard.routing.catalog import Catalog, CatalogService
from modelyard.store.sqlite import SQLiteStore
from tests.conftest import shared_fixture
from tests.routing.catalog_factory import (
    AUTO,
    FETCHED_AT,
    GEMMA,
    GEMMA_FREE,
    GPT_4O_MINI,
    LLAMA,
    O1_PRO,
    SONNET,
    SONNET_CANONICAL,
    catalog,
    model,
    rows,
    small_catalog,
)

TTL = 3600.0


class FakeClock:
    """Epoch seconds that only move when told to."""

    def __init__(self, now: float = FETCHED_AT) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeUpstream:
    """A `/models` endpoint that answers with `models`, or refuses to connect while `down`."""

    def __init__(self, models: list[ModelInfo]) -> None:
        self.models = models
        self.down = False
        self.calls = 0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.calls += 1
        if self.down:
            raise httpx2.ConnectError("connection refused", request=request)
        assert request.url.path.endswith("/models")
        data = [m.model_dump(mode="json", exclude_none=True) for m in self.models]
        return httpx2.Response(200, json={"data": data})


def _client(upstream: FakeUpstream) -> OpenRouterClient:
    return OpenRouterClient(base_url="https://or.test/api/v1", transport=httpx2.MockTransport(upstream))


def _offline_client() -> OpenRouterClient:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("network is unreachable", request=request)

    return OpenRouterClient(base_url="https://or.test/api/v1", transport=httpx2.MockTransport(refuse))


# --------------------------------------------------------------------------- quality and tiers


def test_quality_comes_from_the_intelligence_index_where_the_catalog_has_one() -> None:
    """A model with an Artificial Analysis index scores exactly that, labelled benchmark."""
    entry = small_catalog().entries[SONNET]
    assert (entry.quality, entry.quality_source) == (60.0, "benchmark")


def test_quality_without_a_benchmark_is_an_estimate_from_price_labelled_as_such() -> None:
    """llama-3.1-8b ($0.05/M out) scores 32.1 + 15.75·log10(0.05) = 11.6, labelled estimate."""
    entry = small_catalog().entries[LLAMA]
    assert entry.quality_source == "estimate"
    assert entry.quality == round(32.1 + 15.75 * math.log10(0.05), 1) == 11.6


def test_a_free_twin_is_estimated_at_its_paid_models_benchmark() -> None:
    """gemma:free has no index of its own: it takes the paid gemma's 35, still labelled estimate."""
    entry = small_catalog().entries[GEMMA_FREE]
    assert (entry.quality, entry.quality_source) == (35.0, "estimate")


def test_an_estimate_is_clamped_to_the_range_the_fit_was_made_on() -> None:
    """A $600/M model without an index is capped at 60, a $0.0001/M one floored at 5, a free one is 20."""
    models = [
        model("x/dear", prompt="0.0001", completion="0.0006"),
        model("x/cheap", prompt="0.0000000001", completion="0.0000000001"),
        model("x/zero"),
    ]
    scores = {e.id: e.quality for e in catalog(models).entries.values()}
    assert scores == {"x/dear": 60.0, "x/cheap": 5.0, "x/zero": 20.0}


def test_a_quality_override_from_settings_wins_over_benchmark_and_estimate() -> None:
    """Overrides replace both a benchmark and an estimate, labelled override, and move the tier."""
    entries = small_catalog(overrides={LLAMA: 99, SONNET: 1}).entries
    assert (entries[LLAMA].quality, entries[LLAMA].quality_source, entries[LLAMA].tier) == (99, "override", "premium")
    assert (entries[SONNET].quality, entries[SONNET].quality_source, entries[SONNET].tier) == (1, "override", "economy")


def test_tiers_split_the_scored_models_into_thirds() -> None:
    """Six models scoring 10..60 make two economy, two balanced and two premium."""
    models = [model(f"lab/m{score}", index=score) for score in (60, 10, 40, 20, 50, 30)]
    tiers = {e.id: e.tier for e in catalog(models).entries.values()}
    assert tiers == {
        "lab/m10": "economy", "lab/m20": "economy",
        "lab/m30": "balanced", "lab/m40": "balanced",
        "lab/m50": "premium", "lab/m60": "premium",
    }  # fmt: skip


def test_routers_do_not_move_the_tier_cuts() -> None:
    """Adding a router row leaves every other model's tier as it was."""
    models = [model(f"lab/m{score}", index=score) for score in (10, 20, 30, 40, 50, 60)]
    router = model(AUTO, prompt="-1", completion="-1", tokenizer="Router")
    with_router = catalog([*models, router]).entries
    without = catalog(models).entries
    assert {i: e.tier for i, e in without.items()} == {i: with_router[i].tier for i in without}


def test_the_small_catalog_tiers_match_its_table() -> None:
    """The hand-made catalog tiers as its docstring says (cuts at 30 and 50)."""
    tiers = {e.id: e.tier for e in small_catalog().entries.values() if not e.info.is_router}
    assert Counter(tiers.values()) == {"economy": 3, "balanced": 3, "premium": 3}
    assert tiers[GPT_4O_MINI] == "balanced" and tiers[O1_PRO] == "premium" and tiers[LLAMA] == "economy"


def test_capabilities_are_derived_from_the_row() -> None:
    """Vision from image input; tools, json_mode, structured_outputs, reasoning from supported parameters."""
    entries = small_catalog().entries
    assert entries[SONNET].info.capabilities.names() == [
        "vision", "tools", "json_mode", "structured_outputs", "reasoning"
    ]  # fmt: skip
    assert entries[GEMMA].info.capabilities.names() == ["vision", "tools", "json_mode"]
    assert entries[GPT_4O_MINI].info.capabilities.max_completion_tokens == 16_384


def test_a_model_is_found_by_its_id_or_its_canonical_slug() -> None:
    """`get` accepts the routable id and the dated permaslug, and nothing else."""
    cat = small_catalog()
    assert cat.get(SONNET) is cat.get(SONNET_CANONICAL) is cat.entries[SONNET]
    assert cat.get("claude-sonnet-4.5") is None


def test_a_canonical_slug_shared_with_batch_and_free_rows_names_the_base_model() -> None:
    """A model, its `:batch` and its `:free` rows share one canonical slug: it is the paid base model's."""
    slug = "lab/m-20260101"
    base = model("lab/m", prompt="0.000001", completion="0.000002", canonical=slug)
    cat = catalog([model("lab/m:free", canonical=slug), model("lab/m:batch", canonical=slug), base])
    assert cat.get(slug) is cat.entries["lab/m"]


def test_a_canonical_slug_whose_base_model_is_not_listed_names_its_variant() -> None:
    """With no base row, the canonical slug still names the one variant that is listed."""
    cat = catalog([model("lab/codex:batch", canonical="lab/codex-20260101")])
    assert cat.get("lab/codex-20260101") is cat.entries["lab/codex:batch"]


def test_every_canonical_slug_of_the_real_snapshot_names_a_base_model_where_one_is_listed() -> None:
    """In the Aug 2026 list (69 canonical slugs are shared with `:batch`/`:free`/`:thinking` rows), no
    canonical slug names a variant while its base model is listed."""
    data = json.loads(shared_fixture("models-2026-08-19.json").read_text())
    cat = Catalog(ModelList.model_validate(data).data, fetched_at=0.0)
    assert cat.get("anthropic/claude-4.5-sonnet-20250929") is cat.entries["anthropic/claude-sonnet-4.5"]
    assert cat.get("google/gemma-4-31b-it-20260402") is cat.entries["google/gemma-4-31b-it"]
    bases = {e.info.canonical_slug for e in cat.entries.values() if ":" not in e.id}
    named = {slug: cat.get(slug) for slug in bases if slug}
    assert [slug for slug, entry in named.items() if entry is None or ":" in entry.id] == []


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("OpenAI/GPT-4o-mini", GPT_4O_MINI),
        ("ANTHROPIC/CLAUDE-SONNET-4.5", SONNET),
        ("Anthropic/Claude-4.5-Sonnet-20250929", SONNET),
        ("Google/Gemma-4-31B-it:FREE", GEMMA_FREE),
    ],
)
def test_an_id_or_canonical_slug_in_another_case_is_found(written: str, expected: str) -> None:
    """Ids and canonical slugs are found in any case, as short names are."""
    cat = small_catalog()
    assert cat.get(written) is cat.entries[expected]


def test_an_exact_id_wins_over_one_that_differs_only_in_case() -> None:
    """Where two ids differ only in case, each is found exactly; another case finds the first by id."""
    cat = catalog([model("Lab/M"), model("lab/m")])
    assert cat.get("lab/m") is cat.entries["lab/m"] and cat.get("Lab/M") is cat.entries["Lab/M"]
    assert cat.get("LAB/M") is cat.entries["Lab/M"]


def test_a_duplicate_row_is_kept_once() -> None:
    """The same id twice in the list is one entry."""
    assert len(catalog([*rows(), *rows()])) == len(rows())


# --------------------------------------------------------------------------- JSON round trip


def test_the_catalog_survives_a_json_round_trip_exactly() -> None:
    """Ids, Decimal prices, overrides, capabilities, scores, tiers and fetch time come back the same."""
    original = small_catalog()
    copy = Catalog.from_json(original.to_json())
    assert copy.fetched_at == original.fetched_at
    assert list(copy.entries) == list(original.entries)
    for model_id, entry in original.entries.items():
        back = copy.entries[model_id]
        assert back.info.pricing == entry.info.pricing
        assert back.info.capabilities == entry.info.capabilities
        assert (back.quality, back.quality_source, back.tier) == (entry.quality, entry.quality_source, entry.tier)
    assert copy.entries[GPT_4O_MINI].info.pricing.prompt == Decimal("0.00000015")
    assert copy.get(SONNET_CANONICAL) is copy.entries[SONNET]


def test_the_stored_json_is_compact_raw_rows_with_their_fetch_time() -> None:
    """The stored form is `{"fetched_at", "data": [rows]}`, parseable as OpenRouter's own list."""
    payload = json.loads(small_catalog().to_json())
    assert payload["fetched_at"] == FETCHED_AT
    assert len(ModelList.model_validate({"data": payload["data"]}).data) == len(rows())


def test_overrides_are_reapplied_when_a_stored_catalog_is_read() -> None:
    """Quality overrides are settings, not data: they apply to a catalog read back from JSON."""
    copy = Catalog.from_json(small_catalog().to_json(), quality_overrides={GPT_4O_MINI: 77})
    assert (copy.entries[GPT_4O_MINI].quality, copy.entries[GPT_4O_MINI].quality_source) == (77, "override")


# --------------------------------------------------------------------------- the real snapshot


def test_the_real_snapshot_scores_every_model_and_tiers_the_routable_ones_in_thirds() -> None:
    """All 414 rows score; known indexes are benchmarks; each tier holds about a third."""
    data = json.loads(shared_fixture("models-2026-08-19.json").read_text())
    cat = Catalog(ModelList.model_validate(data).data, fetched_at=0.0)
    assert len(cat) == 414
    assert cat.entries["anthropic/claude-sonnet-4.5"].quality_source == "benchmark"
    assert cat.entries["openai/gpt-4o-mini"].quality_source == "estimate"
    tiers = Counter(e.tier for e in cat.entries.values() if not e.info.is_router)
    routable = sum(tiers.values())
    assert all(abs(count - routable / 3) <= routable * 0.1 for count in tiers.values()), tiers


# --------------------------------------------------------------------------- CatalogService


@pytest.mark.anyio
async def test_the_first_current_fetches_the_models_and_stores_them() -> None:
    """`current()` fetches `/models` once and writes the snapshot to the store."""
    upstream = FakeUpstream(rows())
    async with _client(upstream) as client, SQLiteStore(":memory:") as store:
        service = CatalogService(client, store, ttl_s=TTL, clock=FakeClock())
        assert service.loaded is None
        cat = await service.current()
        assert list(cat.entries) == sorted(m.id for m in rows())
        assert upstream.calls == 1
        stored = await store.get_value("catalog:v1")
        assert stored is not None
        assert list(Catalog.from_json(stored).entries) == list(cat.entries)


@pytest.mark.anyio
async def test_a_restart_without_network_serves_the_stored_catalog(tmp_path: Path) -> None:
    """A new process whose `/models` cannot connect reads the copy stored by the last one."""
    db = tmp_path / "store.db"
    clock = FakeClock()
    async with _client(FakeUpstream(rows())) as client, SQLiteStore(db) as store:
        await CatalogService(client, store, ttl_s=TTL, clock=clock).current()

    clock.now += 10 * TTL  # the stored copy is long stale and the network is down
    async with _offline_client() as client, SQLiteStore(db) as store:
        service = CatalogService(client, store, ttl_s=TTL, clock=clock)
        cat = await service.current()
        assert list(cat.entries) == sorted(m.id for m in rows())
        assert cat.fetched_at == FETCHED_AT
        assert service.last_error is not None and "Could not connect to https://or.test" in service.last_error


@pytest.mark.anyio
async def test_no_network_and_nothing_stored_is_a_clear_error() -> None:
    """With no copy to fall back on, `current()` says what failed and what to check."""
    async with _offline_client() as client, SQLiteStore(":memory:") as store:
        service = CatalogService(client, store, ttl_s=TTL, clock=FakeClock())
        with pytest.raises(ModelyardError, match=r"No model catalog.*OPENROUTER_BASE_URL"):
            await service.current()


def _refuse(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ConnectError("connection refused", request=request)


UNFETCHABLE: dict[str, Callable[[httpx2.Request], httpx2.Response]] = {
    "a base URL without /api/v1": lambda request: httpx2.Response(404, text="<!DOCTYPE html><h1>404</h1>"),
    "a refused connection": _refuse,
    "a server error": lambda request: httpx2.Response(500, json={"error": {"message": "Internal", "code": 500}}),
}


@pytest.mark.anyio
@pytest.mark.parametrize("reason", UNFETCHABLE)
async def test_with_nothing_stored_the_error_says_to_check_the_base_url_once(reason: str) -> None:
    """The client's errors for a wrong base URL and a refused connection already say to check
    OPENROUTER_BASE_URL; the catalog's error quoted them and said it again. Any other failure gets the
    catalog's own advice."""
    transport = httpx2.MockTransport(UNFETCHABLE[reason])
    async with (
        OpenRouterClient(base_url="https://or.test/api/v1", transport=transport) as client,
        SQLiteStore(":memory:") as store,
    ):
        with pytest.raises(ModelyardError) as caught:
            await CatalogService(client, store, ttl_s=TTL, clock=FakeClock()).current()
    message = str(caught.value)
    assert message.startswith("No model catalog: OpenRouter's /models could not be fetched (")
    assert message.count("OPENROUTER_BASE_URL") == 1, message


@pytest.mark.anyio
@pytest.mark.parametrize("stored", [False, True], ids=["nothing-stored", "a-stored-copy"])
async def test_a_failed_refresh_logs_a_last_good_copy_only_when_there_is_one(
    stored: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """On a fresh HOME it logged "keeping the last good copy" with no copy to keep. With none, the failure is
    raised at once with the same text: the log line is INFO, so a command's stderr does not show it twice."""
    caplog.set_level(logging.INFO, logger="modelyard.routing.catalog")
    clock = FakeClock()
    async with SQLiteStore(":memory:") as store:
        if stored:
            async with _client(FakeUpstream(rows())) as client:
                await CatalogService(client, store, ttl_s=TTL, clock=clock).current()
            clock.now += 2 * TTL
        async with _offline_client() as client:
            with contextlib.suppress(ModelyardError):
                await CatalogService(client, store, ttl_s=TTL, clock=clock).current()
    [record] = [r for r in caplog.records if r.name == "modelyard.routing.catalog"]
    if stored:
        assert record.getMessage().startswith("catalog refresh failed, keeping the copy fetched 7,200 s ago: ")
        assert record.levelno == logging.WARNING
    else:
        assert record.getMessage().startswith("catalog refresh failed and no copy is stored: ")
        assert record.levelno == logging.INFO


@pytest.mark.anyio
async def test_the_catalog_is_refetched_only_after_its_ttl() -> None:
    """Within the TTL `current()` does not fetch; past it, it fetches and serves the new list."""
    upstream = FakeUpstream(rows())
    clock = FakeClock()
    async with _client(upstream) as client, SQLiteStore(":memory:") as store:
        service = CatalogService(client, store, ttl_s=TTL, clock=clock)
        first = await service.current()
        clock.now += TTL - 1
        assert await service.current() is first
        assert upstream.calls == 1

        upstream.models = [*rows(), model("new/model", index=42)]
        clock.now += 1
        refreshed = await service.current()
        assert upstream.calls == 2
        assert "new/model" in refreshed.entries
        assert refreshed.fetched_at == clock.now


@pytest.mark.anyio
async def test_a_failed_refresh_keeps_the_old_copy_with_its_true_age() -> None:
    """When the refetch fails the previous catalog stays in use, and its age is not disguised."""
    upstream = FakeUpstream(rows())
    clock = FakeClock()
    async with _client(upstream) as client, SQLiteStore(":memory:") as store:
        service = CatalogService(client, store, ttl_s=TTL, clock=clock)
        first = await service.current()
        upstream.down = True
        clock.now += 2 * TTL
        assert await service.current() is first
        assert service.last_error is not None
        assert first.fetched_at == FETCHED_AT
        assert first.age_s(clock.now) == 2 * TTL


@pytest.mark.anyio
async def test_a_failed_refresh_backs_off_before_trying_again() -> None:
    """While the network is down, requests within the next minute do not refetch; after it, one does."""
    upstream = FakeUpstream(rows())
    clock = FakeClock()
    async with _client(upstream) as client, SQLiteStore(":memory:") as store:
        service = CatalogService(client, store, ttl_s=TTL, clock=clock)
        await service.current()
        upstream.down = True
        clock.now += TTL
        await service.current()
        calls = upstream.calls
        clock.now += 30
        await service.current()
        assert upstream.calls == calls
        upstream.down = False
        clock.now += 31
        cat = await service.current()
        assert upstream.calls == calls + 1
        assert cat.fetched_at == clock.now and service.last_error is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer",
    [[], [model(AUTO, prompt="-1", completion="-1", tokenizer="Router"), model("lab/image", output=("image",))]],
    ids=["empty", "no-routable-text-model"],
)
async def test_a_models_answer_with_no_routable_text_model_is_a_failed_refresh(
    answer: list[ModelInfo], tmp_path: Path
) -> None:
    """A 200 with an empty list (an outage page, a partial deploy), or with only routers and image
    models, keeps the last good catalog in memory and in the store, says why, and backs off."""
    upstream = FakeUpstream(rows())
    clock = FakeClock()
    async with _client(upstream) as client, SQLiteStore(tmp_path / "store.db") as store:
        service = CatalogService(client, store, ttl_s=TTL, clock=clock)
        first = await service.current()
        upstream.models = answer
        clock.now += 2 * TTL
        assert await service.current() is first
        assert service.last_error is not None and "no routable text model" in service.last_error
        stored = await store.get_value("catalog:v1")
        assert stored is not None and list(Catalog.from_json(stored).entries) == list(first.entries)
        calls = upstream.calls
        clock.now += 30
        await service.current()
        assert upstream.calls == calls

    async with _offline_client() as client, SQLiteStore(tmp_path / "store.db") as store:
        restarted = await CatalogService(client, store, ttl_s=TTL, clock=clock).current()
        assert list(restarted.entries) == list(first.entries)


@pytest.mark.anyio
async def test_an_empty_models_answer_with_nothing_stored_is_the_clear_no_catalog_error() -> None:
    """With no earlier copy, an empty `/models` is no catalog, not an empty one that routes nothing."""
    async with _client(FakeUpstream([])) as client, SQLiteStore(":memory:") as store:
        service = CatalogService(client, store, ttl_s=TTL, clock=FakeClock())
        with pytest.raises(ModelyardError, match=r"No model catalog.*no routable text model"):
            await service.current()
        assert await store.get_value("catalog:v1") is None


@pytest.mark.anyio
async def test_an_unparsable_stored_catalog_is_ignored_and_refetched() -> None:
    """A corrupt stored snapshot does not break startup: the service fetches a fresh one."""
    upstream = FakeUpstream(rows())
    async with _client(upstream) as client, SQLiteStore(":memory:") as store:
        await store.set_value("catalog:v1", "{not json")
        cat = await CatalogService(client, store, ttl_s=TTL, clock=FakeClock()).current()
        assert len(cat) == len(rows()) and upstream.calls == 1
