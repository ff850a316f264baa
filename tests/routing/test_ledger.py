"""Ledger rows: a cost computed when OpenRouter sends none is at the prices of the model that answered,
found by the `model` the answer reports (its canonical slug); the result hands back what the next turn needs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from modelyard.openrouter.schemas import ChatChoice, ChatMessage, ChatResponse, ToolCall, Usage
from modelyard.routing.catalog import Catalog, CatalogEntry
from modelyard.routing.ledger import _cost, success_row
from modelyard.routing.request import RouteRequest
from modelyard.routing.resolve import resolve_model
from modelyard.routing.selection import Candidate, Plan
from tests.routing.catalog_factory import FETCHED_AT, GPT_4O_MINI, catalog, model, small_catalog

SLUG = "lab/m-20260101"
"""The canonical slug a model shares with its `:batch` and `:free` rows, reported as the answer's `model`."""


def _family() -> Catalog:
    """lab/m at $1/$2 per M, its `:batch` row at half that, its `:free` row at nothing, one canonical slug."""
    return catalog(
        [
            model("lab/m", prompt="0.000001", completion="0.000002", canonical=SLUG),
            model("lab/m:batch", prompt="0.0000005", completion="0.000001", canonical=SLUG),
            model("lab/m:free", canonical=SLUG),
            model("lab/router-pick", prompt="0.000003", completion="0.000004"),
        ]
    )


def _computed(cat: Catalog, entry: CatalogEntry, answered_as: str) -> Decimal | None:
    """The cost computed for 1,000 prompt and 1,000 completion tokens answered by `entry`, OpenRouter
    reporting `answered_as` and no cost."""
    response = ChatResponse(model=answered_as, created=int(FETCHED_AT))
    usage = Usage(prompt_tokens=1000, completion_tokens=1000)
    request = RouteRequest(messages=[{"role": "user", "content": "hi"}])
    cost, source = _cost(cat, Candidate(entry, 0.0, 1000, None, "named"), response, usage, request, FETCHED_AT)
    assert source == "computed"
    return cost


@pytest.mark.parametrize(
    ("asked", "expected"),
    [("lab/m", Decimal("0.003")), ("lab/m:batch", Decimal("0.0015")), ("lab/m:free", Decimal(0))],
)
def test_an_answer_reported_by_its_shared_canonical_slug_is_priced_as_the_model_asked_for(
    asked: str, expected: Decimal
) -> None:
    """The slug names the paid, batch and free rows alike: the one that was asked for is the one that answered."""
    cat = _family()
    assert _computed(cat, cat.entries[asked], SLUG) == expected


def test_a_routers_pick_is_priced_as_the_model_it_reports() -> None:
    """An answer reporting another model than the candidate (a router's choice) is priced at that model."""
    cat = _family()
    assert _computed(cat, cat.entries["lab/m"], "lab/router-pick") == Decimal("0.007")


def test_an_answer_to_a_routing_variant_is_priced_as_its_base_model() -> None:
    """`X:floor` sent, `X` reported: the base model's prices (0.15 + 0.6 per M for 1,000 tokens each)."""
    cat = small_catalog()
    assert _computed(cat, resolve_model(cat, f"{GPT_4O_MINI}:floor"), GPT_4O_MINI) == Decimal("0.00075")


@pytest.mark.parametrize(
    "details",
    [
        [{"type": "reasoning.encrypted", "data": "EjQK", "format": "google-gemini-v1", "id": "tool_1", "index": 0}],
        None,
    ],
    ids=["with details", "without"],
)
def test_the_result_carries_the_answers_reasoning_details_to_send_back_unchanged(
    details: list[dict[str, object]] | None,
) -> None:
    """A tool-loop caller sends the assistant turn back with its `reasoning_details` (reference §3.1):
    the result has them as the answer's message did, or null when it had none."""
    cat = _family()
    candidate = Candidate(cat.entries["lab/m"], 0.0, 1000, None, "named")
    message = ChatMessage(tool_calls=[ToolCall(id="tool_1", index=0)], reasoning_details=details)
    response = ChatResponse(model="lab/m", choices=[ChatChoice(finish_reason="tool_calls", message=message)])
    request = RouteRequest(messages=[{"role": "user", "content": "weather?"}])
    plan = Plan(candidates=[candidate], mode="named")
    _, result = success_row(request, plan, cat, candidate, response, [], latency_ms=1.0, total_ms=1.0, now=FETCHED_AT)
    assert result.reasoning_details == details
    assert result.model_dump(mode="json")["reasoning_details"] == details
