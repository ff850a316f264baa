"""Where each budget limit comes from (the operator's config, a run-time tightening, or both), and whether one is
so low that no paid model can answer even the smallest request.

`get_budget`, `modelyard budget` and `doctor` show the first, so a limit lowered by an agent's `set_budget` is
not mistaken for the configured one; `doctor` and `test_connection` report the second with its fix.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from pydantic import Field

from modelyard.error_text import dollars, limit_fix
from modelyard.routing.budget import Source, Tightenings, source_of
from modelyard.routing.money import Usd
from modelyard.routing.schema import ResultModel
from modelyard.store.base import BudgetLimits

if TYPE_CHECKING:
    from modelyard.routing.catalog import Catalog
    from modelyard.routing.filters import SelectionDefaults

__all__ = ["LIMIT_NAMES", "LimitSource", "LimitSources", "blocking_limits", "least_request_cost", "limit_sources"]

LIMIT_NAMES = ("daily", "monthly", "per_request")
_SMALLEST_PROMPT = "Hi"


class LimitSource(ResultModel):
    """One limit: the value in force, the configured one, the run-time tightening, and which of them holds."""

    in_force: Usd | None = Field(description="The limit that holds, USD; null = no limit.")
    source: Source = Field(
        description="Where `in_force` comes from: `config` (the operator's MODELYARD_BUDGET__* or config file), "
        "`run-time` (lowered by set_budget or `modelyard budget`; `modelyard budget --reset` drops it), `both` "
        "(the two at the same value), or `none` (no limit)."
    )
    configured: Usd | None = Field(description="The operator's configured limit, USD; null = none.")
    tightened: Usd | None = Field(description="The run-time tightening, USD; null = none.")
    tightened_at: datetime | None = Field(
        default=None,
        description="When the run-time tightening was set (UTC); null when there is none, or it was stored by a "
        "release that kept no time.",
    )


class LimitSources(ResultModel):
    """Where each of the three limits comes from."""

    daily: LimitSource
    monthly: LimitSource
    per_request: LimitSource


def limit_sources(configured: BudgetLimits, tightenings: Tightenings) -> LimitSources:
    """Each limit's configured value, its run-time tightening (and when it was set) and which one is in force."""

    def one(name: str) -> LimitSource:
        config, tightened = getattr(configured, name), getattr(tightenings.limits, name)
        at = tightenings.set_at.get(name) if tightened is not None else None
        values = [v for v in (config, tightened) if v is not None]
        return LimitSource(
            in_force=min(values, default=None),
            source=source_of(config, tightened),
            configured=config,
            tightened=tightened,
            tightened_at=None if at is None else datetime.fromtimestamp(at, UTC),
        )

    return LimitSources(daily=one("daily"), monthly=one("monthly"), per_request=one("per_request"))


def least_request_cost(catalog: Catalog, defaults: SelectionDefaults, *, now: float) -> tuple[Decimal, str] | None:
    """The worst case of the smallest request (a two-letter prompt, max_tokens 1) on the cheapest paid model
    automatic selection may pick, and that model; None when it may pick no paid model.

    A limit below it refuses every request to a paid model: nothing smaller can be sent.
    """
    from modelyard.routing.request import RouteRequest  # here: the selection modules stay out of cold start
    from modelyard.routing.selection import select

    request = RouteRequest(messages=[{"role": "user", "content": _SMALLEST_PROMPT}], max_tokens=1)
    plan = select(catalog, request, defaults=defaults, now=now)
    costs = [(cost, c.id) for c in plan.candidates if (cost := c.worst_case) is not None and cost > 0]
    return min(costs, default=None)


def blocking_limits(sources: LimitSources, least: tuple[Decimal, str] | None) -> list[str]:
    """A problem, with its fix, for each limit under which no paid model can answer: one below `least`
    (`least_request_cost`), or, with no catalog to tell, one of $0."""
    problems = []
    for name in LIMIT_NAMES:
        item: LimitSource = getattr(sources, name)
        limit = item.in_force
        if limit is None or (limit >= least[0] if least is not None else limit > 0):
            continue
        below = ""
        if least is not None:
            cheapest, model = least
            below = f", below {dollars(cheapest)}, the worst case of the smallest request on any paid model ({model})"
        problems.append(
            f"the {name} limit is {dollars(limit)}{below}: every request to a paid model is refused; "
            f"{limit_fix(name, item.source)}."
        )
    return problems
