"""The wording of modelyard's error messages that depends on state: a budget refusal's advice, what a failed
request was billed, and USD amounts as the messages write them."""

from __future__ import annotations

from decimal import Context, Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.errors import BudgetExceededError

__all__ = ["billed_note", "budget_advice", "dollars", "limit_fix", "usd", "with_note"]

_RESETS = {"daily": "at 00:00 UTC", "monthly": "on the 1st of the month at 00:00 UTC"}
"""When a period's budget starts again: the store counts spend per UTC day and UTC month."""


_DIGITS = Context(prec=15)
"""At most 15 significant digits: every price, cost and limit in full, an average (28 digits) rounded."""


def usd(amount: Decimal) -> str:
    """A USD amount in plain digits, without trailing zeros or exponent: 0.00001, 12.5, 0.0000000001.

    The one way every message writes money (with `dollars` for the `$`): a limit of 1e-30 is neither `$0` (it is
    not zero) nor `$1E-30`.
    """
    return f"{amount.normalize(_DIGITS):f}"


def dollars(amount: Decimal) -> str:
    """`$0.5`, `-$0.5`, `$0.000000000000000000000000000001`: `usd` with its sign and a dollar sign."""
    return f"{'-' if amount < 0 else ''}${usd(abs(amount))}"


def limit_fix(budget: str, source: str | None) -> str:
    """Who can lift the `budget` limit in force (daily, monthly, per_request) and how, by where it comes from.

    `source` is `LimitSource.source`: `config` (or None, unknown) is the operator's setting; `run-time` a
    tightening by `set_budget` or `modelyard budget --daily ...`, which only lower limits, so raising the
    configured value would not help; `both` the two at the same value.
    """
    variable = f"MODELYARD_BUDGET__{budget.upper()}"
    if source == "run-time":
        return (
            "it was lowered at run time (set_budget or `modelyard budget`), and those only lower limits: the "
            "operator lifts it with `modelyard budget --reset`"
        )
    if source == "both":
        return (
            f"only the operator can raise it: the config ({variable} or the config file) and a run-time "
            "tightening both set it, so raise the config and run `modelyard budget --reset`"
        )
    return f"only the operator can raise it ({variable} or the config file)"


def budget_advice(error: BudgetExceededError) -> str:
    """What can still work after `error`: a smaller request, waiting for requests in flight or for the reset,
    or the operator."""
    resets = _RESETS.get(error.budget)
    if resets is None or error.limit is None:  # per_request: a cap on one request, not a period's budget
        return (
            "Lower max_tokens or pick a cheaper model (plan_route shows each candidate's worst case), or raise "
            f"max_cost if the request set it; as for the per_request budget, {limit_fix('per_request', error.source)}."
        )
    operator = limit_fix(error.budget, error.source)
    settled = error.limit - error.spent  # what is left once the requests in flight settle (they spend at most it)
    if settled <= 0:
        return f"Nothing can be sent: the {error.budget} budget is exhausted until it resets {resets}; {operator}."
    if error.estimate is not None and error.estimate <= settled:
        return "The rest is held by requests in flight: retry when they finish (what they do not spend is freed)."
    room = dollars(error.remaining) if error.remaining else f"{dollars(settled)} once requests in flight finish"
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
    return f" OpenRouter billed {dollars(billed)} for the rejected answers (in the ledger and the budget)."


def with_note(message: str, note: str) -> str:
    """`message`, then `note` (a sentence of its own, or nothing) after a full stop."""
    if not note or message.endswith((".", "!", "?")):
        return f"{message}{note}"
    return f"{message}.{note}"
