"""`execute`: a supervisor that is refused or fails, a local file that is no image, what a request cost."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from modelyard.sandbox import CatalogModel, Sandbox, answers
from modelyard.sandbox.replies import Reply
from tests.rejected_json import json_answered_with_prose
from tests.tools.calls import answer, refusal

pytestmark = pytest.mark.anyio


async def test_an_unknown_supervisor_is_refused_before_the_answer_is_paid_for(client: Client, sandbox: Sandbox) -> None:
    """supervisor='nope/nope' is refused up front, saying it is the supervisor and which ids come close."""
    message = await refusal(client, "execute", prompt="2+2?", model="gpt-4o-mini", supervisor="nope/nope")
    assert "supervisor: 'nope/nope' is not a known model" in message and "did you mean" in message
    assert sandbox.state.request_count == 0 and sandbox.state.ledger == []


async def test_a_supervisor_that_fails_leaves_the_paid_answer_with_its_error(client: Client, sandbox: Sandbox) -> None:
    """The supervisor is blocked upstream: the answer still comes back, unreviewed, with the supervisor's error."""
    sandbox.state.faults.add(model="openai/gpt-4o", kind="moderation")
    out = await answer(client, "execute", prompt="2+2?", model="gpt-4o-mini", supervisor="openai/gpt-4o")
    assert out["content"] and out["resolved_model"] == "openai/gpt-4o-mini" and out["supervision"] is None
    assert out["supervision_error"].startswith("The supervisor's review failed:")
    assert "openai/gpt-4o" in out["supervision_error"]


async def test_a_local_file_that_is_not_an_image_is_refused_and_never_sent(
    client: Client, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `credentials` file in the image folder (no extension) is not sent as image/png; the refusal names the
    accepted types and not a byte of the file."""
    sent: list[str] = []
    planned = answers.plan_reply

    def plan_reply(
        body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], model: CatalogModel, max_tokens: int | None
    ) -> Reply:
        sent.append(str(messages))
        return planned(body, messages, model, max_tokens)

    monkeypatch.setattr(answers, "plan_reply", plan_reply)
    secret = tmp_path / "credentials"
    secret.write_text("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG\n")
    message = await refusal(client, "execute", prompt="describe", images=[str(secret)])
    assert "PNG, JPEG, GIF or WebP" in message and "wJalrXUtnFEMI" not in message
    assert sent == [] and sandbox.state.request_count == 0
    assert base64.b64encode(secret.read_bytes()).decode() not in str(sent)


async def test_a_call_that_names_no_model_uses_the_servers_default_model(sandbox: Sandbox, tmp_path: Path) -> None:
    """MODELYARD_DEFAULT_MODEL is what a request that names no model gets, from every tool."""
    from modelyard.server import build_server
    from modelyard.settings import Settings
    from tests.tools.conftest import KEY

    settings = Settings(
        openrouter_api_key=KEY,
        openrouter_base_url=sandbox.base_url,
        store=f"sqlite:///{tmp_path / 't.db'}",
        default_model="openai/gpt-4o-mini",
    )
    async with Client(build_server(settings)) as client:
        plan = await answer(client, "plan_route", prompt="hi")
        done = await answer(client, "execute", prompt="hi")
        batch = await answer(client, "execute_batch", tasks=[{"prompt": "one"}, {"prompt": "two", "model": "auto"}])
    assert plan["candidates"][0]["model"] == "openai/gpt-4o-mini"
    assert done["resolved_model"] == "openai/gpt-4o-mini"
    assert batch["results"][0]["result"]["resolved_model"] == "openai/gpt-4o-mini"
    assert batch["results"][1]["result"]["requested_model"] == "auto"


async def test_execute_reports_the_request_cost_with_the_answer_the_schema_rejected(
    client: Client, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gpt-4o-mini's answer is prose, billed and rejected; llama answers. `cost` is llama's answer, and
    `request_cost` is what OpenRouter billed for the call: both answers."""
    out = await _rejected_then_answered(client, monkeypatch)
    assert [a["error_kind"] for a in out["attempts"]] == ["schema_validation", None]
    assert Decimal(str(out["cost"])) == sandbox.state.ledger[-1].cost
    assert Decimal(str(out["request_cost"])) == sandbox.state.billed_total() > Decimal(str(out["cost"]))


async def test_a_supervised_answers_total_cost_counts_the_answer_the_schema_rejected(
    client: Client, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three answers billed (the rejected one, the primary, the review): the total, and `request_cost`, is all three."""
    out = await _rejected_then_answered(client, monkeypatch, supervisor="openai/gpt-4o")
    review = out["supervision"]
    assert len(sandbox.state.ledger) == 3 and Decimal(str(review["total_cost"])) == sandbox.state.billed_total()
    assert review["request_cost"] == review["cost"] and out["request_cost"] == review["total_cost"]


async def _rejected_then_answered(client: Client, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> dict[str, Any]:
    """`execute` for JSON: gpt-4o-mini answers prose (billed, rejected by the schema), then llama answers."""
    json_answered_with_prose(monkeypatch, model="openai/gpt-4o-mini")
    return await answer(
        client,
        "execute",
        prompt="A colour as JSON",
        model="gpt-4o-mini",
        models=["meta-llama/llama-3.1-8b-instruct"],
        response_format={"type": "json_object"},
        **extra,
    )
