"""Budgets that hold under concurrency, and the response cache, against the sandbox."""

from __future__ import annotations

from decimal import Decimal

import anyio
import pytest

from modelyard import errors
from modelyard.routing.cache import canonical_key
from modelyard.routing.cache_results import cache_payload
from modelyard.routing.request import RouteRequest
from modelyard.settings import BudgetSettings, CacheSettings
from tests.routing.conftest import Rig, RigFactory

pytestmark = pytest.mark.anyio

MODEL = "openai/gpt-4o-mini"


async def test_200_concurrent_requests_never_overshoot_a_budget_that_fits_a_few(rig_factory: RigFactory) -> None:
    """The sandbox's own billed total stays within the daily budget; refusals say why."""
    rig: Rig = await rig_factory(budget=BudgetSettings(daily=Decimal("0.0005")))
    outcomes: list[str] = []

    async def one(index: int) -> None:
        try:
            await rig.router.execute(rig.ask(f"request {index}", model=MODEL, max_tokens=200))
            outcomes.append("ok")
        except errors.BudgetExceededError:
            outcomes.append("refused")

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            for index in range(200):
                group.start_soon(one, index)
    served = outcomes.count("ok")
    assert 0 < served < 200 and outcomes.count("refused") == 200 - served
    assert rig.billed() <= Decimal("0.0005")
    rows = await rig.store.rows()
    assert sum((r.cost for r in rows if r.cost is not None), Decimal(0)) == rig.billed()
    assert (await rig.router.budgets.totals()).reserved == 0
    print(f"budget test: 200 requests at c=200, served {served}, billed {rig.billed()} of 0.0005")


async def test_a_request_whose_worst_case_does_not_fit_is_refused_before_sending(rig_factory: RigFactory) -> None:
    """The refusal names the budget, what is left and the estimate; the upstream sees nothing."""
    rig: Rig = await rig_factory(budget=BudgetSettings(per_request=Decimal("0.0001")))
    with pytest.raises((errors.BudgetExceededError, errors.NoCandidatesError)) as caught:
        await rig.router.execute(rig.ask(model="openai/gpt-5.5", max_tokens=4000))
    assert "0.0001" in str(caught.value) or "per-request" in str(caught.value)
    assert rig.received() == 0


async def test_after_set_budget_daily_0_the_refusal_says_the_budget_is_exhausted_not_to_lower_max_tokens(
    rig: Rig,
) -> None:
    """With $0 left no smaller request fits and the agent cannot raise the limit: say when it resets and who can.
    No daily limit is configured, so the operator lifts the run-time one with `budget --reset`: raising
    MODELYARD_BUDGET__DAILY (the advice this gave) would not."""
    await rig.router.budgets.tighten(daily=Decimal(0))
    with pytest.raises(errors.BudgetExceededError) as caught:
        await rig.router.execute(rig.ask(model=MODEL, cache="off"))
    message = str(caught.value)
    assert "exhausted until it resets at 00:00 UTC" in message and "`modelyard budget --reset`" in message
    assert "lowered at run time" in message and "MODELYARD_BUDGET__DAILY" not in message
    assert "Lower max_tokens" not in message and "raise the budget" not in message
    assert rig.received() == 0


async def test_when_the_best_candidate_does_not_fit_a_cheaper_one_is_used(rig_factory: RigFactory) -> None:
    """A daily budget too small for the first candidate's worst case falls to a cheaper candidate."""
    rig: Rig = await rig_factory(budget=BudgetSettings(daily=Decimal("0.002")))
    result = await rig.router.execute(rig.ask(model="openai/gpt-4o", models=[MODEL], max_tokens=1000))
    assert result.resolved_model == MODEL
    assert result.attempts[0].outcome == "skipped" and "daily" in (result.attempts[0].error or "")


async def test_spend_survives_a_restart(rig_factory: RigFactory, tmp_path: object) -> None:
    """A new router on the same store sees the spend of the old one."""
    first: Rig = await rig_factory()
    await first.router.execute(first.ask(model=MODEL))
    second: Rig = await rig_factory(sandbox=first.sandbox)
    assert (await second.router.budgets.totals()).spent_today == first.billed()


async def test_an_identical_deterministic_request_is_served_from_the_cache_for_free(rig: Rig) -> None:
    """temperature 0: the second call sends nothing, costs 0 and reports what it saved."""
    first = await rig.router.execute(rig.ask(model=MODEL, temperature=0))
    second = await rig.router.execute(rig.ask(model=MODEL, temperature=0))
    assert rig.received() == 1
    assert second.cached and second.cost == 0 and second.saved == first.cost and second.content == first.content
    metrics = await rig.router.metrics("today")
    assert metrics.cache_hits == 1 and metrics.cache_savings == first.cost


async def test_a_requests_cache_key_is_pinned_so_a_shared_cache_outlives_upgrades(rig: Rig) -> None:
    """Every field but stream, cache and timeout_s is keyed, and max_cost only when set; the digest was
    computed from `model_dump` by the build that keyed that way, and instances sharing a Redis cache
    rely on it."""
    request = RouteRequest(
        messages=[
            {"role": "system", "content": "Be brief. \u00e9"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ],
        models=[MODEL], quality="high", speed="fast", capabilities=["tools", "json_mode"], provider=["openai"],
        tier="balanced", max_cost_per_1k=Decimal("0.50"), max_tokens=300,
        temperature=0.0, top_p=1.0, stop=["\n\n"], seed=7,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
        tool_choice="auto", response_format={"type": "json_object"}, reasoning={"effort": "low"},
        stream=True, cache="on", timeout_s=30,
    )  # fmt: skip
    key = canonical_key(cache_payload(request, rig.router.settings.default_max_tokens))
    assert key == "398496d2d04d7d83e3c68e5a4174d276b9221d2bf3e8a625225e9e70a840e1f1"
    unkeyed = request.model_copy(update={"stream": False, "cache": None, "timeout_s": None})
    assert canonical_key(cache_payload(unkeyed, rig.router.settings.default_max_tokens)) == key
    capped = [request.model_copy(update={"max_cost": Decimal(cap)}) for cap in ("0.1", "0.10", "0.2")]
    keys = [canonical_key(cache_payload(each, rig.router.settings.default_max_tokens)) for each in capped]
    assert keys[0] == keys[1] != keys[2] and key not in keys


async def test_a_capped_request_does_not_decide_the_model_of_uncapped_identical_ones(rig: Rig) -> None:
    """`max_cost` can exclude the model selection would pick without it: its answer is not theirs."""
    ask = {"model": "auto", "quality": "high", "temperature": 0}
    capped = rig.ask("explain entropy", max_cost=Decimal("0.0005"), **ask)
    free = rig.ask("explain entropy", **ask)
    top_capped = (await rig.router.plan(capped)).candidates[0].model
    top_free = (await rig.router.plan(free)).candidates[0].model
    assert top_capped != top_free
    assert (await rig.router.execute(capped)).resolved_model == top_capped
    second = await rig.router.execute(free)
    assert (second.resolved_model, second.cached) == (top_free, False)


async def test_a_request_the_cache_cannot_key_is_answered_without_it(rig: Rig) -> None:
    """A library caller's integer dict key (JSON writes it as text, so `1` and `"1"` would collide)."""
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi", "meta": {1: "x"}}]}]
    for _ in range(2):
        result = await rig.router.execute(RouteRequest(messages=messages, model=MODEL, temperature=0))
        assert result.content and not result.cached


async def test_a_sampled_request_is_never_cached_under_auto(rig: Rig) -> None:
    """Without temperature 0 or a seed, every call goes upstream."""
    for _ in range(2):
        await rig.router.execute(rig.ask(model=MODEL))
    assert rig.received() == 2


async def test_cache_on_caches_sampled_requests_and_off_caches_nothing(rig: Rig) -> None:
    """cache='on' caches anything; cache='off' never."""
    for _ in range(2):
        await rig.router.execute(rig.ask("a", model=MODEL, cache="on"))
    for _ in range(2):
        await rig.router.execute(rig.ask("b", model=MODEL, temperature=0, cache="off"))
    assert rig.received() == 3


async def test_50_identical_concurrent_requests_make_one_upstream_call(rig: Rig) -> None:
    """Single-flight: one request reaches the sandbox; 49 share its answer as free hits."""
    rig.sandbox.state.faults.add(model=MODEL, kind="latency", latency_ms=200, count=None)
    results = []

    async def one() -> None:
        results.append(await rig.router.execute(rig.ask("same", model=MODEL, seed=7)))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(one)
    assert rig.received() == 1
    assert sum(1 for r in results if r.cached) == 49 and len({r.content for r in results}) == 1
    print(f"single-flight test: 50 identical concurrent requests, {rig.received()} upstream call")


async def test_cache_entries_expire_after_their_ttl(rig_factory: RigFactory) -> None:
    """With a zero TTL nothing is reused."""
    rig: Rig = await rig_factory(cache=CacheSettings(ttl_s=0))
    for _ in range(2):
        await rig.router.execute(rig.ask(model=MODEL, temperature=0))
    assert rig.received() == 2


async def test_metrics_count_requests_failures_tokens_and_spend(rig: Rig) -> None:
    """get_metrics figures come from the ledger."""
    await rig.router.execute(rig.ask(model=MODEL))
    rig.sandbox.state.faults.add(model="*", kind="bad_gateway", count=None)
    with pytest.raises(errors.AllCandidatesFailedError):
        await rig.router.execute(rig.ask(model=MODEL))
    metrics = await rig.router.metrics("all")
    assert (metrics.total_requests, metrics.successes, metrics.failures) == (2, 1, 1)
    assert metrics.total_cost == rig.billed() and metrics.tokens.total > 0
    assert metrics.by_model[0].model.startswith("openai/gpt-4o-mini")


async def test_a_cancelled_request_releases_its_reservation(rig_factory: RigFactory) -> None:
    """Cancelling execute mid-flight frees the money it held and records no spend."""
    rig: Rig = await rig_factory(budget=BudgetSettings(daily=Decimal("1")))
    rig.sandbox.state.faults.add(model=MODEL, kind="latency", latency_ms=2000, count=None)
    with anyio.move_on_after(0.3):
        await rig.router.execute(rig.ask(model=MODEL))
    totals = await rig.router.budgets.totals()
    assert totals.reserved == 0 and totals.spent_today == 0


async def test_a_request_waiting_for_an_identical_one_gives_up_at_its_own_timeout(rig: Rig) -> None:
    """`timeout_s` is not in the cache key: a request that waits for an identical one still gets its
    answer, or its timeout, within its own `timeout_s`, and the ledger records it."""
    rig.sandbox.state.faults.add(model=MODEL, kind="latency", latency_ms=2000, count=None)
    outcomes: dict[str, object] = {}

    async def first() -> None:
        outcomes["first"] = (await rig.router.execute(rig.ask("same", model=MODEL, temperature=0))).content

    async def impatient() -> None:
        await anyio.sleep(0.2)
        began = anyio.current_time()
        with pytest.raises(errors.UpstreamTimeoutError, match=r"timeout_s=0\.5"):
            await rig.router.execute(rig.ask("same", model=MODEL, temperature=0, timeout_s=0.5))
        outcomes["impatient"] = anyio.current_time() - began

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(first)
            group.start_soon(impatient)
    assert isinstance(outcomes["first"], str)
    assert isinstance(outcomes["impatient"], float) and outcomes["impatient"] < 1.5
    rows = await rig.store.rows()
    assert sorted((row.status, row.detail.get("coalesced", False)) for row in rows) == [("error", True), ("ok", False)]


async def test_identical_requests_to_a_failing_model_fail_together_on_one_upstream_call(
    rig_factory: RigFactory,
) -> None:
    """They used to wait for each other: each became the next to try, so the last failed after N tries."""
    rig: Rig = await rig_factory(max_retries=0, max_attempts=1)
    rig.sandbox.state.faults.add(model=MODEL, kind="latency", latency_ms=500, count=None)
    rig.sandbox.state.faults.add(model=MODEL, kind="server_error", count=None)
    failures: list[type[Exception]] = []

    async def one() -> None:
        with pytest.raises(errors.ModelyardError) as caught:
            await rig.router.execute(rig.ask("same", model=MODEL, temperature=0))
        failures.append(type(caught.value))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(one)
    assert rig.received() == 1
    assert len(set(failures)) == 1 and len(failures) == 5
    rows = await rig.store.rows()
    assert [row.status for row in rows] == ["error"] * 5


async def test_max_tokens_asked_for_is_not_answered_from_a_default_capped_to_a_smaller_model(
    rig_factory: RigFactory,
) -> None:
    """The default (here 20,000) is capped to each model's limit; asked for, 20,000 excludes smaller models."""
    rig: Rig = await rig_factory(default_max_tokens=20000)
    ask = {"model": "auto", "provider": ["qwen"], "quality": "low", "temperature": 0}
    by_default, asked = rig.ask("explain entropy", **ask), rig.ask("explain entropy", max_tokens=20000, **ask)
    top_by_default = (await rig.router.plan(by_default)).candidates[0].model
    allowed = {c.model for c in (await rig.router.plan(asked)).candidates}
    assert top_by_default not in allowed
    await rig.router.execute(by_default)
    answer = await rig.router.execute(asked)
    assert answer.resolved_model in allowed and not answer.cached
