"""Answers abandoned after they began keep their hold until OpenRouter's record says what they cost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from modelyard import errors
from modelyard.openrouter import OpenRouterClient
from modelyard.routing.budget import BudgetManager
from modelyard.routing.reconcile import LAST_PASS_S, MAX_INTERVAL_S, Abandoned, Reconciler
from modelyard.routing.router import Router
from modelyard.sandbox.state import SandboxState
from modelyard.store import MEMORY, SQLiteStore
from modelyard.store.base import BudgetLimits
from modelyard.store.spool import Spool
from tests.routing.conftest import Rig, RigFactory
from tests.store._flaky import FlakyStore

pytestmark = pytest.mark.anyio

CHEAP = "meta-llama/llama-3.1-8b-instruct"
BACKUP = "openai/gpt-4o-mini"


@asynccontextmanager
async def _reconciling(router: Router) -> AsyncIterator[None]:
    async with anyio.create_task_group() as group:
        await group.start(router.reconciler.run)
        yield
        group.cancel_scope.cancel()


async def _until_reconciled(router: Router) -> None:
    for _ in range(400):  # 10 s
        if not router.reconciler.pending:
            return
        await anyio.sleep(0.025)
    raise AssertionError(f"still pending: {[a.generation_id for a in router.reconciler.pending]}")


def _ledger_total(rows: list[Any]) -> Decimal:
    return sum((r.cost for r in rows if r.cost is not None), Decimal(0))


async def test_an_answer_abandoned_at_the_read_timeout_is_billed_and_the_ledger_records_its_cost(
    rig_factory: RigFactory,
) -> None:
    """Bug 0's signature: the sandbox finishes and bills an answer the router stopped waiting for. The
    router retries with a hold of its own, and the abandoned answer's cost reaches the ledger later."""
    rig: Rig = await rig_factory(request_timeout_s=0.3)
    rig.sandbox.state.faults.add(model=CHEAP, kind="latency", count=1, latency_ms=700)
    with anyio.fail_after(20):
        async with _reconciling(rig.router):
            result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
            assert [a.error_kind for a in result.attempts] == ["timeout", None]
            assert len(rig.router.reconciler.pending) == 1
            assert (await rig.store.totals(now=rig.router.clock.now())).reserved > 0  # still held
            await _until_reconciled(rig.router)
    rows = await rig.store.rows()
    abandoned = [r for r in rows if r.detail.get("abandoned")]
    assert len(abandoned) == 1 and abandoned[0].detail["billed_attempt"] is True
    assert abandoned[0].cost is not None and abandoned[0].cost > 0 and abandoned[0].cost_source == "upstream"
    assert abandoned[0].model == CHEAP and abandoned[0].status == "error" and abandoned[0].prompt_tokens > 0
    assert rig.billed() == _ledger_total(rows)  # the ledger matches the bill to the last digit
    assert len(rig.sandbox.state.ledger) == 2  # the abandoned answer and the retry's
    assert (await rig.store.totals(now=rig.router.clock.now())).reserved == 0


async def test_a_stream_the_router_abandoned_is_recorded_from_its_record_as_billed_nothing(
    rig_factory: RigFactory,
) -> None:
    """The sandbox stops a stream whose client left and bills nothing; its record says so, and the row
    records that known 0 (not an unknown cost), so the hold is freed as soon as the record is read."""
    rig: Rig = await rig_factory(request_timeout_s=0.3)
    rig.sandbox.state.faults.add(model=CHEAP, kind="latency", count=1, latency_ms=700)
    with anyio.fail_after(20):
        async with _reconciling(rig.router):
            result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP], stream=True))
            assert result.content and len(rig.router.reconciler.pending) == 1
            await _until_reconciled(rig.router)
    rows = await rig.store.rows()
    abandoned = [r for r in rows if r.detail.get("abandoned")]
    assert len(abandoned) == 1 and abandoned[0].cost == 0 and abandoned[0].detail["billed_attempt"] is False
    assert abandoned[0].streamed and "billed nothing" in (abandoned[0].error or "")
    assert rig.billed() == _ledger_total(rows)
    assert (await rig.store.totals(now=rig.router.clock.now())).reserved == 0


async def test_an_answer_openrouter_keeps_no_record_of_gets_an_unknown_cost_when_its_hold_expires(
    rig_factory: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No record ever appears (the upstream here keeps none): at the hold's expiry the row says the cost
    is unknown (None, never 0) and the hold is freed."""
    monkeypatch.setattr(SandboxState, "store_generation", lambda self, generation_id, record: None)
    rig: Rig = await rig_factory(request_timeout_s=0.3, max_attempts=2, reservation_margin_s=0.6)
    rig.sandbox.state.faults.add(model=CHEAP, kind="latency", count=1, latency_ms=500)
    with anyio.fail_after(20):
        async with _reconciling(rig.router):
            result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
            assert result.content and len(rig.router.reconciler.pending) == 1
            await _until_reconciled(rig.router)
    abandoned = [r for r in await rig.store.rows() if r.detail.get("abandoned")]
    assert len(abandoned) == 1 and abandoned[0].cost is None and abandoned[0].detail["billed_attempt"] == "unknown"
    assert "unknown" in (abandoned[0].error or "")
    assert (await rig.store.totals(now=rig.router.clock.now())).reserved == 0


async def test_without_a_running_reconciler_the_hold_of_an_abandoned_answer_is_freed_at_once(
    rig_factory: RigFactory,
) -> None:
    """A library user who does not run the reconciler gets the old behaviour: no hold left, no extra row."""
    rig: Rig = await rig_factory(request_timeout_s=0.3)
    rig.sandbox.state.faults.add(model=CHEAP, kind="latency", count=1, latency_ms=500)
    with anyio.fail_after(20):
        result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
    assert result.content and not rig.router.reconciler.pending
    assert (await rig.store.totals(now=rig.router.clock.now())).reserved == 0
    assert not [r for r in await rig.store.rows() if r.detail.get("abandoned")]


async def test_a_server_stopping_right_after_an_answer_was_abandoned_still_records_its_billed_cost(
    rig_factory: RigFactory,
) -> None:
    """The reconciler is stopped (the server shutting down) before the answer's first check was due: its
    last pass looks the answer up all the same, and the ledger matches the bill."""
    rig: Rig = await rig_factory(request_timeout_s=0.3)
    rig.sandbox.state.faults.add(model=CHEAP, kind="latency", count=1, latency_ms=500)
    with anyio.fail_after(20):
        async with _reconciling(rig.router):
            result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
            assert result.content and len(rig.router.reconciler.pending) == 1
    assert not rig.router.reconciler.pending
    rows = await rig.store.rows()
    abandoned = [r for r in rows if r.detail.get("abandoned")]
    assert len(abandoned) == 1 and abandoned[0].cost is not None and abandoned[0].cost > 0
    assert rig.billed() == _ledger_total(rows)
    assert (await rig.store.totals(now=rig.router.clock.now())).reserved == 0


async def test_a_server_stopping_before_openrouter_has_a_record_writes_an_unknown_cost_and_keeps_the_hold(
    rig_factory: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No record by the end of the last pass: the row says the cost is unknown (None, with the generation
    id to look it up), and the hold stays until it expires, since the answer may still be billed."""
    monkeypatch.setattr(SandboxState, "store_generation", lambda self, generation_id, record: None)
    rig: Rig = await rig_factory(request_timeout_s=0.3)
    rig.sandbox.state.faults.add(model=CHEAP, kind="latency", count=1, latency_ms=500)
    with anyio.fail_after(20):
        async with _reconciling(rig.router):
            result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
            [pending] = rig.router.reconciler.pending
            assert result.content
    [abandoned] = [r for r in await rig.store.rows() if r.detail.get("abandoned")]
    assert abandoned.cost is None and abandoned.detail["billed_attempt"] == "unknown"
    assert "server stopped" in (abandoned.error or "") and pending.generation_id in (abandoned.error or "")
    assert (await rig.store.totals(now=rig.router.clock.now())).reserved > 0  # until the hold expires


async def test_an_error_the_upstream_reports_inside_a_200_is_not_held_for_reconciling(rig: Rig) -> None:
    """Only attempts that broke or timed out after their answer began may be billed unseen."""
    rig.sandbox.state.faults.add(model=CHEAP, kind="error_in_200", count=1)
    with anyio.fail_after(20):
        async with _reconciling(rig.router):
            result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP]))
            assert result.content and not rig.router.reconciler.pending


async def test_an_answer_the_caller_stopped_waiting_for_after_it_began_keeps_its_hold_and_gets_its_cost(
    rig_factory: RigFactory,
) -> None:
    """The caller's own cancellation (an MCP host cancelling the call) after the headers arrived."""
    rig: Rig = await rig_factory()
    rig.sandbox.state.faults.add(model=CHEAP, kind="latency", count=1, latency_ms=1500)
    with anyio.fail_after(20):
        async with _reconciling(rig.router):
            async with anyio.create_task_group() as caller:
                caller.start_soon(rig.router.execute, rig.ask(model=CHEAP))
                for _ in range(200):  # until the sandbox has the request, then a moment for its headers
                    if rig.sandbox.state.ledger:
                        break
                    await anyio.sleep(0.01)
                await anyio.sleep(0.2)
                caller.cancel_scope.cancel()
            assert len(rig.router.reconciler.pending) == 1, "the cancelled attempt's hold was not kept"
            await _until_reconciled(rig.router)
    rows = await rig.store.rows()
    assert [r.detail["billed_attempt"] for r in rows if r.detail.get("abandoned")] == [True]
    assert rig.billed() == _ledger_total(rows) > 0


async def test_a_retry_after_an_abandoned_answer_needs_a_hold_of_its_own(rig_factory: RigFactory) -> None:
    """The abandoned answer keeps its hold, so a daily limit with room for one worst case refuses the retry."""
    probe: Rig = await rig_factory()
    worst = (await probe.router.plan(probe.ask(model=CHEAP))).estimated_cost
    assert worst is not None
    rig: Rig = await rig_factory(request_timeout_s=0.3, budget={"daily": str(worst * Decimal("1.5"))})
    rig.sandbox.state.faults.add(model=CHEAP, kind="latency", count=1, latency_ms=500)
    with anyio.fail_after(20):
        async with _reconciling(rig.router):
            with pytest.raises(errors.AllCandidatesFailedError, match="daily"):
                await rig.router.execute(rig.ask(model=CHEAP))
            assert len(rig.sandbox.state.ledger) == 1  # the retry was never sent
            await _until_reconciled(rig.router)
    assert rig.billed() == _ledger_total(await rig.store.rows()) > 0


@pytest.fixture
async def rig(rig_factory: RigFactory) -> Rig:
    made: Rig = await rig_factory()
    return made


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class _FailingLookups:
    """An upstream whose `/generation` never gives a usable record (here: an odd failure every time)."""

    def __init__(self) -> None:
        self.asked = 0

    async def generation(self, generation_id: str) -> Any:
        self.asked += 1
        raise ValueError("not a generation record")


async def test_a_lookup_that_always_fails_still_ends_in_an_unknown_cost_row_at_the_holds_expiry() -> None:
    """Whatever the lookup does, the answer is not pending forever: at its hold's expiry it is settled."""
    clock, lookups = _Clock(), _FailingLookups()
    async with SQLiteStore(MEMORY) as store:
        budgets = BudgetManager(store, BudgetLimits(daily=Decimal(1)), clock=clock, reservation_ttl_s=60)
        reconciler = Reconciler(cast(OpenRouterClient, lookups), budgets, now=clock)
        async with anyio.create_task_group() as group:
            await group.start(reconciler.run)
            hold = await budgets.reserve(Decimal("0.5"))
            assert reconciler.adopt(Abandoned("gen-1", hold, CHEAP, CHEAP, False, "timeout"))
            for _ in range(20):  # 20 checks over the hold's 60 s
                clock.now += 5
                await reconciler.check_due()
            group.cancel_scope.cancel()
        assert not reconciler.pending and lookups.asked >= 3
        (row,) = await store.rows()
        assert row.cost is None and row.detail["billed_attempt"] == "unknown" and row.ts == 1_800_000_000.0
        assert (await budgets.totals()).reserved == 0


class _SilentLookups:
    """An upstream whose `/generation` never answers."""

    async def generation(self, generation_id: str) -> Any:
        await anyio.sleep_forever()


class _StuckBudgets:
    """A budget whose writes never finish and can be cancelled (the stores' own waits are bounded by their
    busy timeout or write grace instead: not what this tests)."""

    def __init__(self, budgets: BudgetManager) -> None:
        self._budgets = budgets

    async def reserve(self, amount: Decimal) -> Any:
        return await self._budgets.reserve(amount)

    async def settle(self, reservation: Any, row: Any) -> None:
        await anyio.sleep_forever()


@pytest.mark.parametrize("stuck", ["lookups", "lookups and writes"])
async def test_stopping_takes_at_most_the_last_pass_whatever_hangs(
    stuck: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A host kills a server that takes too long to stop: the last pass ends on time even when neither the
    lookups nor the writes ever finish, and names the answers whose rows it could not confirm."""
    clock = _Clock()
    async with SQLiteStore(MEMORY) as store:
        budgets = BudgetManager(store, BudgetLimits(daily=Decimal(1)), clock=clock, reservation_ttl_s=60)
        writes = budgets if stuck == "lookups" else cast(BudgetManager, _StuckBudgets(budgets))
        reconciler = Reconciler(cast(OpenRouterClient, _SilentLookups()), writes, now=clock)
        with anyio.fail_after(10):  # (a hang fails the test rather than stalling the suite)
            async with anyio.create_task_group() as group:
                await group.start(reconciler.run)
                for index in range(3):
                    hold = await writes.reserve(Decimal("0.1"))
                    assert reconciler.adopt(Abandoned(f"gen-{index}", hold, CHEAP, CHEAP, False, "timeout"))
                began = anyio.current_time()
                group.cancel_scope.cancel()
        assert anyio.current_time() - began < LAST_PASS_S + 0.5
        rows = await store.rows()
    if stuck == "lookups":
        assert sorted(r.detail["generation_id"] for r in rows) == ["gen-0", "gen-1", "gen-2"]
        assert all(r.cost is None for r in rows)
    else:
        assert rows == [] and "gen-0, gen-1, gen-2" in caplog.text and "known to be written" in caplog.text


class _FailingWrites(_StuckBudgets):
    """A budget whose store refuses every write (a full disk, say)."""

    def __init__(self, budgets: BudgetManager) -> None:
        super().__init__(budgets)
        self.settles = 0

    async def settle(self, reservation: Any, row: Any) -> None:
        self.settles += 1
        raise errors.ConfigurationError("the store refused the write")


async def test_a_row_that_cannot_be_written_after_the_holds_expiry_is_retried_at_intervals_not_at_once() -> None:
    clock = _Clock()
    async with SQLiteStore(MEMORY) as store:
        writes = _FailingWrites(BudgetManager(store, BudgetLimits(daily=Decimal(1)), clock=clock, reservation_ttl_s=60))
        reconciler = Reconciler(cast(OpenRouterClient, _FailingLookups()), cast(BudgetManager, writes), now=clock)
        async with anyio.create_task_group() as group:
            await group.start(reconciler.run)
            hold = await writes.reserve(Decimal("0.1"))
            assert reconciler.adopt(Abandoned("gen-1", hold, CHEAP, CHEAP, False, "timeout"))
            clock.now += 61  # past the hold's expiry: the row is due, and its write fails
            for _ in range(5):
                await reconciler.check_due()
            assert writes.settles == 1 and [a.generation_id for a in reconciler.pending] == ["gen-1"]
            clock.now += MAX_INTERVAL_S
            await reconciler.check_due()
            assert writes.settles == 2
            group.cancel_scope.cancel()


async def test_an_answer_abandoned_after_outliving_its_holds_first_lifetime_hands_over_a_live_hold(
    rig_factory: RigFactory,
) -> None:
    """Holds live 1 s; a stream renewed for 1.5 s is then abandoned: the reconciler gets the hold with the
    expiry its last renewal gave it (still ahead), and the renewal stops, so the reconciler's rules hold."""
    rig: Rig = await rig_factory(request_timeout_s=1, max_attempts=1, reservation_margin_s=0)
    rig.sandbox.state.config.stream_chunk_delay_ms = 100  # the whole answer would take seconds
    with anyio.fail_after(20):
        async with _reconciling(rig.router), anyio.create_task_group() as renewing:
            await renewing.start(rig.router.budgets.renewal.run)
            stream = rig.router.stream(rig.ask("Tell me a long story", model=BACKUP))
            await anext(stream)
            await anyio.sleep(1.5)
            await stream.aclose()
            [answer] = rig.router.reconciler.pending
            assert answer.reservation.expires_at > answer.at
            assert rig.router.budgets.renewal.tracked == 0
            assert (await rig.router.budgets.totals()).reserved > 0
            await _until_reconciled(rig.router)
            renewing.cancel_scope.cancel()
    assert (await rig.router.budgets.totals()).reserved == 0


async def test_an_abandoned_answers_row_the_store_cannot_take_is_spooled_and_replayed(tmp_path: Path) -> None:
    """The reconciler's rows go through `settle` too: a store locked when the row is due does not lose it, and
    the reconciler is done with the answer (no retry of its own)."""
    clock, lookups = _Clock(), _FailingLookups()
    async with SQLiteStore(MEMORY) as inner:
        store = FlakyStore(inner)
        spool = Spool(tmp_path / "ledger.db.pending.jsonl")
        budgets = BudgetManager(store, BudgetLimits(daily=Decimal(1)), clock=clock, reservation_ttl_s=60, spool=spool)
        reconciler = Reconciler(cast(OpenRouterClient, lookups), budgets, now=clock)
        async with anyio.create_task_group() as group:
            await group.start(reconciler.run)
            hold = await budgets.reserve(Decimal("0.5"))
            assert reconciler.adopt(Abandoned("gen-1", hold, CHEAP, CHEAP, False, "timeout"))
            store.failures = 1
            clock.now += 61  # the hold has expired: the row (an unknown cost) is due, and its commit fails
            await reconciler.check_due()
            group.cancel_scope.cancel()
        assert not reconciler.pending and await inner.rows() == [] and await budgets.spooled_rows() == 1
        assert await budgets.replay_spooled() == 1
        (row,) = await inner.rows()
        assert row.detail["generation_id"] == "gen-1" and row.cost is None


async def test_without_a_running_reconciler_a_failed_request_that_may_have_been_billed_has_an_unknown_cost(
    rig_factory: RigFactory,
) -> None:
    """No reconciler (the CLI's `run`, a library caller): an answer abandoned after it began gets no row of its
    own, so the failed request's row is the only place its bill can be: unknown (null), never a $0 that the
    sandbox's bill contradicts. A failure whose attempts surely cost nothing still costs 0."""
    rig: Rig = await rig_factory(request_timeout_s=0.3, max_retries=0)
    rig.sandbox.state.faults.add(model=CHEAP, kind="latency", count=1, latency_ms=700)
    with anyio.fail_after(20), pytest.raises(errors.AllCandidatesFailedError) as caught:
        await rig.router.execute(rig.ask(model=CHEAP, cache="off"))
    await anyio.sleep(0.6)  # the sandbox finishes the answer and bills it
    assert rig.billed() > 0 and caught.value.billed is None
    (row,) = await rig.store.rows()
    assert row.status == "error" and row.cost is None
    rig.sandbox.state.faults.add(model=CHEAP, kind="server_error", count=1)
    with pytest.raises(errors.AllCandidatesFailedError):
        await rig.router.execute(rig.ask(model=CHEAP, cache="off"))
    assert (await rig.store.rows())[-1].cost == 0


async def test_an_abandoned_answers_row_carries_the_labels_of_the_call_that_abandoned_it(
    rig_factory: RigFactory,
) -> None:
    """The reconciler writes the row in its own task, long after the call: the host and purpose the call was
    labelled with (a judge's, say) are still on it, so the judge's spend is not counted as an answer's."""
    from modelyard.routing.labels import labelled

    rig: Rig = await rig_factory(request_timeout_s=0.3)
    rig.sandbox.state.faults.add(model=CHEAP, kind="latency", count=1, latency_ms=700)
    with anyio.fail_after(20):
        async with _reconciling(rig.router):
            with labelled(client="host 1.0", purpose="judge"):
                await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP], cache="off"))
            await _until_reconciled(rig.router)
    rows = await rig.store.rows()
    (abandoned,) = [r for r in rows if r.detail.get("abandoned")]
    assert (abandoned.detail.get("client"), abandoned.detail.get("purpose")) == ("host 1.0", "judge")
    assert all(r.detail.get("purpose") == "judge" for r in rows)
