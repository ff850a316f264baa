"""The attempts on one candidate of a plan: same-model retries, all under the one budget hold reserved for it.

`FallbackLoop` walks the chain of candidates and decides when it stops; this is the level below it. It is
kept apart because it is where an attempt's money is settled: the answer's cost, the cost of an answer the
requested schema rejected, and the hold of a candidate left without an answer (freed, taken again for a
retry, or handed to the reconciler when the answer had begun and may be billed). It also bounds each
upstream call by the request's `timeout_s`. What came of the attempts is left in the `CandidateOutcome` the
loop hands in.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from decimal import Decimal

import anyio

from modelyard.errors import (
    BudgetExceededError,
    IncompleteStreamError,
    MalformedResponseError,
    SchemaValidationError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeoutError,
)
from modelyard.openrouter.client import GenerationHook, OpenRouterClient
from modelyard.openrouter.schemas import ChatResponse
from modelyard.routing.attempt import Restart, StreamEvent, TextDelta, check_json, stream_model
from modelyard.routing.attempt import wire_request as _wire_request
from modelyard.routing.budget import BudgetManager
from modelyard.routing.catalog import Catalog
from modelyard.routing.circuit import CircuitBreakers
from modelyard.routing.ledger import attempt_record, rejected_row, success_row
from modelyard.routing.no_answer import timed_out
from modelyard.routing.price_cap import PriceCap
from modelyard.routing.progress import AttemptPace, CandidateOutcome, RequestSpend
from modelyard.routing.reconcile import Abandoned, Reconciler
from modelyard.routing.request import RouteRequest
from modelyard.routing.result import AttemptRecord, RouteResult
from modelyard.routing.retry import RetryPolicy, is_final
from modelyard.routing.selection import Candidate, Plan
from modelyard.routing.shared import SharedBreakers
from modelyard.routing.speed import SpeedBook
from modelyard.store.base import Reservation

__all__ = ["CandidateAttempts"]

# How an attempt can end after its answer began without the upstream reporting an error: the answer may
# have been finished and billed all the same.
_MAY_BE_BILLED = (UpstreamTimeoutError, UpstreamConnectError, IncompleteStreamError, MalformedResponseError)


class CandidateAttempts:
    """Tries one candidate at a time (`run`) for the `FallbackLoop` that owns it.

    Args:
        client: the OpenRouter client.
        budgets: settles the answer (or releases the hold), and reserves again for a retry.
        breakers: told of every success and health failure.
        retry: when and how long to wait before trying the same model again.
        speed: learns each answering model's latency.
        monotonic, now, sleep: the time seams (`RouterClock`'s).
        reconciler: takes the hold of an attempt abandoned after its answer began (it may be billed).
    """

    def __init__(
        self,
        client: OpenRouterClient,
        budgets: BudgetManager,
        breakers: CircuitBreakers | SharedBreakers,
        retry: RetryPolicy,
        speed: SpeedBook,
        *,
        monotonic: Callable[[], float],
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        reconciler: Reconciler | None = None,
    ) -> None:
        self.client, self.budgets, self.breakers, self.retry, self.speed = client, budgets, breakers, retry, speed
        self._monotonic, self._now, self._sleep = monotonic, now, sleep
        self.reconciler = reconciler

    async def run(
        self,
        request: RouteRequest,
        plan: Plan,
        catalog: Catalog,
        candidate: Candidate,
        reservation: Reservation,
        streamed: bool,
        attempts: list[AttemptRecord],
        budget_left: int,
        started: float,
        outcome: CandidateOutcome,
    ) -> AsyncGenerator[StreamEvent]:
        """Attempts on one candidate, with same-model retries, holding its reservation throughout.

        Yields the attempts' stream events; what came of them is left in `outcome`.
        """
        retries = 0
        settled = False  # the hold became the answer's cost
        hold: Reservation | None = reservation  # None: handed to the reconciler, with an abandoned attempt
        begun: list[str] = []  # the current attempt's generation id, once its answer began
        try:
            while outcome.used < budget_left:
                if hold is None:  # the attempt before kept its hold: this one needs its own
                    hold = await self._hold_again(candidate, outcome.spent)
                outcome.used += 1
                began = self._monotonic()
                pace = AttemptPace(began)
                billed: Decimal | None = None
                begun.clear()
                try:
                    if streamed:
                        response = None
                        attempt = self._streamed_call(request, candidate, started, begun.append, outcome.cap)
                        async with aclosing(attempt) as items:
                            async for item in items:
                                if isinstance(item, TextDelta):
                                    paused = pace.text_at(self._monotonic())
                                    yield item
                                    pace.resumed(paused, self._monotonic())
                                else:
                                    response = item
                        assert response is not None  # stream_model always ends with the answer
                    else:
                        response = await self._call(request, candidate, started, begun.append, outcome.cap)
                    message = response.choices[0].message
                    try:
                        check_json(
                            message.content, None if message.tool_calls else request.response_format, candidate.id
                        )
                    except SchemaValidationError as rejected:
                        # The upstream billed this answer all the same: the ledger and the budget count it now,
                        # in place of the hold (never retried: no later attempt on this candidate needs it).
                        settled = True
                        billed = await self._settle_rejected(
                            request, plan, catalog, candidate, hold, response, rejected
                        )
                        outcome.spent.add(hold.amount if billed is None else billed)
                        outcome.spent.bill(billed)
                        raise
                except (UpstreamError, SchemaValidationError) as exc:
                    exc = outcome.cap.explained(exc) if outcome.cap is not None else exc
                    attempts.append(attempt_record(candidate.id, exc, (self._monotonic() - began) * 1000))
                    attempts[-1].cost = billed
                    self._count_failure(candidate.id, exc)
                    if begun and isinstance(exc, _MAY_BE_BILLED):
                        outcome.spent.bill(None)  # it may be billed, at a cost not known yet
                        if self._hand_over(request, candidate, hold, begun, streamed, exc):
                            outcome.spent.add(hold.amount)  # it may be billed up to its worst case
                            hold = None
                        else:  # no row of its own will say what it was billed
                            outcome.spent.unrecorded = True
                    begun.clear()
                    if is_final(exc):
                        outcome.final = exc
                        return
                    if streamed:
                        # Whatever streamed so far is void: the next attempt (same model or not) starts over.
                        yield Restart(candidate.id, str(exc))
                    delay = self.retry.delay_s(exc, retries)
                    retry = self.retry.should_retry(exc, retries) and outcome.used < budget_left
                    if retry and self.time_left(request, started) > delay:
                        await self._sleep(delay)
                        retries += 1
                        continue
                    outcome.failures.append((candidate.id, exc))
                    return
                settled = True
                outcome.result = await self._succeed(
                    request, plan, catalog, candidate, hold, response, attempts, pace, started, outcome.spent
                )
                return
        except BudgetExceededError as refusal:  # no hold for a retry after an attempt kept its own
            attempts.append(AttemptRecord(model=candidate.id, outcome="skipped", error=str(refusal)))
            outcome.failures.append((candidate.id, refusal))
        finally:
            if not settled and hold is not None:
                handed = await self._let_go(request, candidate, hold, begun, streamed)
                if begun and not handed:  # left after its answer began (it may be billed), and no reconciler took it
                    outcome.spent.unrecorded = True

    def time_left(self, request: RouteRequest, started: float) -> float:
        """Seconds left of the request's `timeout_s` (unbounded when it gives none)."""
        if request.timeout_s is None:
            return float("inf")
        return request.timeout_s - (self._monotonic() - started)

    async def _call(
        self,
        request: RouteRequest,
        candidate: Candidate,
        started: float,
        on_generation: GenerationHook,
        cap: PriceCap | None,
    ) -> ChatResponse:
        body = _wire_request(
            request, candidate.entry, candidate.max_tokens, max_price=None if cap is None else cap.wire
        )
        if request.timeout_s is None:  # no deadline: no cancel scope to enter and leave on every attempt
            return await self.client.chat(body, on_generation=on_generation)
        with anyio.move_on_after(max(0.0, self.time_left(request, started))):
            return await self.client.chat(body, on_generation=on_generation)
        raise timed_out(request, candidate)

    async def _streamed_call(
        self,
        request: RouteRequest,
        candidate: Candidate,
        started: float,
        on_generation: GenerationHook,
        cap: PriceCap | None,
    ) -> AsyncGenerator[TextDelta | ChatResponse]:
        """The streamed attempt. `timeout_s` bounds each wait for the upstream, never a `yield`, and is
        checked again before each piece of text is handed on, so the time its consumer takes counts too."""
        body = _wire_request(
            request, candidate.entry, candidate.max_tokens, max_price=None if cap is None else cap.wire
        )
        items = stream_model(self.client, body, on_generation)
        async with aclosing(items):
            if request.timeout_s is None:
                async for item in items:
                    yield item
                return
            while True:
                try:
                    with anyio.move_on_after(max(0.0, self.time_left(request, started))) as deadline:
                        item = await anext(items)
                except StopAsyncIteration:
                    return
                if deadline.cancelled_caught:
                    raise timed_out(request, candidate)
                if isinstance(item, TextDelta) and self.time_left(request, started) <= 0:
                    # The consumer took the time, not the model: this must not count against its breaker.
                    late = timed_out(request, candidate)
                    late.retryable = False
                    raise late  # (a finished answer is kept: it has been billed)
                yield item

    async def _succeed(
        self,
        request: RouteRequest,
        plan: Plan,
        catalog: Catalog,
        candidate: Candidate,
        reservation: Reservation,
        response: ChatResponse,
        attempts: list[AttemptRecord],
        pace: AttemptPace,
        started: float,
        spent: RequestSpend,
    ) -> RouteResult:
        now_mono = self._monotonic()
        latency_ms = (now_mono - pace.began) * 1000
        self.breakers.record_success(candidate.id)
        row, result = success_row(
            request,
            plan,
            catalog,
            candidate,
            response,
            attempts,
            latency_ms=latency_ms,
            total_ms=(now_mono - started) * 1000,
            now=self._now(),
            billed_before=spent.billed,
        )
        completion = response.usage.completion_tokens if response.usage else 0
        first_ms, generating_ms = pace.upstream_ms(now_mono)
        self.speed.observe(candidate.id, latency_ms=first_ms, completion_tokens=completion, duration_ms=generating_ms)
        await self.budgets.settle(reservation, row)  # a store finishes a commit whatever its caller does
        return result

    async def _hold_again(self, candidate: Candidate, spent: RequestSpend) -> Reservation:
        """A hold for a retry on `candidate`: the abandoned attempt before it kept its own.

        Raises:
            BudgetExceededError: the retry's worst case no longer fits (the limits, or what is left
                of the request's cap).
        """
        return await self.budgets.reserve(candidate.worst_case or Decimal(0), cost_cap=spent.cap_left())

    async def _let_go(
        self, request: RouteRequest, candidate: Candidate, hold: Reservation, begun: list[str], streamed: bool
    ) -> bool:
        """The hold of a candidate left without an answer: to the reconciler if the last attempt was cancelled
        after its answer began (the caller left, or closed the stream: it may be billed; True), else freed."""
        if begun and self._hand_over(request, candidate, hold, begun, streamed, None):
            return True
        # Every other way out frees the hold: a failure, the caller cancelled (during a call or a retry's
        # back-off), or the consumer closed the stream at a yield. Shielded, as it may be cancelled.
        with anyio.CancelScope(shield=True):
            await self.budgets.release(hold)
        return False

    def _hand_over(
        self,
        request: RouteRequest,
        candidate: Candidate,
        hold: Reservation,
        begun: list[str],
        streamed: bool,
        error: BaseException | None,
    ) -> bool:
        """Give the hold of an attempt abandoned after its answer (generation `begun[0]`) began to the
        reconciler; False if none runs."""
        if self.reconciler is None or not self.reconciler.running:
            return False
        reason = str(error) if error is not None else "cancelled"
        # No longer renewed: the reconciler holds it until its cost is known or it expires.
        answer = Abandoned(begun[0], self.budgets.let_expire(hold), request.model, candidate.id, streamed, reason)
        return self.reconciler.adopt(answer)

    def _count_failure(self, model: str, error: BaseException) -> None:
        """Only failures that say something about the model's health trip its breaker."""
        if isinstance(error, UpstreamError) and error.retryable:
            self.breakers.record_failure(model)

    async def _settle_rejected(
        self,
        request: RouteRequest,
        plan: Plan,
        catalog: Catalog,
        candidate: Candidate,
        reservation: Reservation,
        response: ChatResponse,
        rejected: SchemaValidationError,
    ) -> Decimal | None:
        """Record the cost of an answer that failed the requested schema, in place of its reservation.

        The answer is not used, but OpenRouter billed it: without this row the ledger would miss the
        money and the budget would stop counting it once the reservation is released. Returns the cost.
        """
        billed = rejected_row(request, plan, catalog, candidate, response, rejected, now=self._now())
        await self.budgets.settle(reservation, billed)
        return billed.cost
