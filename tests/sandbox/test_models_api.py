"""`/models`, `/models/{id}/endpoints`, `/model/{id}` and the packaged catalog."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx2
import pytest

from modelyard.openrouter.catalog_schemas import ModelList
from modelyard.sandbox import Catalog, Sandbox
from tests.conftest import shared_fixture

pytestmark = pytest.mark.anyio

REQUIRED_IDS = {
    "openai/gpt-4o-mini",
    "openai/gpt-4o",
    "openai/gpt-4.1-mini",
    "anthropic/claude-haiku-4.5",
    "anthropic/claude-sonnet-4.5",
    "meta-llama/llama-3.1-8b-instruct",
    "meta-llama/llama-3.3-70b-instruct",
    "openrouter/auto",
}


def test_the_packaged_catalog_has_the_required_spread_of_models() -> None:
    """At least 28 rows, the named models, every capability and some without tools or JSON."""
    catalog = Catalog.load()
    ids = {model.id for model in catalog.models}
    assert len(catalog) >= 28
    assert ids >= REQUIRED_IDS
    assert any(i.startswith("openai/gpt-5") for i in ids)
    assert any("opus" in i for i in ids)
    assert any(i.startswith(("google/gemini", "google/gemma")) and "flash" in i for i in ids)
    assert any(i.startswith("google/gemini") and "pro" in i for i in ids)
    assert {"mistralai", "deepseek", "qwen", "x-ai"} <= {m.author for m in catalog.models}
    assert any(i.endswith(":free") for i in ids)
    models = [m for m in catalog.models if not m.is_router]
    assert any("image" in m.input_modalities for m in models)
    assert any(not m.supports("tools") for m in models)
    assert any(not m.supports("response_format") for m in models)
    assert any(m.supports("reasoning") for m in models)
    assert any(m.supports("structured_outputs") for m in models)


def test_the_packaged_catalog_parses_as_the_wire_schema() -> None:
    """Every row is a valid `ModelInfo`; the router has -1 prices and sonnet 4.5 its override."""
    text = Path(__file__).resolve().parents[2].joinpath("modelyard/sandbox/catalog.json").read_text()
    rows = {m.id: m for m in ModelList.model_validate_json(text).data}
    assert rows["openrouter/auto"].pricing.is_dynamic
    overrides = rows["anthropic/claude-sonnet-4.5"].pricing.overrides
    assert overrides and overrides[0]["min_prompt_tokens"] == 200000
    assert rows["anthropic/claude-sonnet-4.5"].canonical_slug == "anthropic/claude-4.5-sonnet-20250929"


def test_the_packaged_catalog_copies_its_facts_from_the_snapshot() -> None:
    """Ids, slugs, prices, limits, modalities, parameters and scores equal the August 2026 snapshot."""
    snapshot = json.loads(shared_fixture("models-2026-08-19.json").read_text())
    real = {row["id"]: row for row in snapshot["data"]}
    for model in Catalog.load().models:
        row, source = model.row, real[model.id]
        for key in ("canonical_slug", "context_length", "pricing", "top_provider", "supported_parameters"):
            assert row[key] == source[key], (model.id, key)
        assert row["architecture"] == source["architecture"], model.id
        index = (row.get("benchmarks") or {}).get("artificial_analysis", {}).get("intelligence_index")
        if index is not None:
            assert index == source["benchmarks"]["artificial_analysis"]["intelligence_index"]


def test_the_sandbox_can_load_the_full_snapshot_instead() -> None:
    """Any /models-shaped file loads: the 414-model snapshot resolves ids and canonical slugs."""
    catalog = Catalog.load(shared_fixture("models-2026-08-19.json"))
    assert len(catalog) == 414
    found = catalog.get("anthropic/claude-4.5-sonnet-20250929")
    assert found is not None and found.id == "anthropic/claude-sonnet-4.5"
    assert catalog.get("openai/gpt-4o-mini:nitro") is catalog.get("openai/gpt-4o-mini")


async def test_models_lists_every_text_model_without_auth(sandbox: Sandbox) -> None:
    """`GET /models` needs no key and returns data, total_count and links.next null."""
    async with httpx2.AsyncClient() as anonymous:
        response = await anonymous.get(f"{sandbox.base_url}/models")
    body = response.json()
    assert response.status_code == 200
    assert list(body) == ["data", "total_count", "links"]
    assert body["total_count"] == len(body["data"]) == len(sandbox.state.catalog)
    assert body["links"] == {"next": None}


async def test_models_filter_by_supported_parameters(client: httpx2.AsyncClient) -> None:
    """`supported_parameters=tools,response_format` keeps only models supporting both."""
    everything = (await client.get("/models")).json()["data"]
    body = (await client.get("/models", params={"supported_parameters": "tools,response_format"})).json()
    kept = {row["id"] for row in body["data"]}
    assert 0 < len(kept) < len(everything)
    for row in everything:
        params = set(row["supported_parameters"])
        assert (row["id"] in kept) == ({"tools", "response_format"} <= params)


async def test_models_filter_by_output_and_input_modalities(client: httpx2.AsyncClient) -> None:
    """Output modalities default to text; `input_modalities=image` keeps vision models only."""
    none = (await client.get("/models", params={"output_modalities": "embeddings"})).json()
    vision = (await client.get("/models", params={"input_modalities": "image"})).json()
    assert none == {"data": [], "total_count": 0, "links": {"next": None}}
    assert vision["data"] and all("image" in r["architecture"]["input_modalities"] for r in vision["data"])


async def test_models_paginate_with_offset_and_limit(client: httpx2.AsyncClient) -> None:
    """offset/limit slice the list and links.next points at the following page."""
    first = (await client.get("/models", params={"limit": 10})).json()
    second = (await client.get("/models", params={"offset": 10, "limit": 10})).json()
    everything = (await client.get("/models")).json()["data"]
    assert first["links"]["next"] == "/api/v1/models?offset=10&limit=10"
    assert [r["id"] for r in first["data"] + second["data"]] == [r["id"] for r in everything[:20]]
    assert (await client.get("/models", params={"limit": 0})).status_code == 400


async def test_one_model_is_served_by_id_or_canonical_slug(client: httpx2.AsyncClient) -> None:
    """`/model/{author}/{slug}` answers `{"data": Model}`, 404 for an unknown one."""
    by_id = (await client.get("/model/anthropic/claude-sonnet-4.5")).json()["data"]
    by_slug = (await client.get("/model/anthropic/claude-4.5-sonnet-20250929")).json()["data"]
    missing = await client.get("/model/nobody/nothing")
    assert by_id == by_slug
    assert by_id["id"] == "anthropic/claude-sonnet-4.5"
    assert missing.status_code == 404


async def test_endpoints_carry_deterministic_latency_and_throughput_stats(client: httpx2.AsyncClient) -> None:
    """Authenticated endpoint stats are percentiles in ms and tokens/s, the same on every call."""
    first = (await client.get("/models/openai/gpt-4o-mini/endpoints")).json()["data"]
    again = (await client.get("/models/openai/gpt-4o-mini/endpoints")).json()["data"]
    endpoint = first["endpoints"][0]
    assert list(first) == ["id", "name", "created", "description", "architecture", "endpoints"]
    assert first == again
    assert endpoint["provider_name"] == "OpenAI"
    assert endpoint["pricing"]["prompt"] == "0.00000015"
    latency, throughput = endpoint["latency_last_30m"], endpoint["throughput_last_30m"]
    assert list(latency) == ["p50", "p75", "p90", "p99"]
    assert latency["p50"] < latency["p75"] < latency["p90"] < latency["p99"]
    assert throughput["p50"] > throughput["p99"] > 0


async def test_endpoint_stats_are_null_without_a_valid_key(sandbox: Sandbox) -> None:
    """Unauthenticated (or wrongly keyed) callers see null stats, as OpenRouter documents."""
    url = f"{sandbox.base_url}/models/openai/gpt-4o-mini/endpoints"
    async with httpx2.AsyncClient() as anonymous:
        plain = (await anonymous.get(url)).json()["data"]["endpoints"][0]
        wrong = (await anonymous.get(url, headers={"Authorization": "Bearer nope"})).json()
    assert plain["latency_last_30m"] is None and plain["throughput_last_30m"] is None
    assert wrong["data"]["endpoints"][0]["latency_last_30m"] is None


async def test_endpoint_stats_are_configurable_per_model(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """set_stats and POST /_sandbox/stats change a model's stats; a bare p50 derives the rest."""
    sandbox.state.set_stats("openai/gpt-4o", latency_ms=100, throughput=250)
    control = httpx2.AsyncClient(base_url=sandbox.control_url)
    async with control:
        posted = await control.post(
            "/stats", json={"model": "openai/gpt-4o-mini", "latency_ms": {"p50": 1, "p75": 2, "p90": 3, "p99": 4}}
        )
    fast = (await client.get("/models/openai/gpt-4o/endpoints")).json()["data"]["endpoints"][0]
    mini = (await client.get("/models/openai/gpt-4o-mini/endpoints")).json()["data"]["endpoints"][0]
    assert fast["latency_last_30m"]["p50"] == 100 and fast["throughput_last_30m"]["p50"] == 250
    assert posted.status_code == 200
    assert mini["latency_last_30m"] == {"p50": 1, "p75": 2, "p90": 3, "p99": 4}


async def test_unknown_endpoints_are_404(client: httpx2.AsyncClient) -> None:
    """Endpoints of an unknown model are a 404 in the error envelope."""
    response = await client.get("/models/nobody/nothing/endpoints")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == 404


async def test_models_count_counts_the_filtered_list(client: httpx2.AsyncClient) -> None:
    """`/models/count` answers `{"data": {"count": N}}`."""
    count = (await client.get("/models/count")).json()
    assert count == {"data": {"count": len((await client.get("/models")).json()["data"])}}


def test_prices_in_the_catalog_are_decimal_strings() -> None:
    """Every price is a string that parses as a Decimal (2026 omits zero keys)."""
    for model in Catalog.load().models:
        for key, value in model.pricing.items():
            if key != "overrides":
                assert isinstance(value, str) and Decimal(value) is not None, (model.id, key)
