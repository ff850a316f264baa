"""The Router against the sandbox over loopback: selection, accounting, fallback, retry, streaming."""

from __future__ import annotations

import re
from contextlib import aclosing
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from modelyard import errors
from modelyard.routing.attempt import Restart, TextDelta
from modelyard.routing.result import RouteResult
from tests.routing.conftest import FakeSleep, Rig, RigFactory

pytestmark = pytest.mark.anyio

CHEAP = "meta-llama/llama-3.1-8b-instruct"
BACKUP = "openai/gpt-4o-mini"


class BlockingSleep(FakeSleep):
    """Records the wait, then waits forever (until cancelled)."""

    async def __call__(self, seconds: float) -> None:
        await super().__call__(seconds)
        await anyio.sleep_forever()


async def test_auto_selection_answers_and_reports_cost_equal_to_what_the_upstream_billed(rig: Rig) -> None:
    """An automatic request gets an answer whose cost is exactly the sandbox's billed amount."""
    result = await rig.router.execute(rig.ask("Say hi in Portuguese"))
    assert result.content and result.cost is not None and result.cost > 0
    assert result.cost_source == "upstream" and result.selection.startswith("auto:")
    assert rig.sandbox.state.ledger[-1].cost == result.cost
    assert [a.outcome for a in result.attempts] == ["ok"]


async def test_the_ledger_total_matches_the_upstream_billed_total_to_the_last_digit(rig: Rig) -> None:
    """After a mix of models, the router's ledger sum equals the sandbox's billed sum as Decimals."""
    for index, model in enumerate(["auto", BACKUP, "anthropic/claude-haiku-4.5", "economy", "premium"]):
        await rig.router.execute(rig.ask(f"question {index} " * (index + 1), model=model, max_tokens=64))
    rows = await rig.store.rows()
    assert sum((r.cost for r in rows if r.cost is not None), Decimal(0)) == rig.billed()
    assert len(rows) == 5


async def test_the_request_sends_the_reserved_max_tokens_upstream(rig: Rig) -> None:
    """Without max_tokens, the configured default (capped by the model) is what the upstream sees."""
    await rig.router.execute(rig.ask(model=BACKUP))
    assert rig.sandbox.state.ledger[-1].max_tokens == 4096


@pytest.mark.parametrize(
    ("kind", "stream"),
    [
        ("rate_limit", False),
        ("server_error", False),
        ("bad_gateway", False),
        ("unavailable", False),
        ("timeout", False),
        ("error_in_200", False),
        ("malformed_json", False),
        ("reset", False),
        ("mid_stream_error", True),
        ("truncated_stream", True),
        ("moderation", False),
    ],
)
async def test_a_failing_model_falls_back_to_the_next_in_the_chain(rig: Rig, kind: str, stream: bool) -> None:
    """Each failure kind on the first model ends in an answer from the second, with the failure listed."""
    rig.sandbox.state.faults.add(model=CHEAP, kind=kind, count=None, retry_after=1)
    result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP], stream=stream))
    assert result.resolved_model == BACKUP and result.content
    failed = [a for a in result.attempts if a.outcome == "error"]
    assert failed and all(a.model == CHEAP for a in failed)
    assert result.attempts[-1].model == BACKUP and result.attempts[-1].outcome == "ok"


async def test_a_hanging_model_is_abandoned_at_the_read_timeout_and_the_next_one_answers(
    rig_factory: RigFactory,
) -> None:
    """A hang on the first model costs the read timeout, then the fallback answers within timeout_s."""
    rig: Rig = await rig_factory(request_timeout_s=0.3, max_retries=0)
    rig.sandbox.state.faults.add(model=CHEAP, kind="hang", count=None)
    with anyio.fail_after(10):
        result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP], timeout_s=5.0))
    assert result.resolved_model == BACKUP
    assert [a.error_kind for a in result.attempts] == ["timeout", None]


async def test_timeout_s_bounds_the_whole_request(rig_factory: RigFactory) -> None:
    """When every model hangs, the request ends at timeout_s with a timeout error."""
    rig: Rig = await rig_factory()
    rig.sandbox.state.faults.add(model="*", kind="hang", count=None)
    with anyio.fail_after(10), pytest.raises(errors.AllCandidatesFailedError, match=r"timeout_s=0\.5"):
        await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP], timeout_s=0.5))


async def test_retry_after_is_honoured_before_retrying_the_same_model(rig: Rig) -> None:
    """A 429 with Retry-After 3 makes the router wait at least 3 s, then the same model answers."""
    rig.sandbox.state.faults.add(model=CHEAP, kind="rate_limit", count=1, retry_after=3)
    result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
    assert result.resolved_model == CHEAP
    assert [a.outcome for a in result.attempts] == ["error", "ok"]
    assert rig.sleep.waits and rig.sleep.waits[0] >= 3


async def test_a_moderation_block_is_not_retried_on_the_same_model(rig: Rig) -> None:
    """403 moves on without waiting or retrying."""
    rig.sandbox.state.faults.add(model=CHEAP, kind="moderation", count=None)
    result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
    assert [a.model for a in result.attempts] == [CHEAP, BACKUP] and rig.sleep.waits == []


async def test_a_spent_key_stops_the_request_saying_the_key_is_out_of_credit(rig: Rig) -> None:
    """402 is final: no fallback, and the error says the OpenRouter key is out of credit."""
    rig.sandbox.state.set_key_limit(Decimal("0"))
    with pytest.raises(errors.InsufficientCreditsError) as caught:
        await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
    assert "credit" in str(caught.value).lower()
    assert [e.status for e in rig.sandbox.state.ledger] == [402]


async def test_when_every_candidate_fails_the_error_says_what_each_answered(rig: Rig) -> None:
    """All models failing raises one error naming each model and its failure."""
    rig.sandbox.state.faults.add(model="*", kind="server_error", count=None)
    with pytest.raises(errors.AllCandidatesFailedError) as caught:
        await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
    message = str(caught.value)
    assert CHEAP in message and BACKUP in message and "500" in message
    assert (await rig.store.rows())[-1].status == "error"


async def test_a_failed_request_is_a_row_that_cost_nothing_not_one_whose_cost_is_unknown(rig: Rig) -> None:
    """Every attempt failing (nothing billed) leaves a row of cost 0: a null cost in the ledger means only a
    bill still to be found out, so an operator can query for those."""
    rig.sandbox.state.faults.add(model="*", kind="server_error", count=None)
    with pytest.raises(errors.AllCandidatesFailedError):
        await rig.router.execute(rig.ask(model=CHEAP))
    row = (await rig.store.rows())[-1]
    assert (row.status, row.cost) == ("error", Decimal(0))
    assert rig.billed() == 0


async def test_a_refused_request_is_a_row_that_cost_nothing(rig: Rig) -> None:
    """A request no model can take within its cap is refused before sending; its row says it cost $0."""
    with pytest.raises((errors.NoCandidatesError, errors.BudgetExceededError)):
        await rig.router.execute(rig.ask(model=CHEAP, max_cost=Decimal("0.000000001")))
    row = (await rig.store.rows())[-1]
    assert (row.status, row.cost) == ("refused", Decimal(0))


async def test_a_cache_hits_row_names_the_cache_as_its_cost_source_as_the_result_does(rig: Rig) -> None:
    """The ledger and the tool result agree on where a hit's $0 came from."""
    await rig.router.execute(rig.ask(model=CHEAP, cache="on"))
    hit = await rig.router.execute(rig.ask(model=CHEAP, cache="on"))
    row = (await rig.store.rows())[-1]
    assert hit.cost_source == row.cost_source == "cache" and row.cache_hit


async def test_total_attempts_are_capped(rig_factory: RigFactory) -> None:
    """max_attempts bounds upstream calls however long the chain."""
    rig: Rig = await rig_factory(max_attempts=3)
    rig.sandbox.state.faults.add(model="*", kind="server_error", count=None)
    chain = [BACKUP, "openai/gpt-4.1-nano", "mistralai/mistral-nemo", "qwen/qwen3-32b"]
    with pytest.raises(errors.AllCandidatesFailedError):
        await rig.router.execute(rig.ask(model=CHEAP, models=chain))
    assert rig.received() == 3


async def test_a_fallback_never_costs_more_than_the_price_cap_allows(rig: Rig) -> None:
    """A dear model in the chain is excluded by max_cost_per_1k rather than tried."""
    rig.sandbox.state.faults.add(model=CHEAP, kind="server_error", count=None)
    with pytest.raises(errors.AllCandidatesFailedError):
        await rig.router.execute(rig.ask(model=CHEAP, models=["openai/gpt-5.5"], max_cost_per_1k=Decimal("0.001")))
    assert {e.requested_model for e in rig.sandbox.state.ledger} == {CHEAP}


async def test_the_circuit_breaker_opens_after_repeated_failures_and_skips_the_model(rig: Rig) -> None:
    """After 5 retryable failures the model is skipped without a request."""
    rig.sandbox.state.faults.add(model=CHEAP, kind="server_error", count=None)
    for _ in range(2):
        await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
    assert rig.router.breakers.state(CHEAP) == "open"
    before = rig.received()
    result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
    assert result.resolved_model == BACKUP and rig.received() == before + 1
    plan = await rig.router.plan(rig.ask(model="auto"))
    assert any(e.model == CHEAP and "breaker" in e.reason for e in plan.excluded)


async def test_when_only_open_breakers_stand_in_the_way_the_error_says_to_wait_not_to_relax(rig: Rig) -> None:
    """A chain whose every model is paused by its breaker is refused with advice that can work."""
    rig.sandbox.state.faults.add(model=CHEAP, kind="server_error", count=None)
    for _ in range(2):
        with pytest.raises(errors.ModelyardError):
            await rig.router.execute(rig.ask(model=CHEAP))
    assert rig.router.breakers.state(CHEAP) == "open"
    with pytest.raises(errors.NoCandidatesError) as refused:
        await rig.router.execute(rig.ask(model=CHEAP))
    message = str(refused.value)
    assert "circuit breaker" in message and CHEAP in message and re.search(r"Retry in \d+ s", message)
    assert "Relax capabilities" not in message and "drop" not in message


async def test_streaming_sends_deltas_in_order_and_the_result_holds_the_full_text(rig: Rig) -> None:
    """stream() yields text deltas, then a result whose content is their concatenation."""
    items = [item async for item in rig.router.stream(rig.ask("Tell me a story", model=BACKUP))]
    deltas = [i.text for i in items if isinstance(i, TextDelta)]
    result = items[-1]
    assert isinstance(result, RouteResult) and len(deltas) > 1
    assert "".join(deltas) == result.content and result.cost == rig.sandbox.state.ledger[-1].cost


async def test_a_streamed_reasoning_answer_hands_back_the_reasoning_details_a_whole_one_does(rig: Rig) -> None:
    """The sandbox streams Anthropic reasoning in fragments of one block; the streamed result joins them into
    the one detail the non-streamed result carries, ready to be sent back on the next turn."""
    results = [
        await rig.router.execute(
            rig.ask("Why is the sky blue?", model="anthropic/claude-haiku-4.5", reasoning={"effort": "low"}, **fields)
        )
        for fields in ({"cache": "off"}, {"cache": "off", "stream": True})
    ]
    whole, streamed = (r.reasoning_details for r in results)
    assert whole and whole[0]["type"] == "reasoning.text" and whole[0]["text"] == results[0].reasoning
    assert streamed == whole and [e.stream for e in rig.sandbox.state.ledger] == [False, True]


async def test_a_stream_that_fails_after_its_first_token_restarts_on_the_fallback(rig: Rig) -> None:
    """A mid-stream error after text was sent announces a restart; the result is the fallback's answer."""
    rig.sandbox.state.faults.add(model=CHEAP, kind="mid_stream_error", count=None, after_chunks=2)
    items = [item async for item in rig.router.stream(rig.ask("Tell me a story", model=CHEAP, models=[BACKUP]))]
    restarts = [i for i in items if isinstance(i, Restart)]
    result = items[-1]
    assert len(restarts) == 3 and {r.failed_model for r in restarts} == {CHEAP}  # two retries, then fallback
    assert isinstance(result, RouteResult) and result.resolved_model == BACKUP
    last_restart = max(i for i, item in enumerate(items) if isinstance(item, Restart))
    after_restart = items[last_restart + 1 : -1]
    assert "".join(i.text for i in after_restart if isinstance(i, TextDelta)) == result.content


async def test_leaving_a_stream_early_closes_the_upstream_stream_and_frees_its_hold_by_the_time_aclose_returns(
    rig: Rig,
) -> None:
    """The stream runs in the caller's task: closing it ends the attempt there and then, billing nothing."""
    rig.sandbox.state.config.stream_chunk_delay_ms = 200  # the whole answer would take seconds
    stream = rig.router.stream(rig.ask("Tell me a long story", model=BACKUP))
    with anyio.fail_after(10):
        assert isinstance(await anext(stream), TextDelta)
        assert (await rig.router.budgets.totals()).reserved > 0
        await stream.aclose()
        assert (await rig.router.budgets.totals()).reserved == 0
        for _ in range(250):
            if rig.sandbox.state.ledger[-1].client_disconnected:
                break
            await anyio.sleep(0.02)
    assert rig.sandbox.state.ledger[-1].client_disconnected, "the sandbox never saw the stream closed"
    assert rig.billed() == 0 and rig.sandbox.state.ledger[-1].finish_reason is None


async def test_a_stream_that_stalls_mid_answer_ends_at_timeout_s_after_its_text_and_a_restart(
    rig_factory: RigFactory,
) -> None:
    """`timeout_s` bounds each wait for the upstream: a stalled stream ends in a timeout, not a hang."""
    rig: Rig = await rig_factory(max_retries=0)
    rig.sandbox.state.config.stream_chunk_delay_ms = 3000
    items: list[object] = []
    with anyio.fail_after(10), pytest.raises(errors.AllCandidatesFailedError, match=r"timeout_s=0\.5"):
        async for item in rig.router.stream(rig.ask("Tell me a story", model=CHEAP, models=[BACKUP], timeout_s=0.5)):
            items.append(item)
    assert isinstance(items[0], TextDelta) and isinstance(items[-1], Restart) and items[-1].failed_model == CHEAP


async def test_a_cacheable_stream_is_answered_from_the_cache_the_second_time(rig: Rig) -> None:
    """With temperature 0 the second stream is one delta with the whole cached answer, at no cost."""
    ask = rig.ask("Tell me a story", model=BACKUP, temperature=0)
    first = [item async for item in rig.router.stream(ask)]
    second = [item async for item in rig.router.stream(ask)]
    assert isinstance(first[-1], RouteResult) and isinstance(second[-1], RouteResult)
    assert not first[-1].cached and second[-1].cached and second[-1].cost == 0
    assert [i.text for i in second if isinstance(i, TextDelta)] == [first[-1].content]
    assert rig.received() == 1


async def test_closing_a_stream_at_a_restart_frees_the_hold(rig: Rig) -> None:
    """Left at a `Restart` (yielded while a failure is being handled), the stream still frees its hold."""
    rig.sandbox.state.faults.add(model=CHEAP, kind="mid_stream_error", count=None, after_chunks=2)
    stream = rig.router.stream(rig.ask("Tell me a story", model=CHEAP, models=[BACKUP]))
    with anyio.fail_after(10):
        async for item in stream:
            if isinstance(item, Restart):
                break
        await stream.aclose()
    assert (await rig.router.budgets.totals()).reserved == 0


async def test_a_sink_that_raises_at_a_restart_gets_its_error_and_the_hold_is_freed(rig: Rig) -> None:
    rig.sandbox.state.faults.add(model=CHEAP, kind="mid_stream_error", count=None, after_chunks=2)

    async def sink(event: object) -> None:
        if isinstance(event, Restart):
            raise RuntimeError("consumer gave up")

    with anyio.fail_after(10), pytest.raises(RuntimeError, match="gave up"):
        await rig.router.execute(rig.ask("Tell me a story", model=CHEAP, models=[BACKUP]), on_event=sink)
    assert (await rig.router.budgets.totals()).reserved == 0


async def test_a_request_cancelled_during_a_retrys_back_off_frees_its_hold(rig_factory: RigFactory) -> None:
    """The back-off between retries is part of the attempt: cancelling the caller there frees the hold."""
    sleep = BlockingSleep()
    rig: Rig = await rig_factory(sleep=sleep)
    rig.sandbox.state.faults.add(model=CHEAP, kind="rate_limit", count=None, retry_after=3)
    with anyio.move_on_after(1.0) as scope:
        await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
    assert scope.cancelled_caught and sleep.waits == [3.0]
    assert (await rig.router.budgets.totals()).reserved == 0


@pytest.mark.parametrize("temperature", [None, 0], ids=["uncached", "cacheable"])
async def test_closing_a_stream_early_leaves_the_callers_task_and_cancel_scopes_intact(
    rig: Rig, temperature: float | None
) -> None:
    """A cacheable stream runs in a task: closing it early cancels that task, not the caller's."""
    rig.sandbox.state.config.stream_chunk_delay_ms = 200
    stream = rig.router.stream(rig.ask("Tell me a long story", model=BACKUP, temperature=temperature))
    with anyio.fail_after(10):
        assert isinstance(await anext(stream), TextDelta)
        await stream.aclose()
        assert (await rig.router.budgets.totals()).reserved == 0
        with anyio.move_on_after(0.05) as scope:
            await anyio.sleep(1)
    assert scope.cancelled_caught


@pytest.mark.parametrize("temperature", [None, 0], ids=["uncached", "cacheable"])
async def test_a_failed_stream_raises_the_same_error_whether_or_not_it_is_cacheable(
    rig_factory: RigFactory, temperature: float | None
) -> None:
    rig: Rig = await rig_factory(max_retries=0)
    rig.sandbox.state.faults.add(model="*", kind="server_error", count=None)
    with anyio.fail_after(10), pytest.raises(errors.AllCandidatesFailedError):
        async for _ in rig.router.stream(rig.ask("Tell me a story", model=CHEAP, temperature=temperature)):
            pass


async def test_timeout_s_counts_the_time_a_slow_sink_takes(rig: Rig) -> None:
    """Each piece of text is handed on only while `timeout_s` lasts, however long the sink takes."""
    rig.sandbox.state.config.stream_chunk_delay_ms = 0

    async def slow(event: object) -> None:
        await anyio.sleep(0.2)

    with anyio.fail_after(10), pytest.raises(errors.AllCandidatesFailedError, match=r"timeout_s=0\.5"):
        await rig.router.execute(rig.ask("Tell me a story", model=BACKUP, timeout_s=0.5), on_event=slow)
    assert (await rig.router.budgets.totals()).reserved == 0


async def test_a_slow_consumer_running_out_of_timeout_s_does_not_count_against_the_models_breaker(rig: Rig) -> None:
    rig.sandbox.state.config.stream_chunk_delay_ms = 0

    async def slow(event: object) -> None:
        await anyio.sleep(0.2)

    for _ in range(6):
        with anyio.fail_after(10), pytest.raises(errors.AllCandidatesFailedError, match="timeout_s"):
            await rig.router.execute(rig.ask("Tell me a story", model=BACKUP, timeout_s=0.3), on_event=slow)
    assert rig.router.breakers.state(BACKUP) == "closed"


async def test_an_answer_rejected_by_its_schema_settles_its_hold_once_and_never_releases_it(rig: Rig) -> None:
    """The billed answer takes the hold's place; releasing it as well would free what the lease keeps."""
    budgets = rig.router.fallback.budgets
    released: list[object] = []
    release = budgets.release

    async def counting_release(reservation: Any) -> None:
        released.append(reservation)
        await release(reservation)

    budgets.release = counting_release  # type: ignore[method-assign]
    never = {"type": "json_schema", "json_schema": {"name": "never", "schema": {"not": {}}}}
    with pytest.raises(errors.AllCandidatesFailedError, match="fails the schema"):
        await rig.router.execute(rig.ask(model=BACKUP, response_format=never, cache="off"))
    assert released == [] and rig.billed() > 0
    assert (await rig.router.budgets.totals()).spent_today == rig.billed()


async def test_tool_calls_come_back_with_arguments_and_a_tool_capable_model(rig: Rig) -> None:
    """Giving tools implies tool support; the answer carries a tool call with JSON arguments."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    result = await rig.router.execute(rig.ask("Weather in Florence?", tools=tools))
    assert result.finish_reason == "tool_calls" and result.tool_calls[0]["function"]["name"] == "weather"
    plan = await rig.router.plan(rig.ask(tools=tools))
    assert any("lacks tools" in e.reason for e in plan.excluded)


async def test_json_schema_answers_are_validated(rig: Rig) -> None:
    """A json_schema request gets schema-valid JSON from a structured-outputs model."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    result = await rig.router.execute(rig.ask("Pick a number", response_format=fmt))
    assert result.content and '"n"' in result.content


async def test_plan_spends_nothing_and_explains_exclusions(rig: Rig) -> None:
    """plan_route ranks candidates with worst-case costs and sends no request."""
    plan = await rig.router.plan(rig.ask(capabilities=["vision"], max_cost_per_1k=Decimal("0.001")))
    assert plan.candidates and all(c.worst_case_cost is not None for c in plan.candidates)
    assert any("lacks vision" in e.reason for e in plan.excluded)
    assert any("max_cost_per_1k" in e.reason for e in plan.excluded)
    assert rig.received() == 0


async def test_impossible_constraints_are_refused_with_the_reasons(rig: Rig) -> None:
    """No model left: NoCandidatesError says why, and a refused row is recorded."""
    with pytest.raises(errors.NoCandidatesError, match="lack reasoning or vision"):
        await rig.router.execute(rig.ask(capabilities=["vision", "reasoning"], max_cost_per_1k=Decimal("0.0000001")))
    assert rig.received() == 0 and (await rig.store.rows())[-1].status == "refused"


async def test_a_plan_with_no_model_left_is_returned_empty_with_why_instead_of_an_error(rig: Rig) -> None:
    """plan() answers a request execute would refuse: no candidates, every exclusion, and the grouped reason."""
    request = rig.ask(model="premium", max_cost=Decimal("0.0005"))
    plan = await rig.router.plan(request)
    assert plan.candidates == [] and plan.estimated_cost is None
    assert plan.excluded and plan.excluded_total == len(plan.excluded)
    assert plan.no_candidates_reason is not None
    assert "above the per-request cap $0.0005 (the request's max_cost)" in plan.no_candidates_reason
    with pytest.raises(errors.NoCandidatesError) as refused:
        await rig.router.execute(request)
    assert str(refused.value).startswith(plan.no_candidates_reason)
    assert rig.received() == 0


async def test_a_plan_with_candidates_has_no_reason_for_none(rig: Rig) -> None:
    """no_candidates_reason is null whenever a model is left."""
    plan = await rig.router.plan(rig.ask(model="premium"))
    assert plan.candidates and plan.no_candidates_reason is None


async def test_a_refusal_under_the_per_request_budget_names_the_budget_not_max_cost(
    rig_factory: RigFactory,
) -> None:
    """The operator's per_request limit binds: the reason names it, and raising max_cost is not offered."""
    rig = await rig_factory(budget={"per_request": "0.0005"})
    plan = await rig.router.plan(rig.ask(model="premium", max_cost=Decimal("1")))
    assert plan.no_candidates_reason is not None
    assert "(the per_request budget)" in plan.no_candidates_reason
    assert "raise max_cost" not in plan.no_candidates_reason


async def test_an_unknown_model_name_lists_the_closest_ids(rig: Rig) -> None:
    """A typo in model raises ModelNotFoundError with suggestions."""
    with pytest.raises(errors.ModelNotFoundError, match="gpt-4o-mini"):
        await rig.router.execute(rig.ask(model="gpt-4o-mnii"))


async def test_short_names_and_the_openrouter_prefix_resolve(rig: Rig) -> None:
    """`gpt-4o-mini` and `openrouter/openai/gpt-4o-mini` both reach openai/gpt-4o-mini."""
    for name in ("gpt-4o-mini", "openrouter/openai/gpt-4o-mini"):
        result = await rig.router.execute(rig.ask(model=name, max_tokens=16))
        assert result.resolved_model == BACKUP and result.requested_model == name


async def test_openrouter_auto_passes_through_and_is_billed_at_the_routed_model(rig: Rig) -> None:
    """openrouter/auto is sent as is; the answer names the model it routed to and its cost."""
    result = await rig.router.execute(rig.ask(model="openrouter/auto", max_tokens=32))
    assert result.resolved_model == "openrouter/auto" and result.model != "openrouter/auto"
    assert result.cost == rig.sandbox.state.ledger[-1].cost


async def test_failed_attempts_count_against_the_model_that_failed_in_metrics(rig: Rig) -> None:
    """A fallback's failed attempts show as failures of the first model, the answer under the second."""
    rig.sandbox.state.faults.add(model=CHEAP, kind="server_error", count=None)
    await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
    by_model = {m.model: m for m in (await rig.router.metrics("today")).by_model}
    assert by_model[CHEAP].failures == 3 and by_model[CHEAP].successes == 0
    assert by_model[BACKUP].successes == 1 and by_model[BACKUP].cost == rig.billed()


async def test_speed_fast_fetches_endpoint_stats_for_candidates_and_prefers_the_fastest(rig: Rig) -> None:
    """With speed='fast', the router reads /endpoints for the leading candidates and ranks throughput higher."""
    request = rig.ask(capabilities=["tools"], max_cost_per_1k=Decimal("0.002"))
    ranked = [c.model for c in (await rig.router.plan(request)).candidates]
    runner_up = ranked[1]
    for model in ranked:
        rig.sandbox.state.set_stats(model, latency_ms=400, throughput=1000 if model == runner_up else 20)
    fast = await rig.router.plan(request.model_copy(update={"speed": "fast"}))
    assert fast.candidates[0].model == runner_up and "speed 0.4" in fast.candidates[0].reason
    assert rig.router.speed.get(runner_up) is not None and rig.router.speed.get(runner_up).tier == "fast"
    unprobed = ranked[-1] if len(ranked) > 8 else None
    assert unprobed is None or not rig.router.speed.has_endpoint_stats(unprobed)


async def test_a_timeout_that_runs_out_before_any_attempt_is_a_timeout_error_that_names_it(rig: Rig) -> None:
    """Not "all candidates failed (0 attempts)": nothing failed, the time ran out."""
    with pytest.raises(errors.UpstreamTimeoutError, match=r"timeout_s=1e-09"):
        await rig.router.execute(rig.ask(model="openai/gpt-4o-mini", timeout_s=1e-9))
    assert rig.received() == 0
    [row] = await rig.store.rows()
    assert row.status == "error" and "timeout_s" in (row.error or "")


async def test_a_request_is_never_billed_above_its_max_cost_across_its_attempts(rig: Rig) -> None:
    """`max_cost` caps the request: an answer billed and then rejected (here: not JSON) leaves only the
    rest of the cap for the next candidate, which is skipped when its worst case no longer fits."""
    first, second = "openai/gpt-5.5", "anthropic/claude-opus-4.7"
    ask = {"model": first, "models": [second], "response_format": {"type": "json_object"}, "max_tokens": 32,
           "reasoning": {"effort": "max"}, "cache": "off"}  # fmt: skip
    plan = await rig.router.plan(rig.ask("hi", **ask))
    assert [c.model for c in plan.candidates] == [first, second]
    cap = max(c.worst_case_cost for c in plan.candidates if c.worst_case_cost is not None)
    with pytest.raises(errors.ModelyardError):
        await rig.router.execute(rig.ask("hi", max_cost=cap, **ask))
    assert 0 < rig.billed() <= cap
    rows = await rig.store.rows()
    assert sum(row.cost for row in rows if row.cost is not None) == rig.billed()


async def test_a_budget_refusal_does_not_use_up_a_half_open_breakers_one_trial(rig_factory: RigFactory) -> None:
    """The trial is claimed only for a request that is sent: refused by the budget, the model is tried at the
    next request, not one cooldown later."""
    cheap = "meta-llama/llama-3.1-8b-instruct"
    now = [1000.0]
    rig: Rig = await rig_factory(budget={"daily": "1"})
    rig.router.breakers._clock = lambda: now[0]
    rig.sandbox.state.faults.add(model=cheap, kind="server_error", count=None)
    for _ in range(2):
        with pytest.raises(errors.ModelyardError):
            await rig.router.execute(rig.ask(model=cheap, cache="off"))
    assert rig.router.breakers.state(cheap) == "open"
    rig.sandbox.state.faults.clear()
    now[0] += 31
    blocker = await rig.router.budgets.reserve(Decimal("1"))
    with pytest.raises(errors.BudgetExceededError):
        await rig.router.execute(rig.ask(model=cheap, cache="off"))
    await rig.router.budgets.release(blocker)
    now[0] += 1
    assert (await rig.router.execute(rig.ask(model=cheap, cache="off"))).resolved_model == cheap


class _SleepForever(FakeSleep):
    """A retry's back-off that never ends: the caller gives up during it."""

    async def __call__(self, seconds: float) -> None:
        await super().__call__(seconds)
        await anyio.sleep_forever()


async def test_a_request_its_caller_cancels_still_gets_its_ledger_row(rig_factory: RigFactory) -> None:
    cheap, backup = "meta-llama/llama-3.1-8b-instruct", "openai/gpt-4o-mini"
    rig: Rig = await rig_factory(sleep=_SleepForever())
    rig.sandbox.state.faults.add(model=cheap, kind="rate_limit", count=None, retry_after=3)
    with anyio.move_on_after(1.0) as scope:
        await rig.router.execute(rig.ask(model=cheap, models=[backup], cache="off"))
    assert scope.cancelled_caught and rig.received() == 1
    [row] = await rig.store.rows()
    assert (row.status, row.error, row.attempts) == ("cancelled", "cancelled by the caller", 1)
    metrics = await rig.router.metrics("all")
    assert (metrics.total_requests, metrics.failures) == (1, 1)
    assert (await rig.router.budgets.totals()).reserved == 0


async def test_a_stream_read_to_its_answer_writes_one_row_and_no_cancelled_one(rig: Rig) -> None:
    """The consumer leaving once it has the result is not a cancellation."""
    async with aclosing(rig.router.stream(rig.ask(model="openai/gpt-4o-mini", cache="off"))) as items:
        async for item in items:
            if isinstance(item, RouteResult):
                break
    assert [row.status for row in await rig.store.rows()] == ["ok"]


async def test_a_floor_variant_is_sent_as_asked_and_priced_as_its_model(rig: Rig) -> None:
    """`:floor` (providers sorted by price) goes upstream with the model; the answer costs the listed prices
    or less, so the budget holds it like its model."""
    result = await rig.router.execute(rig.ask(model="gpt-4o-mini:floor", cache="off"))
    assert rig.sandbox.state.ledger[-1].requested_model == "openai/gpt-4o-mini:floor"
    assert result.resolved_model == "openai/gpt-4o-mini" and result.cost == rig.billed()


async def test_a_request_streamed_to_an_event_sink_is_recorded_as_streamed(rig: Rig) -> None:
    """`execute(on_event=...)` streams upstream, as `modelyard run` does: its ledger row says so."""
    seen: list[object] = []

    async def sink(event: object) -> None:
        seen.append(event)

    await rig.router.execute(rig.ask("Tell me a story", model="openai/gpt-4o-mini"), on_event=sink)
    assert seen and rig.sandbox.state.ledger[-1].stream is True
    [row] = await rig.store.rows()
    assert row.streamed is True


async def test_a_slow_stream_reader_does_not_make_the_model_look_slow(rig_factory: RigFactory, tmp_path: Path) -> None:
    """The speed a model is ranked by is the upstream's: the time the consumer takes between reads is not."""
    model = "openai/gpt-4o-mini"
    rig: Rig = await rig_factory(db=tmp_path / "a.db")
    async for item in rig.router.stream(rig.ask("Tell me a story", model=model)):
        if not isinstance(item, RouteResult):
            await anyio.sleep(0.2)  # the reader, not the upstream, takes the time
    learned = rig.router.speed.get(model)
    assert learned is not None and learned.tier == "fast", learned
