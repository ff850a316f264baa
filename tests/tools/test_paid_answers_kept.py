"""Paid answers and reviews an agent keeps: a schema with a dangling `$ref`, a judge with nothing to judge or
that reasons unasked, a review within `timeout_s` and a free review under a $0 cap."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from mcp import Client

from modelyard.sandbox import Sandbox, replies
from tests.tools.calls import answer

pytestmark = pytest.mark.anyio
ANSWERING = ["gpt-4o-mini", "meta-llama/llama-3.1-8b-instruct"]


async def test_no_judge_is_paid_when_no_answer_came_back(client: Client, sandbox: Sandbox) -> None:
    """Both answers fail: there is nothing to pick, yet the judge is sent and billed."""
    for model in ("openai/gpt-4o-mini", "meta-llama/llama-3.1-8b-instruct"):
        sandbox.state.faults.add(model=model, kind="moderation")
    out = await answer(client, "compare_models", prompt="Name a colour", models=ANSWERING, judge="openai/gpt-4o")
    assert all(a["result"] is None for a in out["answers"])
    judged = [e for e in sandbox.state.ledger if e.requested_model == "openai/gpt-4o"]
    assert judged == [], f"judge paid ${sum(e.cost for e in judged)} to pick among no answers: {out['judge_error']}"


async def test_a_free_review_runs_when_max_cost_is_zero(client: Client, sandbox: Sandbox) -> None:
    """max_cost=0 admits free models: a free answer leaves $0, all a free reviewer needs."""
    free = "google/gemma-4-31b-it:free"
    out = await answer(client, "execute", prompt="2+2?", model=free, supervisor=free, max_cost=0, cache="off")
    assert out["supervision_error"] is None, out["supervision_error"]


async def test_a_reasoning_judge_has_room_for_its_thinking(
    client: Client, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A judge that must reason (gpt-5-mini: reasoning mandatory) thinks ~2000 tokens at its default effort, as
    o-series/Gemini-2.5 judges do over a dozen answers: 1024 tokens leave no room for the label."""
    monkeypatch.setitem(replies._EFFORT_TOKENS, "medium", 2000)
    monkeypatch.setitem(replies._EFFORT_TOKENS, "high", 2000)
    out = await answer(client, "compare_models", prompt="Name a colour", models=ANSWERING, judge="openai/gpt-5-mini")
    judge = [e for e in sandbox.state.ledger if e.requested_model == "openai/gpt-5-mini"]
    spent = [(e.cost, e.reasoning_tokens) for e in judge]
    assert "cut off" not in (out["judge_error"] or ""), (out["judge_error"], spent)


async def test_timeout_s_bounds_the_review_too(sandbox: Sandbox, tmp_path) -> None:
    """timeout_s is 'Seconds for the whole request': a hanging reviewer should not hold the call past it."""
    from modelyard.server import build_server
    from modelyard.settings import Settings
    from tests.tools.conftest import KEY

    settings = Settings(
        openrouter_api_key=KEY,
        openrouter_base_url=sandbox.base_url,
        store=f"sqlite:///{tmp_path / 't.db'}",
        request_timeout_s=3,
        max_attempts=1,
    )
    sandbox.state.faults.add(model="openai/gpt-4o", kind="hang")
    async with Client(build_server(settings)) as client:
        began = time.perf_counter()
        out = await answer(
            client,
            "execute",
            prompt="2+2?",
            model="openai/gpt-4o-mini",
            supervisor="openai/gpt-4o",
            timeout_s=0.5,
            cache="off",
        )
        took = time.perf_counter() - began
    assert took < 1.5, (took, out["supervision_error"])


async def test_a_revision_reaching_a_dangling_ref_leaves_the_paid_answer(
    client: Client, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schema's optional `note` points at a $def that is not there: the answer (without `note`) validates,
    the reviewer's revision (with it) makes jsonschema raise Unresolvable, which is not a ModelyardError."""
    from tests.tools.test_execute_supervision import SUPERVISOR, Upstream

    upstream = Upstream(monkeypatch)
    upstream.supervisor_says = '{"name": "Ada", "note": 1}'
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "note": {"$ref": "#/$defs/missing"}},
        "required": ["name"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}
    result = await client.call_tool(
        "execute",
        {
            "prompt": "A person",
            "model": "openai/gpt-4o-mini",
            "supervisor": SUPERVISOR,
            "cache": "off",
            "response_format": fmt,
        },
    )
    assert not result.is_error, (result.content, [e.cost for e in sandbox.state.ledger])


async def test_an_answer_reaching_a_dangling_ref_is_in_the_ledger(client: Client, sandbox: Sandbox) -> None:
    """Same schema hole on the answer itself: OpenRouter billed it; the ledger must say so."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "note": {"$ref": "#/$defs/missing"}},
        "required": ["name", "note"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}
    result = await client.call_tool(
        "execute", {"prompt": "A person", "model": "openai/gpt-4o-mini", "cache": "off", "response_format": fmt}
    )
    spent = (await client.call_tool("get_budget", {})).structured_content["spent_today"]
    assert Decimal(str(spent)) == sandbox.state.billed_total(), (result.content, spent, sandbox.state.billed_total())
