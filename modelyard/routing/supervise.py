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
    cost: Usd | None
    total_cost: Usd | None = Field(description="Primary plus supervisor, USD; null if either is unknown.")


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
    total = primary.cost + verdict.cost if primary.cost is not None and verdict.cost is not None else None
    return Supervision(
        model=verdict.model,
        approved=approved,
        revised_content=None if approved else text,
        cost=verdict.cost,
        total_cost=total,
    )
