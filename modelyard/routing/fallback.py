"""The fallback loop: a plan's candidates in order, with same-model retries and one budget hold each.

`FallbackLoop.run` is an async generator of the attempts' stream events (`TextDelta`, `Restart`), then
the `RouteResult`. No cancel scope is open across its yields (`timeout_s` bounds each wait for the
upstream instead), so a caller can iterate it in its own task: `Router.stream` hands its events
straight to its consumer, with no task in between. The attempts on one candidate (same-model retries,
its budget hold, each call's deadline) are `CandidateAttempts`'s, in `modelyard.routing.candidate_attempts`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from decimal import Decimal
from typing import Literal

import anyio

from modelyard.errors import BudgetExceededError, InvalidRequestError, ModelyardError
from modelyard.routing.budget import BudgetManager
from modelyard.routing.candidate_attempts import CandidateAttempts
from modelyard.routing.catalog import Catalog
from modelyard.routing.circuit import CircuitBreakers
from modelyard.routing.events import StreamEvent
from modelyard.routing.ledger import failure_row
from modelyard.routing.no_answer import no_answer, timed_out
from modelyard.routing.price_cap import limits_in_force, price_cap
from modelyard.routing.progress import CandidateOutcome, RequestProgress, RequestSpend
from modelyard.routing.request import RouteRequest
from modelyard.routing.result import AttemptRecord, RouteResult
from modelyard.routing.selection import Plan
from modelyard.routing.shared import SharedBreakers

__all__ = ["FallbackLoop", "tightest"]


class FallbackLoop:
    """Tries a plan's candidates in order until one answers, within `max_attempts` upstream calls.

    Args:
        candidate_attempts: tries one candidate (same-model retries, its hold, each call's deadline).
        budgets: reserves each candidate's worst case (freed again if its breaker is open), and records a
            failed or cancelled request.
        breakers: skip models that keep failing.
        max_attempts: upstream calls allowed per request, across all candidates.
        now: the wall clock (`RouterClock`'s), for the ledger rows.
    """

    def __init__(
        self,
        candidate_attempts: CandidateAttempts,
        budgets: BudgetManager,
        breakers: CircuitBreakers | SharedBreakers,
        *,
        max_attempts: int,
        now: Callable[[], float],
    ) -> None:
        self.budgets, self.breakers, self.max_attempts = budgets, breakers, max_attempts
        self._candidates, self._now = candidate_attempts, now

    async def run(
        self, request: RouteRequest, plan: Plan, catalog: Catalog, streamed: bool, started: float
    ) -> AsyncGenerator[StreamEvent | RouteResult]:
        """The attempts, candidate after candidate: their stream events, then the result (last).

        Every request gets its ledger row: the answer's, the failure's, or, when the caller cancels it
        or stops reading first, one with status `cancelled` (an answer it abandoned gets its own row
        from the reconciler).

        Raises:
            AllCandidatesFailedError: no candidate answered (each one's failure is listed, and what stopped
                the chain when `max_attempts` or `timeout_s` did before every candidate was tried).
            UpstreamError: a failure no fallback can fix (`is_final`).
        """
        progress = RequestProgress()
        try:
            attempts = progress.attempts
            failures: list[tuple[str, BaseException]] = []
            refusals: list[tuple[str, BudgetExceededError]] = []
            budget_left = self.max_attempts
            limits = await self.budgets.limits()
            spent = RequestSpend(tightest(request.max_cost, limits.per_request))
            held = limits_in_force(request, limits, plan.price_cap)
            images = request.image_count() if held else 0
            out_of_time, tried = False, 0
            gave_up: str | None = None  # what stopped the chain before its last candidate
            last = len(plan.candidates) - 1
            for position, candidate in enumerate(plan.candidates):
                if budget_left <= 0:
                    gave_up = f"after max_attempts={self.max_attempts}"
                    break
                if self.time_left(request, started) <= 0:
                    out_of_time, gave_up = True, f"when timeout_s={request.timeout_s:g} ran out"
                    break
                try:
                    worst = candidate.worst_case or Decimal(0)
                    reservation = await self.budgets.reserve(worst, cost_cap=spent.cap_left())
                except BudgetExceededError as refusal:
                    refusals.append((candidate.id, refusal))
                    attempts.append(AttemptRecord(model=candidate.id, outcome="skipped", error=str(refusal)))
                    continue
                # After the reservation: a half-open breaker's one trial is claimed only for a request that is sent.
                if not self.breakers.allow(candidate.id):
                    with anyio.CancelScope(shield=True):
                        await self.budgets.release(reservation)
                    attempts.append(AttemptRecord(model=candidate.id, outcome="skipped", error="circuit breaker open"))
                    continue
                cap = price_cap(
                    candidate.entry, prompt_tokens=plan.prompt_tokens_bound, images=images, catalog=catalog, limits=held
                )
                outcome = progress.outcome = CandidateOutcome(spent, cap=cap)
                tried += 1
                tries = self._candidates.run(
                    request, plan, catalog, candidate, reservation, streamed, attempts, budget_left, started, outcome
                )
                async with aclosing(tries) as events:
                    async for event in events:
                        yield event
                budget_left -= outcome.used
                if outcome.result is not None:
                    yield outcome.result
                    return
                failures.extend(outcome.failures)
                if isinstance(outcome.final, InvalidRequestError) and position < last and not _confirmed(failures):
                    # OpenRouter's verdict can be about one endpoint (its reasoning cannot be disabled): the
                    # next model confirms it is the request's own before the chain stops.
                    failures.append((candidate.id, outcome.final))
                    continue
                if outcome.final is not None:
                    progress.recorded = True
                    outcome.final.billed = spent.billed  # the answers rejected before it (its own row has none)
                    row = failure_row(request, plan, attempts, outcome.final, self._now(), unrecorded=spent.unrecorded)
                    await self.budgets.settle(None, row)
                    raise outcome.final
            if out_of_time and not failures and not refusals:  # `timeout_s` ran out before any attempt was sent
                error: ModelyardError = timed_out(request, plan.candidates[0])
            else:
                made = sum(1 for a in attempts if a.outcome == "error")
                error = no_answer(
                    failures,
                    refusals,
                    attempts=made,
                    billed=spent.billed,
                    tried=tried,
                    gave_up=gave_up,
                    candidates=len(plan.candidates),
                )
            refused = not failures and bool(refusals)
            status: Literal["refused", "error"] = "refused" if refused else "error"
            row = failure_row(request, plan, attempts, error, self._now(), status=status, unrecorded=spent.unrecorded)
            progress.recorded = True
            await self.budgets.settle(None, row)
            raise error
        except BaseException as exc:
            if not progress.recorded and isinstance(exc, GeneratorExit | anyio.get_cancelled_exc_class()):
                await self._record_cancelled(request, plan, progress, exc)
            raise

    async def _record_cancelled(
        self, request: RouteRequest, plan: Plan, progress: RequestProgress, exc: BaseException
    ) -> None:
        """The ledger row of a request its caller cancelled, or stopped reading, before any row was written."""
        unrecorded = progress.outcome is not None and progress.outcome.spent.unrecorded
        row = failure_row(request, plan, progress.attempts, exc, self._now(), status="cancelled", unrecorded=unrecorded)
        row.error = "cancelled by the caller"
        with anyio.CancelScope(shield=True):
            await self.budgets.settle(None, row)

    def time_left(self, request: RouteRequest, started: float) -> float:
        """Seconds left of the request's `timeout_s` (unbounded when it gives none)."""
        return self._candidates.time_left(request, started)


def _confirmed(failures: list[tuple[str, BaseException]]) -> bool:
    """An earlier candidate was refused with the same verdict: the request, not one model, is what is wrong."""
    return any(isinstance(earlier, InvalidRequestError) for _, earlier in failures)


def tightest(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    """The tighter of two caps (None: no cap)."""
    return b if a is None else a if b is None else min(a, b)
