"""A model's several endpoints: listed at the cheapest's prices, filtered by `provider.max_price`, and the
answer's provider and `usage.cost` from the endpoint that served it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx2
import pytest

from modelyard.sandbox import Sandbox
from modelyard.sandbox.endpoints import PRICE_FILTERED
from tests.sandbox.conftest import chat

pytestmark = pytest.mark.anyio

MINI = "openai/gpt-4o-mini"
LISTED = {"prompt": "0.15", "completion": "0.6"}
"""gpt-4o-mini's listed prices, per million tokens as max_price writes them."""


def cost_at(usage: dict[str, Any], prompt: str, completion: str) -> Decimal:
    """An uncached answer's cost at these prices per token, as the wire's double."""
    total = usage["prompt_tokens"] * Decimal(prompt) + usage["completion_tokens"] * Decimal(completion)
    return Decimal(repr(float(total)))


async def serve_dearest(sandbox: Sandbox) -> None:
    async with httpx2.AsyncClient(base_url=sandbox.control_url) as control:
        response = await control.post("/config", json={"serve_dearest": True})
    assert response.json()["config"]["serve_dearest"] is True


async def test_a_model_lists_every_endpoint_and_the_cheapest_price(client: httpx2.AsyncClient) -> None:
    """`/endpoints` has gpt-4o-mini's three providers (the listed one first); `/models` keeps the cheapest's price."""
    endpoints = (await client.get(f"/models/{MINI}/endpoints")).json()["data"]["endpoints"]
    listed = next(m for m in (await client.get("/models")).json()["data"] if m["id"] == MINI)
    prices = [(e["provider_name"], e["tag"], e["pricing"]["prompt"], e["pricing"]["completion"]) for e in endpoints]
    assert prices == [
        ("OpenAI", "openai", "0.00000015", "0.0000006"),
        ("Azure (Sweden Central)", "azure/swedencentral", "0.000000165", "0.00000066"),
        ("Azure", "azure", "0.0000002", "0.0000009"),
    ]
    assert (listed["pricing"]["prompt"], listed["pricing"]["completion"]) == ("0.00000015", "0.0000006")


async def test_by_default_the_cheapest_endpoint_serves_at_the_listed_prices(client: httpx2.AsyncClient) -> None:
    """Without the knob every answer is the listed endpoint's: the bills of the existing tests do not move."""
    body = (await client.post("/chat/completions", json=chat())).json()
    assert body["provider"] == "OpenAI"
    assert Decimal(str(body["usage"]["cost"])) == cost_at(body["usage"], "0.00000015", "0.0000006")


async def test_serve_dearest_bills_the_dearest_endpoint_when_nothing_caps_it(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """The knob: with no max_price OpenRouter may pick any endpoint, and the dearest one bills its own prices."""
    await serve_dearest(sandbox)
    body = (await client.post("/chat/completions", json=chat())).json()
    assert body["provider"] == "Azure"
    assert Decimal(str(body["usage"]["cost"])) == cost_at(body["usage"], "0.0000002", "0.0000009")
    assert sandbox.state.ledger[-1].cost == Decimal(str(body["usage"]["cost"]))


@pytest.mark.parametrize(
    ("caps", "provider", "prices"),
    [
        pytest.param(LISTED, "OpenAI", ("0.00000015", "0.0000006"), id="listed"),
        pytest.param(
            {"prompt": "0.165", "completion": "0.66"}, "Azure (Sweden Central)", ("0.000000165", "0.00000066")
        ),
        pytest.param({"prompt": 0.2, "completion": 0.65}, "OpenAI", ("0.00000015", "0.0000006"), id="numbers"),
        pytest.param({"completion": "0.9", "request": "0", "image": "0"}, "Azure", ("0.0000002", "0.0000009")),
    ],
)
async def test_max_price_leaves_out_every_endpoint_priced_above_it(
    sandbox: Sandbox, client: httpx2.AsyncClient, caps: dict[str, Any], provider: str, prices: tuple[str, str]
) -> None:
    """Each cap (per million tokens for prompt and completion) filters; the dearest endpoint left serves."""
    await serve_dearest(sandbox)
    body = (await client.post("/chat/completions", json=chat(provider={"max_price": caps}))).json()
    assert body["provider"] == provider
    assert Decimal(str(body["usage"]["cost"])) == cost_at(body["usage"], *prices)


async def test_a_free_models_zero_caps_leave_its_free_endpoint(client: httpx2.AsyncClient) -> None:
    """A cap of 0 filters only endpoints that charge: a `:free` model's is free, and serves."""
    zero = {"prompt": "0", "completion": "0", "request": "0", "image": "0"}
    free = await client.post("/chat/completions", json=chat("google/gemma-4-31b-it:free", provider={"max_price": zero}))
    paid = await client.post("/chat/completions", json=chat(provider={"max_price": zero}))
    assert free.status_code == 200 and free.json()["usage"]["cost"] == 0
    assert paid.status_code == 404


async def test_max_price_below_every_endpoint_is_openrouters_404(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """No endpoint left: the 404 error envelope saying max_price did it, billed nothing."""
    response = await client.post("/chat/completions", json=chat(provider={"max_price": {"prompt": "0.1"}}))
    error = response.json()["error"]
    assert response.status_code == 404 and error["code"] == 404
    assert error["message"] == PRICE_FILTERED and "user_id" in response.json()
    assert error["availability"]["code"] == "constraint_filtered"
    assert error["availability"]["constraint"]["field"] == "provider.max_price"
    assert (sandbox.state.ledger[-1].status, sandbox.state.billed_total()) == (404, 0)


async def test_a_price_filtered_model_falls_back_along_models(client: httpx2.AsyncClient) -> None:
    """With a `models` list the next model serves, within the same caps."""
    caps = {"prompt": "0.1", "completion": "0.1"}
    body = chat(models=["meta-llama/llama-3.1-8b-instruct"], provider={"max_price": caps})
    response = await client.post("/chat/completions", json=body)
    assert response.status_code == 200 and response.json()["model"].startswith("meta-llama/llama-3.1-8b-instruct")


async def test_a_streamed_answer_reports_the_endpoint_that_served_it(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """Chunks carry the serving endpoint's provider, and the final usage its cost."""
    await serve_dearest(sandbox)
    caps = {"prompt": "0.165", "completion": "0.66"}
    raw = (await client.post("/chat/completions", json=chat(stream=True, provider={"max_price": caps}))).content
    assert b'"provider":"Azure (Sweden Central)"' in raw and b'"provider":"OpenAI"' not in raw


@pytest.mark.parametrize("caps", [{"prompt": "cheap"}, {"prompt": "-1"}, {"completion": True}, "0.15"])
async def test_a_max_price_that_is_not_a_price_is_a_400(client: httpx2.AsyncClient, caps: object) -> None:
    """A cap must be a number at or above 0 (a string or a JSON number)."""
    response = await client.post("/chat/completions", json=chat(provider={"max_price": caps}))
    assert response.status_code == 400 and "max_price" in response.json()["error"]["message"]


def test_a_catalog_listing_gpt_4o_mini_above_an_extra_endpoint_is_served_by_the_cheapest() -> None:
    """A loaded catalog may list gpt-4o-mini dearer than its extra `DEARER` endpoints: with no cap the cheapest
    allowed endpoint serves (as before the listed-endpoint fast path), not the listed one."""
    from modelyard.sandbox.catalog import CatalogModel
    from modelyard.sandbox.endpoints import serving

    model = CatalogModel.from_row({"id": MINI, "pricing": {"prompt": "0.000001", "completion": "0.000004"}})
    served = serving(model, None, dearest=False)
    assert served is not None and served.served_by == "Azure (Sweden Central)"
    capped = serving(model, {"prompt": Decimal(5), "completion": Decimal(5)}, dearest=False)
    assert capped is not None and capped.served_by == "Azure (Sweden Central)"
