"""The wording of modelyard's error messages that depends on state: a budget refusal's advice, what a failed
request was billed, and USD amounts as the messages write them."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.errors import BudgetExceededError

__all__ = ["billed_note", "budget_advice", "usd", "with_note"]

_RESETS = {"daily": "at 00:00 UTC", "monthly": "on the 1st of the month at 00:00 UTC"}
"""When a period's budget starts again: the store counts spend per UTC day and UTC month."""


def usd(amount: Decimal) -> str:
    """A USD amount without trailing zeros or exponent: 0.00001, 12.5."""
    return f"{amount.normalize():f}"


def budget_advice(error: BudgetExceededError) -> str:
    """What can still work after `error`: a smaller request, waiting for requests in flight or for the reset,
    or the operator."""
    resets = _RESETS.get(error.budget)
    if resets is None or error.limit is None:  # per_request: a cap on one request, not a period's budget
        return (
            "Lower max_tokens or pick a cheaper model (plan_route shows each candidate's worst case), or raise "
            "max_cost if the request set it; only the operator can raise the per_request budget."
        )
    operator = f"only the operator can raise it (MODELYARD_BUDGET__{error.budget.upper()} or the config file)"
    settled = error.limit - error.spent  # what is left once the requests in flight settle (they spend at most it)
    if settled <= 0:
        return f"Nothing can be sent: the {error.budget} budget is exhausted until it resets {resets}; {operator}."
    if error.estimate is not None and error.estimate <= settled:
        return "The rest is held by requests in flight: retry when they finish (what they do not spend is freed)."
    room = f"${usd(error.remaining)}" if error.remaining else f"${usd(settled)} once requests in flight finish"
    return (
        f"Only a request whose worst case is at most {room} fits: lower max_tokens or pick a cheaper model "
        f"(plan_route shows each candidate's worst case). It resets {resets}; {operator}."
    )


def billed_note(billed: Decimal | None) -> str:
    """What a failed request was billed all the same, said at the end of its message (nothing when $0)."""
    if billed is None:
        return (
            " An attempt may still be billed (its answer had begun): get_metrics will show its cost once "
            "OpenRouter has recorded it."
        )
    if not billed:
        return ""
    return f" OpenRouter billed ${billed.normalize():f} for the rejected answers (in the ledger and the budget)."


def with_note(message: str, note: str) -> str:
    """`message`, then `note` (a sentence of its own, or nothing) after a full stop."""
    if not note or message.endswith((".", "!", "?")):
        return f"{message}{note}"
    return f"{message}.{note}"
