"""Why no model is left: an empty plan's exclusions grouped by kind, each group with examples, the limit
that binds and where it comes from, and a change that would let a model through.

Only a request no model can serve reads this (`execute`'s error, `plan_route`'s `no_candidates_reason`):
selection keeps that request as the filters read it on its `EmptyPlan`, and everything here is worked
out from it and the catalog's facts, so a request with candidates does none of this work. This module
groups the exclusions and frames the text; each kind's sentence is written in `explain_kinds`.
"""

from __future__ import annotations

from decimal import Decimal

from modelyard.errors import NoCandidatesError
from modelyard.routing.catalog import Catalog
from modelyard.routing.catalog_facts import EntryFacts, facts_of
from modelyard.routing.circuit import CircuitBreakers
from modelyard.routing.explain_kinds import EXAMPLES, Why, kind_line
from modelyard.routing.filters import (
    BREAKER_OPEN,
    UNPRICED,
    Context,
    exclusion,
    prompt_exclusion,
    token_exclusion,
)
from modelyard.routing.ranking import rank
from modelyard.routing.selection import EmptyPlan, Plan
from modelyard.routing.speed import SpeedBook

__all__ = ["kind_of", "no_candidates_error", "why_no_model"]

_KINDS = (
    (BREAKER_OPEN, "breaker"),
    ("worst-case cost ", "cost"),
    ("context ", "context"),
    ("max_tokens ", "max_tokens"),
    ("lacks ", "capability"),
    ("does not take ", "input"),
    ("author ", "provider"),
    ("price is only known after routing", "unknown price"),
    (UNPRICED, "unknown price"),
    ("price $", "price"),
    ("a router picks", "not automatic"),
    ("free variant", "not automatic"),
    ("outputs ", "not automatic"),
    ("does not output text", "no text output"),
    ("retired on ", "retired"),
)
"""(the start of a reason `filters` writes, its kind), first match wins."""
_PASSIVE = frozenset({"not automatic", "no text output", "retired", "unknown price", "other"})
"""Kinds no change to the request's constraints lets through: listed after the others."""
_GROUPS_SHOWN = 5
_MAX_CHARS = 1_900


def kind_of(reason: str) -> str:
    """The kind of an exclusion reason (`cost`, `context`, `capability`...; `other` if none fits)."""
    return next((kind for start, kind in _KINDS if reason.startswith(start)), "other")


def why_no_model(
    plan: Plan,
    catalog: Catalog,
    *,
    per_request: Decimal | None,
    per_request_source: str | None = None,
    breaker_wait_s: float | None = None,
) -> str:
    """Why `plan` (which has no candidate) has none, and what would let a model through; at most 1,900 characters.

    Args:
        per_request: the per_request budget in force, to tell it from the request's `max_cost`.
        per_request_source: where that budget comes from (`BudgetManager.source`): who can lift it, and how.
        breaker_wait_s: the seconds until the first open circuit breaker lets a trial through (`breaker_wait`).
    """
    ctx = plan.context if isinstance(plan, EmptyPlan) else None
    why = Why(ctx, facts_of(catalog), per_request, plan.mode, breaker_wait_s, per_request_source)
    groups = _groups(plan)
    count = sum(len(ids) for _, ids, _ in groups)
    lines = [_header(why, count), *_group_lines(why, groups)]
    if (others := _others(why)) is not None:
        lines.append(others)
    return _bounded(lines)


def no_candidates_error(
    plan: Plan,
    catalog: Catalog,
    *,
    per_request: Decimal | None,
    per_request_source: str | None = None,
    breakers: CircuitBreakers | None = None,
) -> NoCandidatesError:
    """`execute`'s error for a plan with no candidate: `why_no_model`, then where to see every reason. When
    only open circuit breakers stand in the way, `retry_after_s` is when the first lets a trial through."""
    wait = breaker_wait(plan, breakers)
    text = why_no_model(
        plan, catalog, per_request=per_request, per_request_source=per_request_source, breaker_wait_s=wait
    )
    sample = {e.model: e.reason for e in plan.exclusions[:20]}
    only_breakers = all(e.reason == BREAKER_OPEN for e in plan.exclusions if e.model != "*")
    return NoCandidatesError(
        f"{text}\nplan_route with the same arguments lists the models and why (free).",
        sample,
        retry_after_s=wait if only_breakers else None,
    )


def breaker_wait(plan: Plan, breakers: CircuitBreakers | None) -> float | None:
    """Seconds until the first circuit breaker that excluded a model of `plan` lets a trial through."""
    if breakers is None:
        return None
    waits = [w for e in plan.exclusions if e.reason == BREAKER_OPEN and (w := breakers.trial_in_s(e.model)) is not None]
    return min(waits, default=None)


_Group = tuple[str, list[str], list[str]]
"""(kind, model ids, their reasons), in pool order."""


def _groups(plan: Plan) -> list[_Group]:
    """The exclusions by kind, the kinds a change can fix first, most models first."""
    found: dict[str, _Group] = {}
    for item in plan.exclusions:
        if item.model == "*":  # the tier's note: said in the header
            continue
        kind = kind_of(item.reason)
        group = found.setdefault(kind, (kind, [], []))
        group[1].append(item.model)
        group[2].append(item.reason)
    return sorted(found.values(), key=lambda g: (g[0] in _PASSIVE, -len(g[1])))


def _header(why: Why, count: int) -> str:
    if count == 0:
        if why.tier and why.facts.all:  # the tier's note ('*') is all the plan holds
            return f"No model meets the constraints: the catalog has no {why.tier}-tier model."
        return "No model meets the constraints: the catalog has no model to consider."
    if why.mode == "explicit":
        what = "the model named was" if count == 1 else f"all {count} models of the chain were"
    else:
        tier = f"{why.tier}-tier " if why.tier else ""
        what = f"the 1 {tier}model was" if count == 1 else f"all {count} {tier}models were"
    return f"No model meets the constraints: {what} excluded."


def _group_lines(why: Why, groups: list[_Group]) -> list[str]:
    lines = [f"- {kind_line(why, kind, ids, reasons)}" for kind, ids, reasons in groups[:_GROUPS_SHOWN]]
    if left := groups[_GROUPS_SHOWN:]:
        kinds = "kind" if len(left) == 1 else "kinds"
        lines.append(f"- and {len(left)} more {kinds} of reason ({', '.join(kind for kind, _, _ in left)}).")
    return lines


def _others(why: Why) -> str | None:
    """For a named chain or a tier: the models that meet every constraint (none do in automatic selection)."""
    ctx = why.ctx
    if ctx is None or (why.mode == "auto" and why.tier is None):
        return None
    passing = [(f, n) for f in why.facts.all if (n := _passes(ctx, f)) is not None]
    quality = ctx.request.quality or ctx.defaults.quality
    best = [f.id for _, f, _ in rank(passing, quality=quality, fast=False, speed=SpeedBook())[:EXAMPLES]]
    where = f"Outside the {why.tier} tier" if why.mode != "explicit" else "Of the other models"
    if not best:
        return f"{where}, no model meets every constraint either."
    hint = "use model='auto'" if why.mode != "explicit" else "name one, or use model='auto'"
    return f"{where}, these meet every constraint, best first: {', '.join(best)}; {hint}."


def _passes(ctx: Context, facts: EntryFacts) -> int | None:
    """The max_tokens automatic selection would send the model, or None if any check excludes it."""
    if exclusion(ctx, facts, auto=True) is not None:
        return None
    reason, max_tokens = token_exclusion(ctx, facts)
    if reason is not None or prompt_exclusion(ctx, facts, max_tokens)[0] is not None:
        return None
    return max_tokens


def _bounded(lines: list[str]) -> str:
    """The lines joined, whole lines dropped from the end (keeping the header) past `_MAX_CHARS`."""
    while len(lines) > 1 and sum(len(line) + 1 for line in lines) > _MAX_CHARS:
        lines = lines[:-1]
    return "\n".join(lines)[:_MAX_CHARS]
