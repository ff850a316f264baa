"""Selection: filter the catalog by the request's constraints, then rank what is left.

Deterministic for the same inputs: scores tie-break on the model id. Every excluded model gets a
reason, so `plan_route` can say why a model was not chosen.

Speed: the checks that do not depend on the prompt (breakers, capabilities, input modalities,
authors, retirement, price cap at the base prices, max_tokens) give the same answer for every request
of the same shape, so their result is kept with the catalog per shape; a request then only looks up
how many context windows its prompt overflows (a binary search over the shape's rooms), under a price
cap whether its prompt is long enough for a model's long-prompt prices (only the few models that have
them, only past their lowest threshold), and, under a cost cap, each worst case. The ranking for each
such view is kept too while no speed is known (speed scores change as answers come in).
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from modelyard.errors import ModelNotFoundError
from modelyard.routing.catalog import Catalog, CatalogEntry
from modelyard.routing.catalog_facts import CatalogFacts, EntryFacts, entry_facts, facts_of
from modelyard.routing.pricing import prompt_token_counts, worst_case_cost
from modelyard.routing.ranking import Candidate, Ranked, Row, rank, weights
from modelyard.routing.request import Capability, RouteRequest
from modelyard.routing.resolve import resolve_model, resolve_reference
from modelyard.routing.speed import SpeedBook

__all__ = ["BREAKER_OPEN", "Candidate", "Exclusion", "Plan", "SelectionDefaults", "select"]

BREAKER_OPEN = "circuit breaker open after repeated failures"

log = logging.getLogger(__name__)
_UNRESOLVED_LOGGED: set[str] = set()
"""Configured fallback names already logged as matching no model (each is logged once)."""


@dataclass(frozen=True, kw_only=True)
class SelectionDefaults:
    """Settings that apply when a request does not say."""

    default_max_tokens: int = 4096
    max_cost_per_1k: Decimal | None = None
    quality: str = "medium"
    speed: str = "any"
    capabilities: Sequence[Capability] = ()
    fallback_models: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Exclusion:
    model: str
    reason: str


@dataclass(kw_only=True)
class Plan:
    """Ranked candidates (auto selection) or the explicit chain, and why the others were left out."""

    candidates: Sequence[Candidate]
    exclusions: list[Exclusion] = field(default_factory=list)
    required: set[str] = field(default_factory=set)
    prompt_tokens_bound: int = 0
    prompt_tokens_estimate: int = 0
    mode: str = "auto"


@dataclass(frozen=True, slots=True)
class _Context:
    request: RouteRequest
    defaults: SelectionDefaults
    required: set[Capability]
    bound: int
    estimate: int
    images: int
    inputs: frozenset[str]
    """Input modalities beyond text and images that the content parts need (audio, video)."""
    price_cap: Decimal | None
    cost_cap: Decimal | None
    open_breakers: frozenset[str]
    today: str
    router_bound: tuple[Decimal, Decimal]
    providers: frozenset[str] | None
    """The request's allowed authors, lower-cased (None: any)."""
    wanted_tokens: int
    """max_tokens asked for: the request's, else the default."""


def select(
    catalog: Catalog,
    request: RouteRequest,
    *,
    defaults: SelectionDefaults,
    open_breakers: frozenset[str] = frozenset(),
    speed: SpeedBook | None = None,
    cost_cap: Decimal | None = None,
    now: float = 0.0,
) -> Plan:
    """Rank the models that can serve `request`; explain every exclusion.

    Args:
        cost_cap: the tightest per-request cap in USD (request `max_cost` and the per-request budget).

    Raises:
        ModelNotFoundError: `model` or a `models` entry names no model.
    """
    facts = facts_of(catalog)
    bound, estimate = prompt_token_counts(request.messages, request.tools, request.response_format)
    ctx = _Context(
        request=request,
        defaults=defaults,
        required=request.required_capabilities() | set(defaults.capabilities),
        bound=bound,
        estimate=estimate,
        images=request.image_count(),
        inputs=request.required_inputs(),
        price_cap=request.max_cost_per_1k if request.max_cost_per_1k is not None else defaults.max_cost_per_1k,
        cost_cap=cost_cap,
        open_breakers=open_breakers,
        today=datetime.fromtimestamp(now, UTC).date().isoformat(),
        router_bound=facts.router_bound,
        providers=frozenset(p.lower() for p in request.provider) if request.provider else None,
        wanted_tokens=request.max_tokens or defaults.default_max_tokens,
    )
    reference = resolve_reference(catalog, request.model)
    if reference.kind == "model" and reference.entry is not None:
        return _explicit_chain(catalog, facts, ctx, reference.entry)
    if reference.kind == "auto" and request.models:  # `models` alone is the chain
        return _explicit_chain(catalog, facts, ctx, resolve_model(catalog, request.models[0]))
    tier = reference.tier or request.tier
    plan = _auto_plan(ctx, facts, tier, speed or SpeedBook())
    if tier is not None:
        plan.exclusions.append(Exclusion("*", f"only {tier}-tier models were considered"))
    plan.mode = f"tier:{tier}" if reference.kind == "tier" else "auto"
    return plan


def _explicit_chain(catalog: Catalog, facts: CatalogFacts, ctx: _Context, first: CatalogEntry) -> Plan:
    """The named model, then `models`, then the configured fallbacks: in that order, filtered."""
    chain = [first] + [resolve_model(catalog, name) for name in ctx.request.models]
    if ctx.defaults.fallback_models:
        chain += _fallbacks(catalog, facts, tuple(ctx.defaults.fallback_models))
    # `X:floor` then `X` are two ways to send X: both stay. A variant's facts are its own (they carry it).
    unique = list({e.wire_id: e for e in chain}.values())
    plan = _chain_plan(ctx, [entry_facts(e) if e.variant else facts.by_id.get(e.id) or entry_facts(e) for e in unique])
    plan.mode = "explicit"
    return plan


def _fallbacks(catalog: Catalog, facts: CatalogFacts, names: tuple[str, ...]) -> list[CatalogEntry]:
    """The configured fallback models, each resolved like any model reference (a short name, a
    canonical slug...), worked out once per catalog. A name that resolves to no model (unknown or
    ambiguous) is left out, and logged the first time."""
    key = ("fallbacks", names)
    found = facts.shapes.get(key)
    if isinstance(found, list):
        return found
    entries = []
    for name in names:
        try:
            entries.append(resolve_model(catalog, name))
        except ModelNotFoundError as exc:
            if name not in _UNRESOLVED_LOGGED:
                _UNRESOLVED_LOGGED.add(name)
                log.warning("configured fallback model left out of every chain: %s", exc)
    result: list[CatalogEntry] = facts.remember(key, entries)
    return result


def _chain_plan(ctx: _Context, pool: Sequence[EntryFacts]) -> Plan:
    """An explicit chain: every check, in chain order, no scoring."""
    kept: list[Candidate] = []
    exclusions: list[Exclusion] = []
    for facts in pool:
        reason = _exclusion(ctx, facts, auto=False)
        if reason is None:
            reason, max_tokens = _token_exclusion(ctx, facts)
            if reason is None:
                reason, worst = _prompt_exclusion(ctx, facts, max_tokens)
                if reason is None:
                    kept.append(Candidate(facts.entry, 0.0, max_tokens, worst, "named in the chain"))
                    continue
        exclusions.append(Exclusion(facts.id, reason))
    return _plan(ctx, kept, exclusions)


def _plan(ctx: _Context, candidates: Sequence[Candidate], exclusions: list[Exclusion]) -> Plan:
    return Plan(
        candidates=candidates,
        exclusions=exclusions,
        required=set(ctx.required),
        prompt_tokens_bound=ctx.bound,
        prompt_tokens_estimate=ctx.estimate,
    )


class _Shape:
    """What the prompt-independent checks make of one pool for one request shape: the entries that
    pass (with their pool position, max_tokens and the largest prompt estimate that fits their
    context), the exclusions (with their pool position), and the views and rankings worked out so far.

    A prompt excludes exactly the passed entries whose room is below its estimate: a prefix of
    `by_room`, so how many it excludes names the view (and, with the preferences, the ranking). Under
    a price cap a long prompt may also exclude some of the `stepped` entries (those with long-prompt
    prices): which, with why, is part of the view's name.
    """

    __slots__ = ("by_room", "excluded", "first_step", "passed", "rankings", "rooms", "stepped", "views")

    def __init__(self, ctx: _Context, pool: Sequence[EntryFacts]) -> None:
        self.passed: list[_Passed] = []
        self.excluded: list[tuple[int, Exclusion]] = []
        for index, facts in enumerate(pool):
            reason = _exclusion(ctx, facts, auto=True)
            if reason is None:
                reason, max_tokens = _token_exclusion(ctx, facts)
                if reason is None:
                    room = math.inf if facts.context is None else facts.context - max_tokens
                    self.passed.append((index, facts, max_tokens, room))
                    continue
            self.excluded.append((index, Exclusion(facts.id, reason)))
        self.by_room = sorted(self.passed, key=_room)
        self.rooms = [room for *_, room in self.by_room]
        self.stepped = [p for p in self.passed if p[1].price_steps] if ctx.price_cap is not None else []
        self.first_step = min((p[1].price_steps[0][0] for p in self.stepped), default=0)
        self.views: dict[_ViewKey, tuple[list[_Passed], list[Exclusion]]] = {}
        self.rankings: dict[tuple[str, bool, _ViewKey], list[Row]] = {}

    def view(self, ctx: _Context) -> tuple[_ViewKey, list[_Passed], list[Exclusion]]:
        """(the view's name: how many contexts the prompt overflows and the long-prompt price exclusions,
        the entries kept, every exclusion in pool order)."""
        overflow = bisect.bisect_left(self.rooms, ctx.estimate)
        dear: tuple[tuple[int, Exclusion], ...] = ()
        if self.stepped and ctx.bound > self.first_step:  # one whose context it overflows keeps that reason
            dear = tuple(
                (i, Exclusion(f.id, reason))
                for i, f, _, room in self.stepped
                if room >= ctx.estimate and (reason := _long_prompt_price_exclusion(ctx, f)) is not None
            )
        key = (overflow, dear)
        view = self.views.get(key)
        if view is None:
            late = [(i, Exclusion(f.id, _context_reason(ctx, f, n))) for i, f, n, _ in self.by_room[:overflow]]
            late += dear
            dropped = {i for i, _ in late}
            kept = [p for p in self.passed if p[0] not in dropped]
            view = self.views[key] = (kept, [e for _, e in sorted(self.excluded + late, key=_position)])
        return key, *view


_Passed = tuple[int, EntryFacts, int, float]
"""(pool position, facts, max_tokens to send, room: the largest prompt estimate its context holds)."""

_ViewKey = tuple[int, tuple[tuple[int, Exclusion], ...]]
"""(how many contexts the prompt overflows, the long-prompt price exclusions with their pool positions)."""


def _room(passed: _Passed) -> float:
    return passed[3]


def _shape_key(ctx: _Context, tier: str | None) -> tuple[object, ...]:
    """Everything the prompt-independent checks read."""
    request = ctx.request
    return (
        tier,
        ctx.open_breakers,
        frozenset(ctx.required),
        ctx.inputs,
        tuple(request.provider),
        ctx.today,
        ctx.price_cap,
        ctx.wanted_tokens,
        request.max_tokens is None,
    )


def _auto_plan(ctx: _Context, facts: CatalogFacts, tier: str | None, speed: SpeedBook) -> Plan:
    key = _shape_key(ctx, tier)
    shape = facts.shapes.get(key)
    if not isinstance(shape, _Shape):
        pool = facts.all if tier is None else [f for f in facts.all if f.entry.tier == tier]
        shape = facts.remember(key, _Shape(ctx, pool))
    quality = ctx.request.quality or ctx.defaults.quality
    fast = (ctx.request.speed or ctx.defaults.speed) == "fast"
    if ctx.cost_cap is not None:  # every worst case is checked against the cap: no shortcut
        return _capped_plan(ctx, shape, quality, fast, speed)
    view, kept, exclusions = shape.view(ctx)
    ranking_key = (quality, fast, view)
    # Speed scores change as answers come in, so a ranking that reads them is never kept.
    rows = None if speed.knows_any() else shape.rankings.get(ranking_key)
    if rows is None:
        rows = rank([(f, max_tokens) for _, f, max_tokens, _ in kept], quality=quality, fast=fast, speed=speed)
        if not speed.knows_any():
            shape.rankings[ranking_key] = rows
    candidates = Ranked(rows, weights(quality, fast), partial(_worst_case, ctx)) if rows else []
    return _plan(ctx, candidates, list(exclusions))


def _capped_plan(ctx: _Context, shape: _Shape, quality: str, fast: bool, speed: SpeedBook) -> Plan:
    known: dict[str, Decimal | None] = {}
    kept: list[tuple[EntryFacts, int]] = []
    late: list[tuple[int, Exclusion]] = []
    for index, facts, max_tokens, _ in shape.passed:
        reason, worst = _prompt_exclusion(ctx, facts, max_tokens)
        if reason is None:
            kept.append((facts, max_tokens))
            if not callable(worst):
                known[facts.id] = worst
        else:
            late.append((index, Exclusion(facts.id, reason)))
    rows = rank(kept, quality=quality, fast=fast, speed=speed)
    excluded = sorted(shape.excluded + late, key=_position)
    candidates = Ranked(rows, weights(quality, fast), partial(_worst_case, ctx), known) if rows else []
    return _plan(ctx, candidates, [exclusion for _, exclusion in excluded])


def _position(item: tuple[int, Exclusion]) -> int:
    return item[0]


def _exclusion(ctx: _Context, facts: EntryFacts, *, auto: bool) -> str | None:
    """Why the entry cannot serve the request, or None. Checks run cheapest first."""
    if facts.id in ctx.open_breakers:
        return BREAKER_OPEN
    if auto and facts.is_router:
        return "a router picks its own model; name it (model='openrouter/auto') to use it"
    if auto and facts.is_free:
        return "free variant (rate-limited to 20 requests/min); name it explicitly to use it"
    if not facts.text_only:
        outputs = ", ".join(facts.entry.info.architecture.output_modalities)
        if not facts.text_out:
            return f"does not output text ({outputs})"
        if auto:  # an audio or image generator answers a chat with a song or a picture, billed as such
            return f"outputs {outputs}, not text alone; name it explicitly to use it"
    if ctx.required and not ctx.required <= facts.capabilities:
        caps = facts.entry.info.capabilities
        if missing := sorted(c for c in ctx.required if not getattr(caps, c)):
            return f"lacks {', '.join(missing)}"
    if ctx.inputs and not ctx.inputs <= facts.inputs:
        return f"does not take {' or '.join(sorted(ctx.inputs - facts.inputs))} input"
    if ctx.providers is not None and facts.author not in ctx.providers:
        return f"author {facts.entry.info.author} is not among {', '.join(ctx.request.provider)}"
    if facts.expiration and facts.expiration < ctx.today:
        return f"retired on {facts.expiration}"
    if ctx.price_cap is not None:
        return _price_exclusion(facts, ctx.price_cap)
    return None


_UNPRICED = "lists no price although it is not a free variant: what it charges is unknown"


def _price_exclusion(facts: EntryFacts, cap: Decimal) -> str | None:
    """Why the base prices exclude the model under `max_cost_per_1k`, or None."""
    if facts.dynamic:
        return "price is only known after routing, so it cannot be held to max_cost_per_1k"
    if facts.unpriced:
        return f"{_UNPRICED}, so it cannot be held to max_cost_per_1k"
    prompt, completion = facts.prompt_1k, facts.completion_1k
    if prompt > cap or completion > cap:
        return (
            f"price ${prompt.normalize():f}/${completion.normalize():f} per 1K tokens "
            f"(prompt/completion) is above max_cost_per_1k ${cap.normalize():f}"
        )
    return None


def _long_prompt_price_exclusion(ctx: _Context, facts: EntryFacts) -> str | None:
    """Why the prices the model charges for a prompt as long as this one's bound (its dearest
    `min_prompt_tokens` overrides passed) exceed `max_cost_per_1k`, or None. For the models with such
    prices only (`facts.price_steps`), under a price cap."""
    cap, steps = ctx.price_cap, facts.price_steps
    if cap is None or not steps or ctx.bound <= steps[0][0]:
        return None
    threshold, prompt, completion = next(step for step in reversed(steps) if ctx.bound > step[0])
    if prompt > cap or completion > cap:
        return (
            f"price ${prompt.normalize():f}/${completion.normalize():f} per 1K tokens (prompt/completion) "
            f"for a prompt of over {threshold} tokens (this one: up to {ctx.bound}) "
            f"is above max_cost_per_1k ${cap.normalize():f}"
        )
    return None


def _token_exclusion(ctx: _Context, facts: EntryFacts) -> tuple[str | None, int]:
    """Why the model's completion limit excludes it (or None), and the max_tokens to send it: the
    request's, else the default capped by that limit."""
    limit = facts.max_completion
    max_tokens = ctx.wanted_tokens
    if limit is not None:
        if ctx.request.max_tokens is None:
            max_tokens = min(max_tokens, limit)
        elif max_tokens > limit:
            return f"max_tokens {max_tokens} is above its completion limit {limit}", max_tokens
    return None, max_tokens


def _prompt_exclusion(
    ctx: _Context, facts: EntryFacts, max_tokens: int
) -> tuple[str | None, Callable[[], Decimal | None] | Decimal | None]:
    """Why this prompt excludes the model (context window, long-prompt prices, cost cap) or None, and
    its worst case (or how to work it out, when no cap needs it now)."""
    if facts.context is not None and ctx.estimate + max_tokens > facts.context:
        return _context_reason(ctx, facts, max_tokens), None
    if facts.price_steps and (reason := _long_prompt_price_exclusion(ctx, facts)) is not None:
        return reason, None
    if ctx.cost_cap is None:  # nothing to check it against: worked out only if someone reads it
        return None, partial(_worst_case, ctx, facts.entry, max_tokens)
    if facts.unpriced:
        return f"{_UNPRICED}, so it cannot be held to the per-request cap", None
    worst = _worst_case(ctx, facts.entry, max_tokens)
    if worst is not None and worst > ctx.cost_cap:
        cap = ctx.cost_cap.normalize()
        return f"worst-case cost ${worst.normalize():f} is above the per-request cap ${cap:f}", None
    return None, worst


def _context_reason(ctx: _Context, facts: EntryFacts, max_tokens: int) -> str:
    return f"context {facts.context} < ~{ctx.estimate} prompt + {max_tokens} max_tokens"


def _worst_case(ctx: _Context, entry: CatalogEntry, max_tokens: int) -> Decimal | None:
    pricing = entry.info.pricing
    if pricing.is_dynamic:
        # A router may pick any model: bound it by the dearest prices in the catalog.
        prompt, completion = ctx.router_bound
        return ctx.bound * prompt + max_tokens * completion
    return worst_case_cost(pricing, prompt_tokens=ctx.bound, max_tokens=max_tokens, images=ctx.images)
