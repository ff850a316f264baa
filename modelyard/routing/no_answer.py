"""The error of a request that got no answer: what each candidate did, and what stopped the chain."""

from __future__ import annotations

from decimal import Decimal

from modelyard.errors import AllCandidatesFailedError, BudgetExceededError, ModelyardError, UpstreamTimeoutError
from modelyard.routing.request import RouteRequest
from modelyard.routing.selection import Candidate

__all__ = ["no_answer", "timed_out"]


def timed_out(request: RouteRequest, candidate: Candidate) -> UpstreamTimeoutError:
    """`timeout_s` ran out before `candidate` gave a complete answer."""
    return UpstreamTimeoutError(f"No complete answer within timeout_s={request.timeout_s:g}", model=candidate.id)


def no_answer(
    failures: list[tuple[str, BaseException]],
    refusals: list[tuple[str, BudgetExceededError]],
    *,
    attempts: int,
    billed: Decimal | None,
    tried: int,
    candidates: int,
    gave_up: str | None,
) -> ModelyardError:
    """The error for a chain no candidate answered.

    Only budget refusals: the one of the cheapest candidate. Otherwise `AllCandidatesFailedError`, which names
    the models the budget refused too ("all failed" alone would hide that a fallback was never tried) and, when
    a limit stopped the chain (`gave_up`), how many of the candidates were tried.
    """
    if not failures and refusals:
        return min(
            (r for _, r in refusals), key=lambda r: r.estimate if r.estimate is not None else Decimal("Infinity")
        )
    return AllCandidatesFailedError(
        [*failures, *refusals], attempts=attempts, billed=billed, tried=tried, candidates=candidates, gave_up=gave_up
    )
