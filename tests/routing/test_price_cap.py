"""`provider.max_price`: under any limit an attempt may not be served dearer than the prices its budget hold
was worked out at, so the bill never exceeds the reservation; a price-filtered 404 moves on and says why."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest

from modelyard.errors import AllCandidatesFailedError, NoCandidatesError
from modelyard.openrouter import OpenRouterClient
from modelyard.routing.price_cap import on_the_wire
from modelyard.routing.request import RouteRequest
from modelyard.routing.router import Router
from modelyard.sandbox import endpoints
from modelyard.sandbox.catalog import Catalog as SandboxCatalog
from modelyard.sandbox.endpoints import Endpoint
from modelyard.settings import Settings
from modelyard.store import SQLiteStore
from tests.routing.catalog_factory import AUTO, GEMMA_FREE, GPT_4O_MINI, LLAMA, model, rows
from tests.routing.conftest import Rig, RigFactory

pytestmark = pytest.mark.anyio

BASE_URL = "https://openrouter.test/api/v1"
KEY = "sk-or-v1-test"
HI = "Hi"
"""With max_tokens=30 the sandbox's gpt-4o-mini fills all 30 tokens: at the dearest endpoint's prices its bill
($0.0000286) is above the worst case reserved at the listed ones ($0.0000255)."""
LISTED = {"prompt": "0.15", "completion": "0.6", "request": "0"}
"""gpt-4o-mini's listed prices as max_price writes them: per million tokens, plain decimal strings."""


def _answer(body: dict[str, Any]) -> httpx2.Response:
    answer = {
        "id": "gen-1-abc",
        "model": body["model"].split(":")[0],
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "cost": 0.0000001},
    }
    return httpx2.Response(200, json=answer)


@asynccontextmanager
async def _router(
    tmp_path: Path, extra: Sequence[Any], sent: list[dict[str, Any]], **settings: Any
) -> AsyncIterator[Router]:
    """A Router over the hand-made catalog (plus `extra` rows) whose upstream records each body it is posted."""
    catalog = [row.model_dump(mode="json") for row in [*rows(), *extra]]

    def upstream(http: httpx2.Request) -> httpx2.Response:
        if http.url.path.endswith("/models"):
            return httpx2.Response(200, json={"data": catalog})
        sent.append(json.loads(http.content))
        return _answer(sent[-1])

    db = tmp_path / f"{uuid.uuid4().hex}.db"  # its own: a store keeps the catalog it read
    config = Settings(openrouter_api_key=KEY, openrouter_base_url=BASE_URL, store=f"sqlite:///{db}", **settings)
    async with OpenRouterClient(KEY, base_url=BASE_URL, transport=httpx2.MockTransport(upstream)) as client:
        store = SQLiteStore(db)
        try:
            yield Router(client, store, config)
        finally:
            await store.aclose()


async def _sent(tmp_path: Path, request: RouteRequest, *, extra: Sequence[Any] = (), **settings: Any) -> dict[str, Any]:
    """The one body `request` posts upstream."""
    sent: list[dict[str, Any]] = []
    async with _router(tmp_path, extra, sent, **settings) as router:
        await router.execute(request.model_copy(update={"cache": "off"}))
    (body,) = sent
    return body


def _ask(text: str = "hello", **fields: Any) -> RouteRequest:
    return RouteRequest(messages=[{"role": "user", "content": text}], **fields)


async def _worst_case(rig: Rig, request: RouteRequest) -> Decimal:
    worst = (await rig.router.plan(request)).candidates[0].worst_case_cost
    assert worst is not None
    return worst


# --------------------------------------------------------------------------- the bill stays within the hold


async def test_a_dearer_endpoint_is_never_billed_above_the_reservation(rig: Rig) -> None:
    """The sandbox serves from the dearest endpoint it may: under max_cost (set to the worst case itself) the
    attempt carries max_price, so the listed endpoint serves and the bill stays within the hold and the cap."""
    rig.sandbox.state.config.serve_dearest = True
    request = rig.ask(HI, model=GPT_4O_MINI, max_tokens=30, cache="off")
    worst = await _worst_case(rig, request)
    result = await rig.router.execute(request.model_copy(update={"max_cost": worst}))
    assert rig.billed() <= worst
    assert result.cost is not None and result.cost <= worst
    assert result.provider == "OpenAI"


async def test_under_a_daily_budget_a_dearer_endpoint_is_never_billed_above_the_reservation(
    rig_factory: RigFactory,
) -> None:
    """The daily budget alone is a limit too: what the day counts is never more than what was held for it."""
    rig: Rig = await rig_factory(budget={"daily": "1"})
    rig.sandbox.state.config.serve_dearest = True
    request = rig.ask(HI, model=GPT_4O_MINI, max_tokens=30, cache="off")
    worst = await _worst_case(rig, request)
    result = await rig.router.execute(request)
    spent = (await rig.router.budgets.totals()).spent_today
    assert spent == rig.billed() <= worst
    assert result.provider == "OpenAI"


async def test_with_no_limit_in_force_any_endpoint_may_serve(rig: Rig) -> None:
    """Nothing asked to hold: no max_price is sent, and OpenRouter's load balancing may bill a dearer provider."""
    rig.sandbox.state.config.serve_dearest = True
    result = await rig.router.execute(rig.ask(HI, model=GPT_4O_MINI, max_tokens=30, cache="off"))
    assert result.provider == "Azure"


@pytest.mark.parametrize("variant", [":nitro", ":exacto"])
async def test_nitro_and_exacto_are_sent_as_asked_and_bounded_like_the_model(rig: Rig, variant: str) -> None:
    """A provider-sort variant under a cap is held to the listed prices like its model."""
    rig.sandbox.state.config.serve_dearest = True
    request = rig.ask(HI, model=GPT_4O_MINI + variant, max_tokens=30, cache="off")
    worst = await _worst_case(rig, request)
    result = await rig.router.execute(request.model_copy(update={"max_cost": worst}))
    assert (result.resolved_model, result.provider) == (GPT_4O_MINI, "OpenAI")
    assert rig.billed() <= worst
    assert rig.sandbox.state.ledger[-1].requested_model == GPT_4O_MINI + variant


async def test_an_endpoint_priced_between_the_listed_prompt_and_cache_write_prices_is_left_out(
    rig_factory: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """claude-haiku-4.5 lists $1/M prompt and $2/M for a 1-hour cache write; a dearer provider at $1.9/M would
    write its cache at $3.8/M, above what the hold charged a token. Under a budget it must not serve."""
    haiku = "anthropic/claude-haiku-4.5"
    dearer = Endpoint(
        "Dearer Cloud",
        "dearer-cloud",
        {
            "prompt": "0.0000019",
            "completion": "0.000005",
            "input_cache_read": "0.00000019",
            "input_cache_write": "0.000002375",
            "input_cache_write_1h": "0.0000038",
        },
    )
    monkeypatch.setitem(endpoints.DEARER, haiku, (dearer,))
    rig: Rig = await rig_factory(budget={"daily": "1"})
    rig.sandbox.state.config.serve_dearest = True
    result = await rig.router.execute(rig.ask(HI, model=haiku, max_tokens=30, cache="off"))
    assert result.provider == "Anthropic"


async def test_a_free_model_under_a_budget_is_capped_at_zero_and_still_served(rig_factory: RigFactory) -> None:
    """A `:free` model's endpoints are free: a cap of 0 leaves them, and the hold of $0 is the bill."""
    rig: Rig = await rig_factory(budget={"daily": "1"})
    result = await rig.router.execute(rig.ask(model="google/gemma-4-31b-it:free", cache="off"))
    assert result.cost == 0 and rig.billed() == 0


# --------------------------------------------------------------------------- what is sent


async def test_the_wire_body_carries_max_price_at_the_reserved_prices_per_million(tmp_path: Path) -> None:
    """Decimal-exact strings per million tokens (no float, no exponent), `request` per request."""
    body = await _sent(tmp_path, _ask(model=GPT_4O_MINI, max_cost=Decimal("1")))
    assert body["provider"] == {"max_price": on_the_wire(LISTED)}


async def test_the_prompt_and_completion_caps_are_the_listed_prices_not_the_dearer_cache_write_or_reasoning_ones(
    tmp_path: Path,
) -> None:
    """Cache writes dearer than the prompt and reasoning dearer than completion raise the worst case, not the
    cap: max_price caps the listed prompt and completion prices (a cap at the cache-write price would let in an
    endpoint priced between the two, whose own cache writes cost more than the hold). A per-request price, and
    a repeating decimal kept to the last digit."""
    row = model(
        "lab/think",
        prompt="0.000003",
        completion="0.000015",
        input_cache_write="0.00000375",
        input_cache_write_1h="0.0000060",
        internal_reasoning="0.0000175",
        request="0.0005",
        image="0.0000833333333333333",
    )
    body = await _sent(tmp_path, _ask(model="lab/think", max_cost=Decimal("5")), extra=[row])
    assert body["provider"]["max_price"] == on_the_wire({"prompt": "3", "completion": "15", "request": "0.0005"})
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with_image = RouteRequest(messages=[{"role": "user", "content": [image]}], model="lab/think", max_cost=Decimal("5"))
    imaged = await _sent(
        tmp_path, with_image, extra=[model("lab/think", prompt="0.000003", image="0.0000833333333333333", vision=True)]
    )
    assert imaged["provider"]["max_price"]["image"] == on_the_wire({"image": "0.0000833333333333333"})["image"]


async def test_a_long_prompt_is_capped_at_the_prices_its_override_charges(tmp_path: Path) -> None:
    """Past a `min_prompt_tokens` threshold the hold, and so the cap, are at the override's prices."""
    row = model(
        "lab/long",
        prompt="0.000003",
        completion="0.000015",
        overrides=[{"min_prompt_tokens": 100, "prompt": "0.000006", "completion": "0.0000225"}],
    )
    short = await _sent(tmp_path, _ask(model="lab/long", max_cost=Decimal("5")), extra=[row])
    long = await _sent(tmp_path, _ask("word " * 40, model="lab/long", max_cost=Decimal("5")), extra=[row])
    assert short["provider"]["max_price"] == on_the_wire({"prompt": "3", "completion": "15", "request": "0"})
    assert long["provider"]["max_price"] == on_the_wire({"prompt": "6", "completion": "22.5", "request": "0"})


@pytest.mark.parametrize(
    "per_token", ["0.000000289", "0.00000015", "0.0000006", "0.000000165", "0.00000066", "0.0000175"]
)
def test_a_sent_cap_passes_its_own_price_compared_in_binary_floats_either_way(per_token: str) -> None:
    """Were OpenRouter to compare in floats, 0.289 / 1e6 < 0.000000289: the slack keeps the model's own cheapest
    endpoint inside its cap, whichever side is scaled."""
    cap = float(on_the_wire({"prompt": str(Decimal(per_token) * 1_000_000)})["prompt"])
    assert cap / 1e6 >= float(per_token) and float(per_token) * 1e6 <= cap
    assert Decimal(on_the_wire({"p": "0.289"})["p"]) - Decimal("0.289") <= Decimal("0.289") * Decimal("1e-9")


async def test_no_max_price_is_sent_when_no_limit_is_in_force(tmp_path: Path) -> None:
    """No max_cost, max_cost_per_1k or budget: the request asked for nothing to hold."""
    assert "provider" not in await _sent(tmp_path, _ask(model=GPT_4O_MINI))
    assert "provider" not in await _sent(tmp_path, _ask(model=GPT_4O_MINI + ":nitro"))


@pytest.mark.parametrize(
    ("request_fields", "settings"),
    [
        pytest.param({"max_cost": Decimal("1")}, {}, id="max_cost"),
        pytest.param({"max_cost_per_1k": Decimal("1")}, {}, id="max_cost_per_1k"),
        pytest.param({}, {"max_cost_per_1k": Decimal("1")}, id="default max_cost_per_1k"),
        pytest.param({}, {"budget": {"per_request": "1"}}, id="per_request"),
        pytest.param({}, {"budget": {"daily": "1"}}, id="daily"),
        pytest.param({}, {"budget": {"monthly": "1"}}, id="monthly"),
    ],
)
async def test_every_kind_of_limit_puts_max_price_on_the_wire(
    tmp_path: Path, request_fields: dict[str, Any], settings: dict[str, Any]
) -> None:
    """Any limit in force is one a dearer endpoint could break, so each one sends the cap."""
    body = await _sent(tmp_path, _ask(model=GPT_4O_MINI, **request_fields), **settings)
    assert body["provider"] == {"max_price": on_the_wire(LISTED)}


async def test_a_free_model_is_capped_at_zero(tmp_path: Path) -> None:
    """Its hold is $0, so its cap is 0: its free endpoints pass, a paid one would not."""
    body = await _sent(tmp_path, _ask(model=GEMMA_FREE), budget={"daily": "1"})
    assert body["provider"] == {"max_price": {"prompt": "0", "completion": "0", "request": "0"}}


async def test_a_router_is_capped_at_the_catalogs_dearest_prices_its_hold_was_made_at(tmp_path: Path) -> None:
    """openrouter/auto's worst case is at the catalog's dearest prices (o1-pro's prompt and completion; no model
    charges per request)."""
    body = await _sent(tmp_path, _ask(model=AUTO, max_cost=Decimal("5")))
    assert body["provider"] == {"max_price": on_the_wire({"prompt": "150", "completion": "600", "request": "0"})}


async def test_an_unpriced_model_under_a_daily_budget_is_excluded_with_a_clear_reason(tmp_path: Path) -> None:
    """Its hold would be $0, not a bound: under the daily budget alone it is left out, and nothing is sent."""
    sent: list[dict[str, Any]] = []
    async with _router(tmp_path, [model("lab/unlisted", index=30)], sent, budget={"daily": "1"}) as router:
        view = await router.plan(_ask(model="lab/unlisted"))
        with pytest.raises(NoCandidatesError, match="cannot be held to the daily budget"):
            await router.execute(_ask(model="lab/unlisted"))
    assert view.candidates == [] and sent == []
    assert view.no_candidates_reason is not None
    assert "lab/unlisted: lists no price although it is not a free variant" in view.no_candidates_reason


# --------------------------------------------------------------------------- no endpoint within the cap


def _raise_price(rig: Rig, model_id: str, prompt: str) -> None:
    """The sandbox's model costs more than the catalog modelyard already read says (its cheapest provider is gone)."""
    rows_now = [dict(m.row) for m in rig.sandbox.state.catalog.models]
    for row in rows_now:
        if row["id"] == model_id:
            row["pricing"] = {**row["pricing"], "prompt": prompt}
    rig.sandbox.state.catalog = SandboxCatalog(rows_now)


async def test_a_price_filtered_404_moves_to_the_next_candidate(rig: Rig) -> None:
    """No endpoint of gpt-4o-mini is within its listed price any more: the next model serves, and the attempt
    says why, naming the price sent."""
    request = rig.ask(model=GPT_4O_MINI, models=[LLAMA], max_cost=Decimal("0.01"), cache="off")
    await rig.router.plan(request)  # the catalog is read at today's prices
    _raise_price(rig, GPT_4O_MINI, "0.0000003")
    result = await rig.router.execute(request)
    assert result.resolved_model == LLAMA
    first = result.attempts[0]
    assert (first.model, first.outcome, first.error_kind) == (GPT_4O_MINI, "error", "price_filtered")
    assert first.error is not None
    assert "No provider serves openai/gpt-4o-mini at or below the price" in first.error
    assert "$0.15 per million prompt tokens" in first.error


async def test_when_no_model_is_served_within_its_price_the_error_says_why_and_what_to_change(rig: Rig) -> None:
    """The final error names the listed price the budget held for, the limit that sent it, and the ways out."""
    request = rig.ask(model=GPT_4O_MINI, max_cost=Decimal("0.01"), cache="off")
    await rig.router.plan(request)
    _raise_price(rig, GPT_4O_MINI, "0.0000003")
    with pytest.raises(AllCandidatesFailedError) as caught:
        await rig.router.execute(request)
    message = str(caught.value)
    assert "No provider serves openai/gpt-4o-mini at or below the price" in message
    assert "$0.6 per million completion tokens" in message and "the request's max_cost" in message
    assert "pick another model" in message and "no limit in force" in message
    assert rig.billed() == 0
    assert (await rig.router.budgets.totals()).reserved == 0
