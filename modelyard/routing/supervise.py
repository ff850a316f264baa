"""Supervision: a stronger model reviews a cheaper model's answer, approving it or revising it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from modelyard.routing.money import Usd
from modelyard.routing.request import RouteRequest
from modelyard.routing.result import RouteResult
from modelyard.routing.schema import ResultModel

if TYPE_CHECKING:
    from modelyard.routing.router import Router

__all__ = ["Supervision", "supervise"]

_APPROVED = "APPROVED"
_INSTRUCTIONS = (
    "You review another model's answer to the conversation below. If the answer is correct and complete, "
    f"reply with exactly {_APPROVED}. Otherwise reply with only the corrected, complete answer."
)


class Supervision(ResultModel):
    """The supervisor's verdict; both calls are billed and shown."""

    model: str = Field(description="The model that reviewed.")
    approved: bool
    revised_content: str | None = Field(default=None, description="The revision, when not approved.")
    cost: Usd | None = Field(description="USD of the review's answer; null if unknown.")
    request_cost: Usd | None = Field(
        description="USD the review's request was billed, its answer and any attempt before it; null if unknown."
    )
    total_cost: Usd | None = Field(
        description="USD billed for the primary's request and the review's (each one's `request_cost`); "
        "null if either is unknown."
    )


async def supervise(router: Router, request: RouteRequest, primary: RouteResult, supervisor: str) -> Supervision:
    """Ask `supervisor` (a model or tier) to approve or revise `primary`'s answer to `request`."""
    transcript = "\n\n".join(f"[{m['role']}] {m.get('content')}" for m in request.messages)
    review = RouteRequest(
        messages=[
            {"role": "system", "content": _INSTRUCTIONS},
            {"role": "user", "content": f"{transcript}\n\n[answer from {primary.model}]\n{primary.content or ''}"},
        ],
        model=supervisor,
        max_tokens=request.max_tokens,
        temperature=0,
        max_cost=request.max_cost,
        cache="off",
    )
    verdict = await router.execute(review)
    text = (verdict.content or "").strip()
    approved = text.upper().startswith(_APPROVED)
    first, review_cost = primary.request_cost, verdict.request_cost
    return Supervision(
        model=verdict.model,
        approved=approved,
        revised_content=None if approved else text,
        cost=verdict.cost,
        request_cost=review_cost,
        total_cost=first + review_cost if first is not None and review_cost is not None else None,
    )
