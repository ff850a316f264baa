"""One sentence per kind of exclusion, for `explain`'s why-no-model text: which models a kind excluded, the
limit that binds them and where it comes from, and the change to the request that would let one through.

`explain` groups an empty plan's exclusions and frames the answer (header, other models, length); the
sentences are kept here, one function per kind, as they are where each limit's own arithmetic lives (the
max_tokens a cost cap allows, the max_cost_per_1k a model needs, the context a prompt leaves room for).
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from modelyard.error_text import dollars, limit_fix
from modelyard.routing.catalog_facts import CatalogFacts, EntryFacts
from modelyard.routing.filters import Context, token_exclusion, worst_case

__all__ = ["EXAMPLES", "Why", "kind_line"]

EXAMPLES = 3
"""Models named as examples in a sentence (the rest are counted)."""

_IMPLIED_BY = {
    "tools": "`tools` needs it",
    "vision": "the images need it",
    "json_mode": "response_format json_object needs it",
    "structured_outputs": "response_format json_schema needs it",
    "reasoning": "`reasoning` needs it",
}


@dataclass(frozen=True, slots=True)
class Why:
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


def kind_line(why: Why, kind: str, ids: list[str], reasons: list[str]) -> str:
    """The sentence for the models `ids` that exclusions of `kind` left out, for `reasons`."""
    return _LINES.get(kind, _plain)(why, ids, reasons)


_SINGULAR = {"have": "has", "are": "is", "do": "does"}


def _have(ids: Sequence[str], verb: str = "have") -> str:
    """The subject and its verb: "gpt-4o-mini has", "12 models have"."""
    return f"{ids[0]} {_SINGULAR[verb]}" if len(ids) == 1 else f"{len(ids)} models {verb}"


def _names(ids: Sequence[str]) -> str:
    more = f" and {len(ids) - EXAMPLES} more" if len(ids) > EXAMPLES else ""
    return ", ".join(ids[:EXAMPLES]) + more


def _fix(ids: Sequence[str]) -> str:
    return " To let it through: " if len(ids) == 1 else " To let one through: "


def _listed(ids: Sequence[str]) -> str:
    """After a count of models, the first few (`: a, b, c and 9 more`); nothing after one model's own name."""
    return f": {_names(ids)}" if len(ids) > 1 else ""


def _plain(why: Why, ids: list[str], reasons: list[str]) -> str:
    common = Counter(reasons).most_common(1)[0][0]
    return f"{_names(ids)}: {common}" + (" (and other reasons like it)" if len(set(reasons)) > 1 else "") + "."


def _breaker(why: Why, ids: list[str], reasons: list[str]) -> str:
    wait = why.breaker_wait_s
    when = "in a little while"
    if wait is not None:
        whose = "its circuit breaker lets" if len(ids) == 1 else "the first of their circuit breakers lets"
        when = f"in {math.ceil(wait)} s (when {whose} a trial request through)"
    return (
        f"{_names(ids)}: paused by a circuit breaker after repeated failures. "
        f"Retry {when}, or name another model in `models`."
    )


def _cost(why: Why, ids: list[str], reasons: list[str]) -> str:
    ctx, models = why.ctx, why.of(ids)
    if ctx is None or ctx.cost_cap is None or not models:
        return _plain(why, ids, reasons)
    cap = ctx.cost_cap
    rows = sorted((worst_case(ctx, f, token_exclusion(ctx, f)[1]), f.id, f) for f in models)
    source, raisable = _cap_source(ctx, why.per_request)
    if raisable and why.per_request is not None and rows[0][0] > why.per_request:
        raisable = False  # a max_cost that high is still held to the per_request budget
    shown = ", ".join(f"{i} {dollars(w)}" for w, i, _ in rows[:EXAMPLES])
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


def _context(why: Why, ids: list[str], reasons: list[str]) -> str:
    ctx, models = why.ctx, why.of(ids)
    if ctx is None or not models:
        return _plain(why, ids, reasons)
    rows = sorted(((f.context or 0, f.id, token_exclusion(ctx, f)[1]) for f in models), key=lambda r: (-r[0], r[1]))
    shown = ", ".join(f"{i} {room:,}" for room, i, _ in rows[:EXAMPLES])
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


def _max_tokens(why: Why, ids: list[str], reasons: list[str]) -> str:
    ctx, models = why.ctx, why.of(ids)
    if ctx is None or not models:
        return _plain(why, ids, reasons)
    rows = sorted(((f.max_completion or 0, f.id) for f in models), key=lambda r: (-r[0], r[1]))
    shown = ", ".join(f"{i} {limit:,}" for limit, i in rows[:EXAMPLES])
    return (
        f"{_have(ids)} a completion limit below max_tokens {ctx.wanted_tokens:,}: {shown}."
        f"{_fix(ids)}lower max_tokens to {rows[0][0]:,} or fewer ({rows[0][1]})."
    )


def _capability(why: Why, ids: list[str], reasons: list[str]) -> str:
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


def _price(why: Why, ids: list[str], reasons: list[str]) -> str:
    ctx, models = why.ctx, why.of(ids)
    if ctx is None or ctx.price_cap is None or not models:
        return _plain(why, ids, reasons)
    asked = ctx.request.max_cost_per_1k is not None
    source = "the request's" if asked else "the server's default, MODELYARD_MAX_COST_PER_1K"
    rows = sorted((_price_needed(ctx, f), f.id) for f in models)
    shown = ", ".join(f"{i} {dollars(need)}" for need, i in rows[:EXAMPLES])
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


def _provider(why: Why, ids: list[str], reasons: list[str]) -> str:
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


def _input(why: Why, ids: list[str], reasons: list[str]) -> str:
    inputs = sorted({r.removeprefix("does not take ").removesuffix(" input") for r in reasons})
    return (
        f"{_have(ids, 'do')} not take {' or '.join(inputs)} input{_listed(ids)}. "
        f"{_fix(ids).lstrip()}leave the {' and '.join(inputs)} out, or name a model that takes it."
    )


def _not_automatic(why: Why, ids: list[str], reasons: list[str]) -> str:
    return (
        f"{_names(ids)}: not chosen automatically (free variants, routers, models that output more than "
        "text); name one to use it."
    )


_LINES: dict[str, Callable[[Why, list[str], list[str]], str]] = {
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
