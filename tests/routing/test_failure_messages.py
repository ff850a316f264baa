"""What a failed request tells the agent: when to try again, how much of the chain was really tried, and
whether the mistake is the request's own."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import anyio
import httpx2
import pytest

from modelyard import errors
from modelyard.openrouter import OpenRouterClient
from modelyard.routing.router import Router, RouterClock
from modelyard.settings import Settings
from tests.routing.conftest import KEY, FakeSleep, Rig, RigFactory

pytestmark = pytest.mark.anyio

CHEAP = "meta-llama/llama-3.1-8b-instruct"
BACKUP = "openai/gpt-4o-mini"
CHAIN = [BACKUP, "openai/gpt-4.1-nano", "mistralai/mistral-nemo", "qwen/qwen3-32b"]


async def test_a_rate_limit_with_a_long_retry_after_tells_the_agent_how_long_to_wait(rig: Rig) -> None:
    """A 429 asking for 120 s is not waited for (over 60 s): the error says the 120 s, as text and as a field."""
    rig.sandbox.state.faults.add(model="openai/gpt-4o", kind="rate_limit", count=None, retry_after=120)
    with pytest.raises(errors.AllCandidatesFailedError) as caught:
        await rig.router.execute(rig.ask(model="openai/gpt-4o"))
    assert "openai/gpt-4o: 429 rate limited: OpenRouter asks to wait 120 s." in str(caught.value)
    assert caught.value.retry_after_s == 120 and rig.sleep.waits == []


async def test_the_chains_wait_is_the_shortest_any_failed_model_asked_for(rig: Rig) -> None:
    rig.sandbox.state.faults.add(model=CHEAP, kind="rate_limit", count=None, retry_after=300)
    rig.sandbox.state.faults.add(model=BACKUP, kind="rate_limit", count=None, retry_after=90)
    with pytest.raises(errors.AllCandidatesFailedError) as caught:
        await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
    assert caught.value.retry_after_s == 90


async def test_a_breaker_refusal_says_in_how_many_seconds_a_trial_is_let_through(rig: Rig) -> None:
    """The breaker's cooldown is 30 s: the refusal names the seconds left of it, as text and as a field."""
    rig.sandbox.state.faults.add(model=CHEAP, kind="server_error", count=None)
    for _ in range(2):
        with pytest.raises(errors.AllCandidatesFailedError):
            await rig.router.execute(rig.ask(model=CHEAP))
    with pytest.raises(errors.NoCandidatesError) as refused:
        await rig.router.execute(rig.ask(model=CHEAP))
    said = re.search(r"Retry in (\d+) s \(when its circuit breaker lets a trial request through\)", str(refused.value))
    assert said is not None and 1 <= int(said.group(1)) <= 30, str(refused.value)
    assert "a little while" not in str(refused.value)
    assert refused.value.retry_after_s is not None and 0 < refused.value.retry_after_s <= 30


async def test_when_max_attempts_stops_the_chain_the_error_says_how_few_models_were_tried(
    rig_factory: RigFactory,
) -> None:
    """500s everywhere, 3 attempts a model, 6 in all: 2 of the 5 models were tried, and the error says so."""
    rig: Rig = await rig_factory(max_attempts=6)
    rig.sandbox.state.faults.add(model="*", kind="server_error", count=None)
    with pytest.raises(errors.AllCandidatesFailedError) as caught:
        await rig.router.execute(rig.ask(model=CHEAP, models=CHAIN))
    message = str(caught.value)
    assert message.startswith("Gave up after max_attempts=6 (2 of 5 candidate models tried): ")
    assert "All candidates failed" not in message
    assert (caught.value.attempts, caught.value.tried, caught.value.candidates) == (6, 2, 5)


async def test_when_every_candidate_was_tried_the_error_says_all_failed(rig: Rig) -> None:
    rig.sandbox.state.faults.add(model="*", kind="server_error", count=None)
    with pytest.raises(errors.AllCandidatesFailedError) as caught:
        await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
    assert str(caught.value).startswith("All candidates failed (6 attempts). ")
    assert (caught.value.tried, caught.value.candidates) == (2, 2)


async def test_when_timeout_s_stops_the_chain_the_error_says_so(rig: Rig) -> None:
    rig.sandbox.state.faults.add(model="*", kind="hang", count=None)
    with anyio.fail_after(10), pytest.raises(errors.AllCandidatesFailedError) as caught:
        await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP], timeout_s=0.5))
    assert str(caught.value).startswith("Gave up when timeout_s=0.5 ran out (1 of 2 candidate models tried): ")


async def test_a_timeout_that_may_be_billed_reads_as_sentences_and_points_at_get_metrics(rig: Rig) -> None:
    """An answer that began, then ran past timeout_s: a full stop, then where the agent sees what it cost."""
    rig.sandbox.state.faults.add(model="*", kind="latency", latency_ms=3000, count=None)
    with anyio.fail_after(10), pytest.raises(errors.AllCandidatesFailedError) as caught:
        await rig.router.execute(rig.ask(model=BACKUP, timeout_s=0.5))
    message = str(caught.value)
    assert "No complete answer within timeout_s=0.5. An attempt may still be billed" in message
    assert "get_metrics" in message and "ledger" not in message


def test_a_billed_note_follows_a_message_that_ends_in_a_full_stop_without_doubling_it() -> None:
    error = errors.UpstreamTimeoutError("No answer from OpenRouter in time.")
    error.billed = None
    assert "in time. An attempt may still be billed" in str(error)
    error.billed = Decimal("0.5")
    assert "in time. OpenRouter billed $0.5" in str(error)


def _refusing_upstream(calls: list[str]) -> httpx2.MockTransport:
    """An upstream whose chat endpoint rejects every request as invalid, OpenRouter's own verdict."""
    body = {
        "error": {
            "message": "Invalid tool parameters schema: tools[0].function.parameters is not a JSON Schema",
            "code": 400,
            "metadata": {"error_type": "invalid_request"},
        },
        "user_id": "user_2x",
    }

    def handle(request: httpx2.Request) -> httpx2.Response:
        calls.append(json.loads(request.content)["model"])
        return httpx2.Response(400, json=body)

    return httpx2.MockTransport(handle)


async def test_a_400_about_the_request_stops_the_fallback_and_says_it_is_the_callers_mistake(
    rig: Rig, tmp_path: Path
) -> None:
    """Two attempts (a second model confirms the verdict), no retry, no breaker count, no "all candidates
    failed": the request is what to fix."""
    await rig.router.execute(rig.ask(model=CHEAP))  # stores the catalog the next router reads
    calls: list[str] = []
    store = f"sqlite:///{tmp_path / 'x.db'}"
    settings = Settings(openrouter_api_key=KEY, openrouter_base_url=rig.sandbox.base_url, store=store)
    sleep = FakeSleep()
    async with OpenRouterClient(KEY, base_url=rig.sandbox.base_url, transport=_refusing_upstream(calls)) as client:
        router = Router(client, rig.store, settings, clock=RouterClock(sleep=sleep, random=lambda: 0.5))
        with pytest.raises(errors.InvalidRequestError) as caught:
            await router.execute(rig.ask(model=CHEAP, models=[BACKUP, "openai/gpt-4.1-nano"]))
    assert calls == [CHEAP, BACKUP] and sleep.waits == []  # the second model confirms it; the third is never sent
    assert "OpenRouter rejected the request itself (invalid_request" in str(caught.value)
    assert router.breakers.state(CHEAP) == "closed"
    row = (await rig.store.rows())[-1]
    assert (row.status, row.attempts) == ("error", 2)


async def test_a_400_about_the_model_still_falls_back(rig: Rig) -> None:
    message = f"{CHEAP} is not a valid model ID"
    rig.sandbox.state.faults.add(model=CHEAP, kind="server_error", status=400, message=message, count=None)
    result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
    assert result.resolved_model == BACKUP
    assert [(a.model, a.error_kind) for a in result.attempts] == [(CHEAP, "bad_request"), (BACKUP, None)]


MANDATORY_REASONING = {  # OpenRouter's own 400 for one endpoint (musistudio/claude-code-router#1238), tagged
    "error": {  # with the 2026 `error_type` (reference §6.4) as OpenRouter tags a bad request of its own
        "message": "Reasoning is mandatory for this endpoint and cannot be disabled.",
        "code": 400,
        "metadata": {"provider_name": None, "error_type": "invalid_request"},
    },
    "user_id": "user_2x",
}


def _one_model_refuses(calls: list[str], refusing: str, sandbox_url: str) -> httpx2.MockTransport:
    """`refusing` answers OpenRouter's own invalid_request 400; every other model goes to the sandbox."""

    async def handle(request: httpx2.Request) -> httpx2.Response:
        calls.append(json.loads(request.content)["model"])
        if calls[-1] == refusing:
            return httpx2.Response(400, json=MANDATORY_REASONING)
        async with httpx2.AsyncClient() as passthrough:
            url = sandbox_url.rstrip("/") + "/chat/completions"
            answer = await passthrough.post(url, content=request.content, headers=dict(request.headers))
        return httpx2.Response(answer.status_code, content=answer.content, headers=answer.headers)

    return httpx2.MockTransport(handle)


async def test_an_invalid_request_400_one_model_gives_does_not_stop_a_fallback_another_model_answers(
    rig: Rig, tmp_path: Path
) -> None:
    """The same verdict from OpenRouter can be about one endpoint (its reasoning cannot be disabled): the next
    model is still tried once; only a second model refusing the same way shows the request is what is wrong."""
    await rig.router.execute(rig.ask(model=CHEAP))  # stores the catalog the next router reads
    calls: list[str] = []
    store = f"sqlite:///{tmp_path / 'x.db'}"
    settings = Settings(openrouter_api_key=KEY, openrouter_base_url=rig.sandbox.base_url, store=store)
    transport = _one_model_refuses(calls, CHEAP, rig.sandbox.base_url)
    async with OpenRouterClient(KEY, base_url=rig.sandbox.base_url, transport=transport) as client:
        router = Router(client, rig.store, settings, clock=RouterClock(sleep=FakeSleep(), random=lambda: 0.5))
        result = await router.execute(rig.ask(model=CHEAP, models=[BACKUP], reasoning={"enabled": False}))
    assert result.resolved_model == BACKUP
    assert calls == [CHEAP, BACKUP]
