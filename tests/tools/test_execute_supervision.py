"""`execute` with a `supervisor`: which revisions replace the answer, what the reviewer sees, what the review may
spend and how it is counted."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import pytest
from mcp import Client

from modelyard.sandbox import CatalogModel, Sandbox, answers
from modelyard.sandbox.replies import Reply
from modelyard.sandbox.tokens import pieces
from tests.tools.calls import answer

pytestmark = pytest.mark.anyio

PRIMARY, SUPERVISOR = "openai/gpt-4o-mini", "openai/gpt-4o"
PERSON = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
        },
    },
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PICTURE = "https://example.com/cat.png"


class Upstream:
    """The sandbox's answers, with what each model was sent; the supervisor's reply can be set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: dict[str, list[Sequence[Mapping[str, Any]]]] = {}
        self.supervisor_says: str | None = None
        self._planned = answers.plan_reply
        monkeypatch.setattr(answers, "plan_reply", self._plan_reply)

    def _plan_reply(
        self, body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], model: CatalogModel, limit: int | None
    ) -> Reply:
        self.sent.setdefault(model.id, []).append(messages)
        reply = self._planned(body, messages, model, limit)
        if model.id != SUPERVISOR or self.supervisor_says is None:
            return reply
        said = self.supervisor_says
        return dataclasses.replace(
            reply, content=said, content_pieces=tuple(pieces(said)), completion_tokens=len(pieces(said))
        )

    def review(self) -> str:
        """Everything the supervisor was sent in its last request, as text."""
        return json.dumps(self.sent[SUPERVISOR][-1])


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Upstream:
    return Upstream(monkeypatch)


async def _supervised(client: Client, **arguments: Any) -> dict[str, Any]:
    return await answer(client, "execute", model=PRIMARY, supervisor=SUPERVISOR, cache="off", **arguments)


async def test_a_revision_that_fails_the_schema_leaves_the_validated_answer_and_says_why(
    client: Client, upstream: Upstream
) -> None:
    """The reviewer answers prose to a request for a person as JSON: `content` is still the person."""
    out = await _supervised(client, prompt="A person", response_format=PERSON)
    review = out["supervision"]
    assert set(json.loads(out["content"])) == {"name", "age"}
    assert review["approved"] is False and review["revised"] is False and review["original_content"] is None
    assert review["revision_not_applied"].startswith("the revision is not valid for the requested response_format")
    assert review["revised_content"] and review["revised_content"] != out["content"]


async def test_a_revision_that_fits_the_schema_replaces_the_answer_which_is_kept(
    client: Client, upstream: Upstream
) -> None:
    """The reviewer answers another valid person: it is the content, flagged, and the first person is kept."""
    upstream.supervisor_says = '{"name": "Ada", "age": 36}'
    out = await _supervised(client, prompt="A person", response_format=PERSON)
    review = out["supervision"]
    assert out["content"] == review["revised_content"] == '{"name": "Ada", "age": 36}'
    assert review["revised"] is True and review["revision_not_applied"] is None
    assert set(json.loads(review["original_content"])) == {"name", "age"}
    assert review["original_content"] != out["content"]


async def test_the_reviewer_is_told_the_answer_format_and_to_answer_in_it(client: Client, upstream: Upstream) -> None:
    """The schema reaches the reviewer, and its instructions ask for that JSON alone."""
    await _supervised(client, prompt="A person", response_format=PERSON)
    seen = upstream.review()
    assert "[required answer format]" in seen and '\\"required\\": [\\"name\\", \\"age\\"]' in seen
    assert "a correction is that JSON alone" in seen


async def test_an_answer_that_called_tools_keeps_its_calls_whatever_the_review_says(
    client: Client, upstream: Upstream
) -> None:
    """The reviewer answers prose to a tool call: the call stands, content stays null, and the prose is shown."""
    out = await _supervised(client, prompt="Weather in Paris?", tools=[WEATHER])
    review = out["supervision"]
    assert out["content"] is None and out["finish_reason"] == "tool_calls"
    assert [call["function"]["name"] for call in out["tool_calls"]] == ["get_weather"]
    assert review["revised"] is False and review["revised_content"]
    assert review["revision_not_applied"].startswith("the answer called tools")


async def test_the_reviewer_sees_the_tools_the_images_and_the_tool_calls(client: Client, upstream: Upstream) -> None:
    """The tool definitions, the picture (as an image part, not text) and the call made are in the review."""
    out = await _supervised(client, prompt="Weather where this was taken?", tools=[WEATHER], images=[PICTURE])
    (user,) = [m for m in upstream.sent[SUPERVISOR][-1] if m["role"] == "user"]
    images = [part for part in user["content"] if part["type"] == "image_url"]
    text = " ".join(part["text"] for part in user["content"] if part["type"] == "text")
    assert [part["image_url"]["url"] for part in images] == [PICTURE]
    assert "[tools the model could call]" in text and '"name": "get_weather"' in text
    assert "[tool calls in the answer]" in text and json.dumps(out["tool_calls"][0]["function"]["arguments"]) in text


async def test_a_revised_answer_is_flagged_and_the_original_is_kept(client: Client, upstream: Upstream) -> None:
    """A prose revision of a prose answer is the content; the unreviewed answer is in `original_content`."""
    alone = await answer(client, "execute", prompt="2+2?", model=PRIMARY, cache="off")
    out = await _supervised(client, prompt="2+2?")
    review = out["supervision"]
    assert review["revised"] is True and out["content"] == review["revised_content"] != alone["content"]
    assert review["original_content"] == alone["content"] and out["model"] == alone["model"]


async def test_an_approved_answer_stands_unflagged(client: Client, upstream: Upstream) -> None:
    upstream.supervisor_says = "APPROVED"
    alone = await answer(client, "execute", prompt="2+2?", model=PRIMARY, cache="off")
    out = await _supervised(client, prompt="2+2?")
    review = out["supervision"]
    assert out["content"] == alone["content"] and review["approved"] is True
    assert review["revised"] is False and review["revised_content"] is None and review["original_content"] is None


async def test_a_revision_cut_off_at_max_tokens_is_not_applied(client: Client, upstream: Upstream) -> None:
    """With max_tokens=3 the reviewer's reply is cut short: the answer stands."""
    alone = await answer(client, "execute", prompt="2+2?", model=PRIMARY, cache="off", max_tokens=3)
    out = await _supervised(client, prompt="2+2?", max_tokens=3)
    review = out["supervision"]
    assert out["content"] == alone["content"] and review["revised"] is False
    assert review["revision_not_applied"] == "the revision was cut off at max_tokens"


async def test_the_review_spends_only_what_the_answer_left_of_max_cost(
    client: Client, sandbox: Sandbox, upstream: Upstream
) -> None:
    """max_cost is exactly the review's worst case: after the answer's cost, too little is left, so the review is
    not sent, and the call spent no more than max_cost."""
    worst, _ = await _review_worst_case(client, sandbox, upstream)
    before = len(sandbox.state.ledger)
    out = await _supervised(client, prompt="2+2?", max_cost=str(worst))
    assert out["supervision"] is None and len(sandbox.state.ledger) == before + 1
    assert out["supervision_error"].startswith("The supervisor's review was not run: The answer cost $")
    assert f"of the ${worst.normalize():f} cap (max_cost), leaving $" in out["supervision_error"]
    assert Decimal(str(out["request_cost"])) == sandbox.state.ledger[-1].cost <= worst


async def test_request_cost_counts_the_review_within_max_cost(
    client: Client, sandbox: Sandbox, upstream: Upstream
) -> None:
    """max_cost leaves the review exactly its worst case after the answer: it runs, and `request_cost` is both
    requests (as billed), `cost` the answer's own."""
    worst, answered = await _review_worst_case(client, sandbox, upstream)
    before = len(sandbox.state.ledger)
    out = await _supervised(client, prompt="2+2?", max_cost=str(worst + answered))
    billed = [entry.cost for entry in sandbox.state.ledger[before:]]
    assert out["supervision_error"] is None and len(billed) == 2
    assert Decimal(str(out["cost"])) == billed[0] == answered
    assert Decimal(str(out["request_cost"])) == sum(billed) == Decimal(str(out["supervision"]["total_cost"]))
    assert sum(billed) <= worst + answered


async def test_the_per_request_budget_caps_the_answer_and_its_review_together(
    client: Client, sandbox: Sandbox, upstream: Upstream
) -> None:
    """The per-request budget, like max_cost, is for the whole call: what the answer left is too little."""
    worst, _ = await _review_worst_case(client, sandbox, upstream)
    await answer(client, "set_budget", per_request=str(worst))
    before = len(sandbox.state.ledger)
    out = await _supervised(client, prompt="2+2?")
    assert out["supervision"] is None and len(sandbox.state.ledger) == before + 1
    assert f"of the ${worst.normalize():f} cap (the per-request budget)" in out["supervision_error"]


async def _review_worst_case(client: Client, sandbox: Sandbox, upstream: Upstream) -> tuple[Decimal, Decimal]:
    """(the worst case of the review of '2+2?', as plan_route reckons it; what the answer to '2+2?' costs)."""
    await _supervised(client, prompt="2+2?")
    answered = sandbox.state.ledger[-2].cost
    review = [dict(m) for m in upstream.sent[SUPERVISOR][-1]]
    plan = await answer(client, "plan_route", messages=review, model=SUPERVISOR)
    assert plan["candidates"][0]["model"] == SUPERVISOR
    return Decimal(str(plan["estimated_cost"])), answered
