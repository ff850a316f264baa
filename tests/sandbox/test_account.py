"""`/key`, `/credits`, `/generation`, the 402 key limit, the ledger and the control API."""

from __future__ import annotations

from decimal import Decimal

import httpx2
import pytest

from modelyard.openrouter.schemas import Generation, KeyInfo
from modelyard.sandbox import Catalog, Sandbox, SandboxState
from modelyard.sandbox.control import handle_control
from modelyard.sandbox.http import Request
from tests.sandbox.conftest import KEY, chat

pytestmark = pytest.mark.anyio

CREDIT_TEXT = (
    "This request requires more credits, or fewer max_tokens. You requested up to {n} tokens, but can only afford "
    "{m}. To increase, visit https://openrouter.ai/settings/keys and create a key with a higher monthly limit"
)


async def test_key_shows_a_masked_label_and_the_spend_never_the_key(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """`/key` and `/auth/key` give the same body: label `sk-or-v1-san...box`, usage = billed."""
    await client.post("/chat/completions", json=chat())
    key = await client.get("/key")
    legacy = await client.get("/auth/key")
    data = key.json()["data"]
    assert key.json() == legacy.json()
    assert data["label"] == "sk-or-v1-san...box"
    assert KEY not in key.text
    assert data["limit"] is None and data["limit_remaining"] is None
    assert KeyInfo.model_validate(data).usage == sandbox.state.billed_total() > 0
    async with httpx2.AsyncClient() as anonymous:
        assert (await anonymous.get(f"{sandbox.base_url}/key")).status_code == 401


async def test_credits_report_purchases_and_usage(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """`/credits` answers total_credits and total_usage in USD."""
    await client.post("/chat/completions", json=chat())
    data = (await client.get("/credits")).json()["data"]
    assert list(data) == ["total_credits", "total_usage"]
    assert data["total_credits"] == 100
    assert Decimal(repr(data["total_usage"])) == sandbox.state.billed_total()


async def test_credits_answer_an_ordinary_key_with_the_2026_403_when_told_to(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """Since 2026 `/credits` needs a management key (reference §7.2); `credits_need_management_key` makes
    the sandbox's key an ordinary one there, and `/key` still answers it."""
    async with httpx2.AsyncClient(base_url=sandbox.control_url) as control:
        configured = await control.post("/config", json={"credits_need_management_key": True})
    assert configured.json()["config"]["credits_need_management_key"] is True
    refused = await client.get("/credits")
    assert refused.status_code == 403
    assert refused.json()["error"] == {"message": "Only management keys can perform this operation", "code": 403}
    assert (await client.get("/key")).status_code == 200


async def test_a_generation_can_be_looked_up_by_its_id(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """`/generation?id=` returns the stored record with the reference's fields; unknown ids are 404."""
    answer = (await client.post("/chat/completions", json=chat("anthropic/claude-haiku-4.5"))).json()
    response = await client.get("/generation", params={"id": answer["id"]})
    record = response.json()["data"]
    parsed = Generation.model_validate(record)
    assert parsed.id == answer["id"]
    assert parsed.model == "anthropic/claude-4.5-haiku-20251001"
    assert parsed.provider_name == "Anthropic"
    assert parsed.tokens_prompt == answer["usage"]["prompt_tokens"]
    assert parsed.total_cost == sandbox.state.ledger[-1].cost
    assert record["streamed"] is False and record["native_finish_reason"] == "end_turn"
    for field in ("upstream_id", "created_at", "api_type", "latency", "native_tokens_reasoning", "provider_responses"):
        assert field in record
    assert (await client.get("/generation", params={"id": "gen-0-nope"})).status_code == 404


async def test_a_key_limit_refuses_requests_it_cannot_afford_with_the_real_402(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """max_tokens x completion price above limit_remaining is a 402 with OpenRouter's exact text."""
    sandbox.state.set_key_limit(Decimal("0.001"))
    response = await client.post("/chat/completions", json=chat("openai/gpt-4o", max_tokens=10_000))
    assert response.status_code == 402
    body = response.json()
    assert body["error"]["message"] == CREDIT_TEXT.format(n=10000, m=100)
    assert body["error"]["metadata"] == {"provider_name": None}
    assert sandbox.state.ledger[-1].status == 402 and sandbox.state.ledger[-1].cost == 0


async def test_without_max_tokens_the_check_uses_the_models_max_completion(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """An omitted max_tokens counts as the model's max completion tokens (16,384 for gpt-4o)."""
    sandbox.state.set_key_limit(Decimal("0.1"))
    response = await client.post("/chat/completions", json=chat("openai/gpt-4o"))
    assert response.json()["error"]["message"] == CREDIT_TEXT.format(n=16384, m=10000)
    assert (await client.post("/chat/completions", json=chat("openai/gpt-4o", max_tokens=100))).status_code == 200


async def test_spending_decrements_the_remaining_limit(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """Each billed answer lowers limit_remaining by its cost; /_sandbox/key sets the limit."""
    async with httpx2.AsyncClient(base_url=sandbox.control_url) as control:
        set_limit = await control.post("/key", json={"limit": "1.00"})
    assert set_limit.json()["key"]["limit"] == "1.00"
    await client.post("/chat/completions", json=chat("openai/gpt-4o", max_tokens=50))
    await client.post("/chat/completions", json=chat("openai/gpt-4o-mini", max_tokens=50))
    data = KeyInfo.model_validate((await client.get("/key")).json()["data"])
    spent = sum((entry.cost for entry in sandbox.state.ledger), Decimal(0))
    assert data.limit == Decimal("1.00")
    assert sandbox.state.limit_remaining == Decimal("1.00") - spent
    assert data.limit_remaining == sandbox.state.limit_remaining


async def test_the_ledger_records_every_request_with_decimal_strings(
    sandbox: Sandbox, client: httpx2.AsyncClient
) -> None:
    """Served, faulted, refused and unauthenticated requests are all rows; totals are exact strings."""
    await client.post("/chat/completions", json=chat())
    await client.post("/chat/completions", json=chat("anthropic/claude-haiku-4.5", stream=True))
    sandbox.state.faults.add(model="openai/gpt-4o-mini", kind="server_error", count=1)
    await client.post("/chat/completions", json=chat())
    await client.post("/chat/completions", json=chat("nobody/nothing"))
    async with httpx2.AsyncClient() as anonymous:
        await anonymous.post(f"{sandbox.base_url}/chat/completions", json=chat())
    async with httpx2.AsyncClient(base_url=sandbox.control_url) as control:
        ledger = (await control.get("/ledger")).json()
    entries, totals = ledger["entries"], ledger["totals"]
    assert [(e["status"], e["fault"]) for e in entries] == [
        (200, None),
        (200, None),
        (500, "server_error"),
        (400, None),
        (401, None),
    ]
    first = entries[0]
    for field in ("time", "key_label", "requested_model", "served_model", "stream", "prompt_tokens",
                  "completion_tokens", "cached_tokens", "reasoning_tokens", "cost", "status", "fault",
                  "client_disconnected"):  # fmt: skip
        assert field in first
    assert isinstance(first["cost"], str) and Decimal(first["cost"]) > 0
    assert entries[1]["stream"] is True and entries[4]["key_label"] is None
    assert totals["billed"] == str(Decimal(entries[0]["cost"]) + Decimal(entries[1]["cost"]))
    assert totals["billed"] == str(sandbox.state.billed_total())
    assert (totals["requests"], totals["served"], totals["faults"]) == (5, 2, 1)


async def test_the_control_api_reports_and_changes_state(sandbox: Sandbox, client: httpx2.AsyncClient) -> None:
    """/state, /config and /reset: config changes apply, reset forgets everything."""
    async with httpx2.AsyncClient(base_url=sandbox.control_url) as control:
        state = (await control.get("/state")).json()
        configured = await control.post("/config", json={"keepalive_blocks": 3, "default_latency_ms": 0})
        body = (await client.post("/chat/completions", json=chat())).content
        wrong = await control.post("/config", json={"colour": "blue"})
        sandbox.state.faults.add(kind="hang")
        reset = await control.post("/reset")
        after = (await control.get("/state")).json()
    assert state["models"] == len(sandbox.state.catalog) and state["api_key_label"] == "sk-or-v1-san...box"
    assert configured.json()["config"]["keepalive_blocks"] == 3
    assert body.startswith(b"\n         \n" * 3 + b"{")
    assert wrong.status_code == 400
    assert reset.json() == {"reset": True}
    assert (after["requests"], after["billed"], after["faults"]) == (0, "0", [])
    assert after["config"]["cache_threshold"] == 0  # back to the config the sandbox started with


def test_the_control_api_refuses_clients_beyond_loopback() -> None:
    """A request from a non-loopback address is a 403; loopback ones are served."""
    state = SandboxState(Catalog.load())
    remote = Request(method="GET", path="/_sandbox/state", query_string="", headers={}, client_host="10.1.2.3")
    local = Request(method="GET", path="/_sandbox/state", query_string="", headers={}, client_host="127.0.0.1")
    assert handle_control(state, remote).status == 403
    assert handle_control(state, local).status == 200
