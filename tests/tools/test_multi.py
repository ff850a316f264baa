"""`compare_models` and `execute_batch`: a judge that is refused, fails, is bounded, or names no answer; the
judge's pick; malformed tasks; a task's own cap, fallback chain and timeout; the total cost."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from modelyard.sandbox import CatalogModel, Sandbox, answers
from modelyard.sandbox.replies import Reply
from modelyard.server import build_server
from modelyard.settings import Settings
from modelyard.tools.multi import JUDGE_MAX_TOKENS
from tests.rejected_json import json_answered_with_prose
from tests.tools.calls import answer, refusal
from tests.tools.conftest import KEY

pytestmark = pytest.mark.anyio
ANSWERING = ["gpt-4o-mini", "meta-llama/llama-3.1-8b-instruct"]


def _judge_replies(monkeypatch: pytest.MonkeyPatch, verdict: str) -> None:
    """The sandbox answers the judge's request with `verdict`; every other request as usual."""
    planned = answers.plan_reply

    def plan_reply(
        body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], model: CatalogModel, max_tokens: int | None
    ) -> Reply:
        reply = planned(body, messages, model, max_tokens)
        if any("Pick the best answer" in str(m.get("content")) for m in messages):
            return dataclasses.replace(reply, content=verdict, content_pieces=(verdict,), tool_call=None)
        return reply

    monkeypatch.setattr(answers, "plan_reply", plan_reply)


async def test_a_model_name_no_json_text_can_carry_is_an_answer_with_an_error_not_a_crash(client: Client) -> None:
    """The fuzzer's `models: ['', '\\ud800']`: the lone surrogate went into the answer's label, and the result
    could not be serialised ("Error executing tool compare_models")."""
    out = await answer(client, "compare_models", prompt="0", models=["gpt-4o-mini", "\ud800"])
    assert [a["label"] for a in out["answers"]] == ["gpt-4o-mini", "\\ud800"]
    assert out["answers"][1]["error"] and out["answers"][0]["result"]


async def test_an_unknown_judge_is_refused_before_any_answer_is_paid_for(client: Client, sandbox: Sandbox) -> None:
    """judge='nope/nope' is refused up front, saying it is the judge and which ids come close; nothing is sent."""
    message = await refusal(client, "compare_models", prompt="Name a colour", models=ANSWERING, judge="nope/nope")
    assert "judge: 'nope/nope' is not a known model" in message and "did you mean" in message
    assert sandbox.state.request_count == 0 and sandbox.state.ledger == []


async def test_a_judge_that_fails_leaves_the_paid_answers_with_its_error(client: Client, sandbox: Sandbox) -> None:
    """The judge is blocked upstream: both answers still come back, with the judge's error and no pick."""
    sandbox.state.faults.add(model="openai/gpt-4o", kind="moderation")
    out = await answer(client, "compare_models", prompt="Name a colour", models=ANSWERING, judge="openai/gpt-4o")
    assert [a["label"] for a in out["answers"]] == ANSWERING and all(a["result"] for a in out["answers"])
    assert out["judge"] is None and out["best"] is None
    assert out["judge_error"].startswith("The judge failed:") and "openai/gpt-4o" in out["judge_error"]
    assert Decimal(str(out["total_cost"])) == sandbox.state.billed_total() > 0


async def test_a_judge_naming_gpt_4o_mini_picks_gpt_4o_mini_not_gpt_4o(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label that contains another one is not read as the shorter label that comes first."""
    _judge_replies(monkeypatch, "gpt-4o-mini")
    out = await answer(
        client, "compare_models", prompt="Name a colour", models=["gpt-4o", "gpt-4o-mini"], judge="economy"
    )
    assert out["judge"]["content"] == "gpt-4o-mini" and out["best"] == "gpt-4o-mini"
    assert out["judge_error"] is None


async def test_a_judge_naming_perspective_11_in_a_sentence_picks_perspective_11_not_perspective_1(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not an exact label: the longest label found in the reply wins."""
    _judge_replies(monkeypatch, "The best is [gpt-4o-mini / perspective 11].")
    views = [f"viewpoint {i}" for i in range(1, 12)]
    out = await answer(
        client, "compare_models", prompt="Plan a trip", models=["gpt-4o-mini"], perspectives=views, judge="economy"
    )
    assert out["best"] == "gpt-4o-mini / perspective 11"


@pytest.mark.parametrize(
    ("malformed", "why"),
    [
        ({"model": "gpt-4o-mini"}, "Give either 'prompt'"),
        ({"messages": [{"content": "hi"}]}, "needs a 'role'"),
    ],
    ids=["no prompt", "a message without a role"],
)
async def test_a_malformed_task_fails_alone_and_its_error_says_which_task_it_is(
    client: Client, malformed: dict[str, Any], why: str
) -> None:
    """The batch promises a failed task does not stop the others: a malformed one fails as `task N: ...`."""
    tasks = [{"prompt": "one"}, {"prompt": "two"}, malformed, {"prompt": "four"}]
    out = await answer(client, "execute_batch", tasks=tasks)
    assert (out["succeeded"], out["failed"]) == (3, 1)
    failed = out["results"][2]
    assert failed["label"] == "task 3" and failed["error"].startswith("task 3: ") and why in failed["error"]
    assert all(r["result"] for i, r in enumerate(out["results"]) if i != 2)


async def test_a_negative_max_cost_per_1k_refuses_the_batch_naming_the_task_and_field(
    client: Client, sandbox: Sandbox
) -> None:
    """A task outside the tool's input schema is refused by the schema, naming it (0-based), before anything runs."""
    tasks = [{"prompt": "one"}, {"prompt": "two"}, {"prompt": "x", "max_cost_per_1k": -1}]
    message = await refusal(client, "execute_batch", tasks=tasks)
    assert "tasks.2.max_cost_per_1k" in message and "greater than or equal to 0" in message
    assert sandbox.state.request_count == 0


async def test_a_batchs_total_cost_counts_the_answer_the_schema_rejected(
    client: Client, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Task 1's first answer is prose, billed and rejected, then the next model answers: the batch's total is
    every answer billed, its tasks' `request_cost` summed, not their answers' `cost`."""
    json_answered_with_prose(monkeypatch)
    tasks = [{"prompt": "A colour as JSON", "response_format": {"type": "json_object"}}, {"prompt": "Say hi"}]
    out = await answer(client, "execute_batch", tasks=tasks, max_parallel=1)
    first, second = (r["result"] for r in out["results"])
    assert [a["error_kind"] for a in first["attempts"]] == ["schema_validation", None] and out["succeeded"] == 2
    assert Decimal(str(out["total_cost"])) == sandbox.state.billed_total()
    assert Decimal(str(out["total_cost"])) == sum(Decimal(str(r["request_cost"])) for r in (first, second))
    assert Decimal(str(first["cost"])) + Decimal(str(second["cost"])) < sandbox.state.billed_total()


async def test_a_comparisons_total_cost_is_unknown_while_an_abandoned_answer_may_yet_be_billed(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """llama's first answer outlasts the read timeout and is billed all the same, at a cost not known yet;
    its retry answers. Each answer's cost is known, the comparison's total is not: null, not a smaller sum."""
    settings = Settings(
        openrouter_api_key=KEY,
        openrouter_base_url=sandbox.base_url,
        store=f"sqlite:///{tmp_path / 't.db'}",
        request_timeout_s=0.3,
    )
    sandbox.state.faults.add(model="meta-llama/llama-3.1-8b-instruct", kind="latency", count=1, latency_ms=500)
    async with Client(build_server(settings)) as client:
        out = await answer(client, "compare_models", prompt="Name a colour", models=ANSWERING)
    slow = out["answers"][1]["result"]
    assert [a["error_kind"] for a in slow["attempts"]] == ["timeout", None]
    assert all(a["result"]["cost"] is not None for a in out["answers"]) and out["total_cost"] is None
    assert slow["request_cost"] is None


async def test_a_batchs_total_cost_counts_the_rejected_answers_of_a_task_that_failed(
    client: Client, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Task 1 gets no answer the schema accepts, but every one of its answers was billed: the batch's total is
    what the sandbox billed (the ledger's), not the answered task's alone."""
    json_answered_with_prose(monkeypatch, times=100)
    tasks = [{"prompt": "A colour as JSON", "response_format": {"type": "json_object"}}, {"prompt": "Say hi"}]
    out = await answer(client, "execute_batch", tasks=tasks, max_parallel=1)
    assert (out["succeeded"], out["failed"]) == (1, 1) and "OpenRouter billed" in out["results"][0]["error"]
    assert Decimal(str(out["total_cost"])) == sandbox.state.billed_total()


async def test_every_field_of_a_batch_task_is_one_of_executes_described_as_execute_describes_it(
    client: Client,
) -> None:
    """A task takes `max_cost`, `models` and `timeout_s` (it had none of them), and reads each field as execute."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    execute = tools["execute"].input_schema["properties"]
    task = tools["execute_batch"].input_schema["$defs"]["BatchTask"]
    assert {"max_cost", "models", "timeout_s"} <= task["properties"].keys()
    assert {name: field["description"] for name, field in task["properties"].items()} == {
        name: execute[name]["description"] for name in task["properties"]
    }
    assert task["additionalProperties"] is False


async def test_a_batch_tasks_max_cost_caps_it_as_it_caps_execute(client: Client, sandbox: Sandbox) -> None:
    """A cap no model meets fails that task, in execute's words, before it is sent; the other task answers."""
    capped = {"prompt": "a", "model": "gpt-4o-mini", "max_cost": 1e-06}
    refused = await refusal(client, "execute", **capped)
    out = await answer(client, "execute_batch", tasks=[capped, {"prompt": "b", "model": "gpt-4o-mini"}])
    assert (out["succeeded"], out["failed"]) == (1, 1) and "per-request cap $0.000001" in out["results"][0]["error"]
    assert refused.endswith(out["results"][0]["error"])
    assert sandbox.state.request_count == 1


async def test_a_batch_tasks_models_are_its_fallback_chain(client: Client, sandbox: Sandbox) -> None:
    """gpt-4o is blocked: the task moves on to the model its own `models` names."""
    sandbox.state.faults.add(model="openai/gpt-4o", kind="moderation")
    task = {"prompt": "a", "model": "openai/gpt-4o", "models": ["meta-llama/llama-3.1-8b-instruct"]}
    out = await answer(client, "execute_batch", tasks=[task])
    result = out["results"][0]["result"]
    assert [a["model"] for a in result["attempts"]] == ["openai/gpt-4o", "meta-llama/llama-3.1-8b-instruct"]
    assert result["model"] == "meta-llama/llama-3.1-8b-instruct"


async def test_a_batch_tasks_timeout_s_bounds_that_task_alone(client: Client, sandbox: Sandbox) -> None:
    """llama answers after 1 s: the task that gives it 0.3 s fails with execute's timeout; the other answers."""
    sandbox.state.faults.add(model="meta-llama/llama-3.1-8b-instruct", kind="latency", latency_ms=1000)
    tasks = [
        {"prompt": "a", "model": "meta-llama/llama-3.1-8b-instruct", "timeout_s": 0.3},
        {"prompt": "b", "model": "gpt-4o-mini"},
    ]
    out = await answer(client, "execute_batch", tasks=tasks)
    assert (out["succeeded"], out["failed"]) == (1, 1)
    assert "No complete answer within timeout_s=0.3" in out["results"][0]["error"]


async def test_the_judge_writes_a_short_verdict_whatever_the_answers_max_tokens(
    client: Client, sandbox: Sandbox
) -> None:
    """The judge asked for the default 4096 tokens to name one label: it gets `JUDGE_MAX_TOKENS`."""
    out = await answer(client, "compare_models", prompt="Name a colour", models=ANSWERING, judge="openai/gpt-4o")
    assert out["judge"] is not None
    *answers_sent, judge_sent = sandbox.state.ledger
    assert judge_sent.requested_model == "openai/gpt-4o" and judge_sent.max_tokens == JUDGE_MAX_TOKENS
    assert [entry.max_tokens for entry in answers_sent] == [4096, 4096]


async def test_the_judge_is_held_to_max_cost_like_each_answer(client: Client, sandbox: Sandbox) -> None:
    """max_cost=$0.00005 with a gpt-5.5 judge: the answers fit it, the judge does not and is not sent (it cost
    $0.000865 with neither max_tokens nor max_cost applied)."""
    out = await answer(
        client, "compare_models", prompt="q", models=ANSWERING, judge="gpt-5.5", max_cost=0.00005, max_tokens=10
    )
    assert all(a["result"] for a in out["answers"]) and out["judge"] is None and out["best"] is None
    assert out["judge_error"].startswith("The judge failed:") and "per-request cap $0.00005" in out["judge_error"]
    sent = sorted(entry.requested_model for entry in sandbox.state.ledger)
    assert sent == ["meta-llama/llama-3.1-8b-instruct", "openai/gpt-4o-mini"]
    assert Decimal(str(out["total_cost"])) == sandbox.state.billed_total()


async def test_a_verdict_that_names_no_answer_is_a_judge_error_quoting_it(
    client: Client, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """best and judge_error were both null: the verdict (paid for, and returned) is quoted in judge_error."""
    _judge_replies(monkeypatch, "  Both answers are equally good.  ")
    out = await answer(client, "compare_models", prompt="Name a colour", models=ANSWERING, judge="economy")
    assert out["best"] is None and out["judge"]["content"].strip() == "Both answers are equally good."
    assert out["judge_error"] == "The judge's verdict named no answer: 'Both answers are equally good.'"
    assert Decimal(str(out["total_cost"])) == sandbox.state.billed_total()
