"""`compare_models` and `execute_batch`: a judge that is refused or fails, the judge's pick, malformed tasks."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import pytest
from mcp import Client

from modelyard.sandbox import CatalogModel, Sandbox, answers
from modelyard.sandbox.replies import Reply
from tests.tools.calls import answer, refusal

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
