"""What a request cost in all: its answer plus the earlier attempts OpenRouter billed (`request_cost`)."""

from __future__ import annotations

from decimal import Decimal

import anyio
import pytest

from modelyard.errors import AllCandidatesFailedError, ModelyardError, UpstreamError
from tests.rejected_json import json_answered_with_prose
from tests.routing.conftest import Rig, RigFactory

pytestmark = pytest.mark.anyio

CHEAP = "meta-llama/llama-3.1-8b-instruct"
BACKUP = "openai/gpt-4o-mini"
JSON = {"type": "json_object"}


@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_after_one_the_schema_rejected_reports_both_bills_as_its_request_cost(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """`cost` is the answer's; `request_cost` adds the rejected answer's bill: the sandbox's total, the ledger's."""
    json_answered_with_prose(monkeypatch, model=BACKUP)
    result = await rig.router.execute(rig.ask(model=BACKUP, models=[CHEAP], response_format=JSON, stream=stream))
    rejected, answered = result.attempts
    assert (rejected.error_kind, answered.outcome, result.resolved_model) == ("schema_validation", "ok", CHEAP)
    assert result.cost == rig.sandbox.state.ledger[-1].cost and rejected.cost is not None
    assert result.request_cost == rejected.cost + result.cost == rig.billed() > result.cost
    assert sum(row.cost for row in await rig.store.rows() if row.cost is not None) == result.request_cost


async def test_a_request_answered_at_the_first_attempt_costs_its_answer(rig: Rig) -> None:
    result = await rig.router.execute(rig.ask(model=BACKUP, response_format=JSON))
    assert result.request_cost == result.cost == rig.billed() > 0


async def test_a_cache_hit_costs_nothing_and_saves_the_answers_cost_not_the_rejected_ones(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rejected answer was paid for by the request that computed the entry; a hit would not pay it again."""
    json_answered_with_prose(monkeypatch, model=BACKUP)
    first = await rig.router.execute(rig.ask(model=BACKUP, models=[CHEAP], response_format=JSON, cache="on"))
    hit = await rig.router.execute(rig.ask(model=BACKUP, models=[CHEAP], response_format=JSON, cache="on"))
    assert first.cost is not None and first.request_cost == rig.billed() > first.cost
    assert hit.cached and (hit.cost, hit.request_cost, hit.saved) == (Decimal(0), Decimal(0), first.cost)


async def test_an_earlier_attempt_abandoned_after_its_answer_began_makes_the_request_cost_unknown(
    rig_factory: RigFactory,
) -> None:
    """The sandbox bills the answer the router stopped waiting for; what it cost is not known yet, so the
    request's cost is null (never the answer's alone), while the answer's own cost is known."""
    rig: Rig = await rig_factory(request_timeout_s=0.3)
    rig.sandbox.state.faults.add(model=CHEAP, kind="latency", count=1, latency_ms=500)
    with anyio.fail_after(20):
        result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
    assert [a.error_kind for a in result.attempts] == ["timeout", None]
    assert result.cost is not None and result.cost > 0 and result.request_cost is None


async def test_a_request_whose_every_answer_the_schema_rejected_says_what_it_was_billed(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No answer, but two bills: the error carries their sum (the sandbox's total, the ledger's) and says it."""
    json_answered_with_prose(monkeypatch, times=2)
    with pytest.raises(AllCandidatesFailedError) as failed:
        await rig.router.execute(rig.ask(model=BACKUP, models=[CHEAP], response_format=JSON))
    billed = rig.billed()
    assert failed.value.billed == billed > 0
    assert sum(row.cost for row in await rig.store.rows() if row.cost is not None) == billed
    assert f"OpenRouter billed ${billed.normalize():f} for the rejected answers" in str(failed.value)


async def test_a_request_that_failed_after_an_answer_it_abandoned_says_it_may_still_be_billed(
    rig_factory: RigFactory,
) -> None:
    """The answer the router stopped waiting for may be billed at a cost only known later: not "$0"."""
    rig: Rig = await rig_factory(request_timeout_s=0.3)
    rig.sandbox.state.faults.add(model=CHEAP, kind="latency", count=10, latency_ms=500)
    with anyio.fail_after(20), pytest.raises(AllCandidatesFailedError) as failed:
        await rig.router.execute(rig.ask(model=CHEAP))
    assert failed.value.billed is None and "may still be billed" in str(failed.value)


@pytest.mark.parametrize("stopped", [False, True], ids=["all rejected", "then a final 402"])
async def test_a_request_that_waited_for_an_identical_one_which_failed_says_it_was_billed_nothing(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, stopped: bool
) -> None:
    """Two identical requests in flight share one upstream call: its rejected answers were billed once, to
    the request that made it. The one that waited spent nothing (its ledger row costs $0), so its error must
    not claim the bill too: the errors' `billed` add up to the sandbox's total, the ledger's. The same when
    the call ended with a final error (the key out of credit) after a rejected answer."""
    json_answered_with_prose(monkeypatch, times=10)
    if stopped:
        rig.sandbox.state.faults.add(model=CHEAP, kind="error_in_200", status=402, message="Insufficient credits")
    errors: list[ModelyardError] = []

    async def ask() -> None:
        with pytest.raises(UpstreamError if stopped else AllCandidatesFailedError) as failed:
            await rig.router.execute(rig.ask(model=BACKUP, models=[CHEAP], response_format=JSON, cache="on"))
        errors.append(failed.value)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(ask)
            group.start_soon(ask)
    billed = rig.billed()
    assert billed > 0 and sum(row.cost for row in await rig.store.rows() if row.cost is not None) == billed
    assert sorted(e.billed for e in errors if e.billed is not None) == [Decimal(0), billed]
    assert sum(f"OpenRouter billed ${billed.normalize():f}" in str(e) for e in errors) == 1


async def test_a_request_stopped_by_a_final_error_after_a_rejected_answer_says_what_it_was_billed(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key runs out of credit (a 402 inside a 200 body: final) after an answer the schema rejected was
    billed: that error is raised as it is, and says the bill too (the ledger has it)."""
    json_answered_with_prose(monkeypatch, model=BACKUP)
    rig.sandbox.state.faults.add(model=CHEAP, kind="error_in_200", status=402, message="Insufficient credits")
    with pytest.raises(UpstreamError) as stopped:
        await rig.router.execute(rig.ask(model=BACKUP, models=[CHEAP], response_format=JSON))
    billed = rig.billed()
    assert stopped.value.billed == billed > 0
    assert f"OpenRouter billed ${billed.normalize():f} for the rejected answers" in str(stopped.value)
