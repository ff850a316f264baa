"""Why no model is left: an empty plan's exclusions grouped by kind, each group with examples, the limit
that binds and where it comes from, and a change that would let a model through.

Only a request no model can serve reads this (`execute`'s error, `plan_route`'s `no_candidates_reason`):
selection keeps that request as the filters read it on its `EmptyPlan`, and everything here is worked
out from it and the catalog's facts, so a request with candidates does none of this work.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from modelyard.error_text import dollars, limit_fix
from modelyard.errors import NoCandidatesError
from modelyard.routing.catalog import Catalog
from modelyard.routing.catalog_facts import CatalogFacts, EntryFacts, facts_of
from modelyard.routing.circuit import CircuitBreakers
from modelyard.routing.filters import (
    BREAKER_OPEN,
    UNPRICED,
    Context,
    exclusion,
    prompt_exclusion,
    token_exclusion,
    worst_case,
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
_EXAMPLES = 3
_MAX_CHARS = 1_900
_IMPLIED_BY = {
    "tools": "`tools` needs it",
    "vision": "the images need it",
    "json_mode": "response_format json_object needs it",
    "structured_outputs": "response_format json_schema needs it",
    "reasoning": "`reasoning` needs it",
}


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
    why = _Why(ctx, facts_of(catalog), per_request, plan.mode, breaker_wait_s, per_request_source)
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


@dataclass(frozen=True, slots=True)
class _Why:
    """What the explanation reads: the request as the filters read it (None for a plan made elsewhere)."""

    ctx: Context | None
    facts: CatalogFacts
    per_request: Decimal | None
    mode: str
    breaker_wait_s: float | None = None
    per_request_source: str | None = None

    def of(self, ids: Sequence[str]) -> list[EntryFacts]:
        return [f for i in ids if (f := self.facts.by_id.get(i)) is not None]

    @property
    def tier(self) -> str | None:
        if self.mode.startswith("tier:"):
            return self.mode.removeprefix("tier:")
        return self.ctx.request.tier if self.ctx is not None and self.mode == "auto" else None


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


def _header(why: _Why, count: int) -> str:
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


def _group_lines(why: _Why, groups: list[_Group]) -> list[str]:
    lines = [f"- {_LINES.get(kind, _plain)(why, ids, reasons)}" for kind, ids, reasons in groups[:_GROUPS_SHOWN]]
    if left := groups[_GROUPS_SHOWN:]:
        kinds = "kind" if len(left) == 1 else "kinds"
        lines.append(f"- and {len(left)} more {kinds} of reason ({', '.join(kind for kind, _, _ in left)}).")
    return lines


def _others(why: _Why) -> str | None:
    """For a named chain or a tier: the models that meet every constraint (none do in automatic selection)."""
    ctx = why.ctx
    if ctx is None or (why.mode == "auto" and why.tier is None):
        return None
    passing = [(f, n) for f in why.facts.all if (n := _passes(ctx, f)) is not None]
    quality = ctx.request.quality or ctx.defaults.quality
    best = [f.id for _, f, _ in rank(passing, quality=quality, fast=False, speed=SpeedBook())[:_EXAMPLES]]
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


# --------------------------------------------------------------------------- one line per kind


_SINGULAR = {"have": "has", "are": "is", "do": "does"}


def _have(ids: Sequence[str], verb: str = "have") -> str:
    """The subject and its verb: "gpt-4o-mini has", "12 models have"."""
    return f"{ids[0]} {_SINGULAR[verb]}" if len(ids) == 1 else f"{len(ids)} models {verb}"


def _names(ids: Sequence[str]) -> str:
    more = f" and {len(ids) - _EXAMPLES} more" if len(ids) > _EXAMPLES else ""
    return ", ".join(ids[:_EXAMPLES]) + more


def _fix(ids: Sequence[str]) -> str:
    return " To let it through: " if len(ids) == 1 else " To let one through: "


def _listed(ids: Sequence[str]) -> str:
    """After a count of models, the first few (`: a, b, c and 9 more`); nothing after one model's own name."""
    return f": {_names(ids)}" if len(ids) > 1 else ""


def _plain(why: _Why, ids: list[str], reasons: list[str]) -> str:
    common = Counter(reasons).most_common(1)[0][0]
    return f"{_names(ids)}: {common}" + (" (and other reasons like it)" if len(set(reasons)) > 1 else "") + "."


def _breaker(why: _Why, ids: list[str], reasons: list[str]) -> str:
    wait = why.breaker_wait_s
    when = "in a little while"
    if wait is not None:
        whose = "its circuit breaker lets" if len(ids) == 1 else "the first of their circuit breakers lets"
        when = f"in {math.ceil(wait)} s (when {whose} a trial request through)"
    return (
        f"{_names(ids)}: paused by a circuit breaker after repeated failures. "
        f"Retry {when}, or name another model in `models`."
    )


def _cost(why: _Why, ids: list[str], reasons: list[str]) -> str:
    ctx, models = why.ctx, why.of(ids)
    if ctx is None or ctx.cost_cap is None or not models:
        return _plain(why, ids, reasons)
    cap = ctx.cost_cap
    rows = sorted((worst_case(ctx, f, token_exclusion(ctx, f)[1]), f.id, f) for f in models)
    source, raisable = _cap_source(ctx, why.per_request)
    if raisable and why.per_request is not None and rows[0][0] > why.per_request:
        raisable = False  # a max_cost that high is still held to the per_request budget
    shown = ", ".join(f"{i} {dollars(w)}" for w, i, _ in rows[:_EXAMPLES])
    text = f"{_have(ids)} a worst case above the per-request cap {dollars(cap)} ({source}): {shown}."
    fixes = [f"raise max_cost to at least {dollars(rows[0][0])} ({rows[0][1]})"] if raisable else []
    if (fit := _max_tokens_within(ctx, cap, rows)) is not None:
        fixes.append(f"lower max_tokens to {fit[0]:,} or fewer ({fit[1]}'s worst case then fits)")
    else:
        alone, cheapest = min((worst_case(ctx, f, 0), i) for _, i, f in rows)
        fixes.append(f"the prompt alone costs {dollars(alone)} on {cheapest}, the cheapest: shorten it")
    text += _fix(ids) + "; or ".join(fixes) + "."
    if not raisable:
        text += _per_request_fix(why.per_request_source)
    return text


def _per_request_fix(source: str | None) -> str:
    """Who can lift the per_request budget: the operator's config, or `modelyard budget --reset` for a limit an
    agent's `set_budget` (or the CLI) lowered at run time, which raising the config would not lift."""
    if source in ("run-time", "both"):
        return f" As for the per_request budget, {limit_fix('per_request', source)}."
    return " Only the operator can raise the per_request budget (MODELYARD_BUDGET__PER_REQUEST or the config file)."


def _cap_source(ctx: Context, per_request: Decimal | None) -> tuple[str, bool]:
    """Where the cost cap comes from, and whether raising the request's max_cost would lift it."""
    asked = ctx.request.max_cost
    if asked is not None and asked == ctx.cost_cap:
        if per_request is not None and per_request == asked:
            return "the request's max_cost and the per_request budget", False
        return "the request's max_cost", True
    return "the per_request budget", False


def _max_tokens_within(
    ctx: Context, cap: Decimal, rows: Sequence[tuple[Decimal, str, EntryFacts]]
) -> tuple[int, str] | None:
    """The largest max_tokens with which some model's worst case fits `cap`, and that model; None if none."""
    best: tuple[int, str] | None = None
    for _, model, facts in rows:
        fixed = worst_case(ctx, facts, 0)
        per_token = worst_case(ctx, facts, 1) - fixed
        if fixed > cap or per_token <= 0:
            continue
        tokens = int((cap - fixed) / per_token)
        while tokens > 0 and fixed + tokens * per_token > cap:  # the division rounds: never overshoot
            tokens -= 1
        if tokens >= 1 and (best is None or tokens > best[0]):
            best = (tokens, model)
    return best


def _context(why: _Why, ids: list[str], reasons: list[str]) -> str:
    ctx, models = why.ctx, why.of(ids)
    if ctx is None or not models:
        return _plain(why, ids, reasons)
    rows = sorted(((f.context or 0, f.id, token_exclusion(ctx, f)[1]) for f in models), key=lambda r: (-r[0], r[1]))
    shown = ", ".join(f"{i} {room:,}" for room, i, _ in rows[:_EXAMPLES])
    text = (
        f"{_have(ids)} a context too small for the prompt (~{ctx.estimate:,} tokens, estimated) "
        f"plus max_tokens: {shown}."
    )
    largest, model, max_tokens = rows[0]
    if (room := largest - ctx.estimate) >= 1:
        return f"{text}{_fix(ids)}lower max_tokens to {room:,} or fewer ({model}), or shorten the prompt."
    whose = "its context" if len(ids) == 1 else "the largest of these contexts"
    return (
        f"{text}{_fix(ids)}shorten the prompt to under ~{max(largest - max_tokens, 0):,} tokens: "
        f"{whose} is {largest:,} ({model})."
    )


def _max_tokens(why: _Why, ids: list[str], reasons: list[str]) -> str:
    ctx, models = why.ctx, why.of(ids)
    if ctx is None or not models:
        return _plain(why, ids, reasons)
    rows = sorted(((f.max_completion or 0, f.id) for f in models), key=lambda r: (-r[0], r[1]))
    shown = ", ".join(f"{i} {limit:,}" for limit, i in rows[:_EXAMPLES])
    return (
        f"{_have(ids)} a completion limit below max_tokens {ctx.wanted_tokens:,}: {shown}."
        f"{_fix(ids)}lower max_tokens to {rows[0][0]:,} or fewer ({rows[0][1]})."
    )


def _capability(why: _Why, ids: list[str], reasons: list[str]) -> str:
    missing = Counter(cap for reason in reasons for cap in reason.removeprefix("lacks ").split(", "))
    caps = sorted(missing, key=lambda c: (-missing[c], c))
    lacks = " or ".join(caps) if len(ids) > 1 else ", ".join(caps)
    text = f"{ids[0]} lacks {lacks}" if len(ids) == 1 else f"{len(ids)} models lack {lacks}: {_names(ids)}"
    if why.ctx is None:
        return f"{text}."
    by_origin: dict[str, list[str]] = {}
    for cap in caps:
        by_origin.setdefault(_origin(why.ctx, cap), []).append(cap)
    imposed = by_origin.pop(_SERVER_DEFAULT, [])
    if not by_origin:  # only the server's defaults stand in the way: the caller cannot drop them
        return (
            f"{text}. The server requires {' and '.join(imposed)} of every model ({_SERVER_DEFAULT}): name a model "
            "that has it, or ask the operator to change that setting."
        )
    drops = "; ".join(f"{' and '.join(named)} ({origin})" for origin, named in by_origin.items())
    return f"{text}.{_fix(ids)}drop {drops}."


def _origin(ctx: Context, cap: str) -> str:
    if cap in ctx.request.capabilities:
        return "asked for in `capabilities`"
    if cap in ctx.request.required_capabilities():
        return _IMPLIED_BY.get(cap, "the request needs it")
    return _SERVER_DEFAULT


_SERVER_DEFAULT = "the server's default capabilities, MODELYARD_CAPABILITIES"


def _price(why: _Why, ids: list[str], reasons: list[str]) -> str:
    ctx, models = why.ctx, why.of(ids)
    if ctx is None or ctx.price_cap is None or not models:
        return _plain(why, ids, reasons)
    asked = ctx.request.max_cost_per_1k is not None
    source = "the request's" if asked else "the server's default, MODELYARD_MAX_COST_PER_1K"
    rows = sorted((_price_needed(ctx, f), f.id) for f in models)
    shown = ", ".join(f"{i} {dollars(need)}" for need, i in rows[:_EXAMPLES])
    return (
        f"{_have(ids, 'are')} priced above max_cost_per_1k {dollars(ctx.price_cap)} ({source}), by the dearer of "
        f"the prompt and completion price per 1K tokens: {shown}.{_fix(ids)}pass a max_cost_per_1k of at least "
        f"{dollars(rows[0][0])} ({rows[0][1]})."
    )


def _price_needed(ctx: Context, facts: EntryFacts) -> Decimal:
    """The lowest max_cost_per_1k the model passes for this prompt (its long-prompt prices included)."""
    need = max(facts.prompt_1k, facts.completion_1k)
    for threshold, prompt, completion in facts.price_steps:
        if ctx.bound > threshold:
            need = max(need, prompt, completion)
    return need


def _provider(why: _Why, ids: list[str], reasons: list[str]) -> str:
    if why.ctx is None:
        return _plain(why, ids, reasons)
    wanted = why.ctx.request.provider
    authors = Counter(f.author for f in why.facts.all)
    theirs = _names([f"{author} ({count})" for author, count in Counter(f.author for f in why.of(ids)).most_common()])
    text = f"{_have(ids, 'are')} by authors not among {', '.join(wanted)}: {theirs}."
    unknown = [p for p in wanted if p.lower() not in authors]
    if not unknown:
        return f"{text}{_fix(ids)}add its author to provider, or drop provider."
    close = [m for p in unknown for m in difflib.get_close_matches(p.lower(), list(authors), n=1)]
    hint = f" (did you mean {', '.join(close)}?)" if close else f" (authors include {_names(sorted(authors))})"
    return f"{text} No model in the catalog is by {', '.join(unknown)}{hint}."


def _input(why: _Why, ids: list[str], reasons: list[str]) -> str:
    inputs = sorted({r.removeprefix("does not take ").removesuffix(" input") for r in reasons})
    return (
        f"{_have(ids, 'do')} not take {' or '.join(inputs)} input{_listed(ids)}. "
        f"{_fix(ids).lstrip()}leave the {' and '.join(inputs)} out, or name a model that takes it."
    )


def _not_automatic(why: _Why, ids: list[str], reasons: list[str]) -> str:
    return (
        f"{_names(ids)}: not chosen automatically (free variants, routers, models that output more than "
        "text); name one to use it."
    )


def _bounded(lines: list[str]) -> str:
    """The lines joined, whole lines dropped from the end (keeping the header) past `_MAX_CHARS`."""
    while len(lines) > 1 and sum(len(line) + 1 for line in lines) > _MAX_CHARS:
        lines = lines[:-1]
    return "\n".join(lines)[:_MAX_CHARS]


_LINES: dict[str, Callable[[_Why, list[str], list[str]], str]] = {
    "breaker": _breaker,
    "cost": _cost,
    "context": _context,
    "max_tokens": _max_tokens,
    "capability": _capability,
    "price": _price,
    "provider": _provider,
    "input": _input,
    "not automatic": _not_automatic,
}
