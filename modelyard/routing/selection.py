"""Selection: filter the catalog by the request's constraints, then rank what is left.

Deterministic for the same inputs: scores tie-break on the model id. Every excluded model gets a
reason, so `plan_route` can say why a model was not chosen.

Automatic selection reads what it keeps per request shape (`shapes`): the prompt-independent checks
run once per shape, and a request only places its prompt against them and, under a cost cap, screens
the models against it in floats (`worst_case.Screen`), working out exactly only the worst cases too
close to the cap to tell.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from modelyard.errors import ModelNotFoundError
from modelyard.routing.catalog import Catalog, CatalogEntry
from modelyard.routing.catalog_facts import CatalogFacts, EntryFacts, entry_facts, facts_of
from modelyard.routing.filters import (
    BREAKER_OPEN,
    Context,
    Exclusion,
    SelectionDefaults,
    above_cap_reason,
    cost_exclusion,
    exclusion,
    prompt_exclusion,
    token_exclusion,
    worst_case,
)
from modelyard.routing.pricing import prompt_token_counts
from modelyard.routing.ranking import Candidate, Ranked, weights
from modelyard.routing.request import RouteRequest
from modelyard.routing.resolve import resolve_model, resolve_reference
from modelyard.routing.shapes import Positioned, Shape, View, ViewKey, position, shape_key
from modelyard.routing.speed import SpeedBook
from modelyard.routing.worst_case import float_cap

__all__ = ["BREAKER_OPEN", "TIER_QUALITY", "Candidate", "EmptyPlan", "Exclusion", "Plan", "SelectionDefaults", "select"]

log = logging.getLogger(__name__)
_UNRESOLVED_LOGGED: set[str] = set()
"""Configured fallback names already logged as matching no model (each is logged once)."""
TIER_QUALITY = {"economy": "low", "balanced": "medium", "premium": "high"}
"""The quality preference a tier implies when the request gives none (it wins over the server's default:
an agent asking for premium wants the strongest models of the tier, not its cheapest)."""


class Plan:
    """Ranked candidates (auto selection) or the explicit chain, and why the others were left out.

    `exclusions` may be given as a zero-argument callable, worked out when first read: a request reads
    why only when no model is left (or for `plan_route`), and an automatic plan's callable holds its own
    request, so its reasons state that request's prompt whatever its view has stated since.
    """

    __slots__ = (
        "_exclusions",
        "candidates",
        "mode",
        "price_cap",
        "prompt_tokens_bound",
        "prompt_tokens_estimate",
        "required",
    )

    def __init__(
        self,
        *,
        candidates: Sequence[Candidate],
        exclusions: list[Exclusion] | Callable[[], list[Exclusion]] | None = None,
        required: set[str] | None = None,
        prompt_tokens_bound: int = 0,
        prompt_tokens_estimate: int = 0,
        mode: str = "auto",
        price_cap: Decimal | None = None,
    ) -> None:
        self.candidates = candidates
        self._exclusions = [] if exclusions is None else exclusions
        self.required = set() if required is None else required
        self.prompt_tokens_bound = prompt_tokens_bound
        self.prompt_tokens_estimate = prompt_tokens_estimate
        self.mode = mode
        self.price_cap = price_cap
        """The max_cost_per_1k the candidates were selected under (the request's or the default), if any."""

    @property
    def exclusions(self) -> list[Exclusion]:
        value = self._exclusions
        if callable(value):
            value = self._exclusions = value()
        return value


class EmptyPlan(Plan):
    """A plan no model is left in. It keeps the request as the filters read it (`context`), so that
    `explain` can say why and what would let a model through: only this plan carries it, so a plan
    with candidates does no work for it."""

    __slots__ = ("context",)

    def __init__(self, context: Context, exclusions: list[Exclusion] | Callable[[], list[Exclusion]]) -> None:
        super().__init__(
            candidates=[],
            exclusions=exclusions,
            required=set(context.required),
            prompt_tokens_bound=context.bound,
            prompt_tokens_estimate=context.estimate,
            price_cap=context.price_cap,
        )
        self.context = context


def select(
    catalog: Catalog,
    request: RouteRequest,
    *,
    defaults: SelectionDefaults,
    open_breakers: frozenset[str] = frozenset(),
    speed: SpeedBook | None = None,
    cost_cap: Decimal | None = None,
    budget: str | None = None,
    now: float = 0.0,
) -> Plan:
    """Rank the models that can serve `request`; explain every exclusion.

    Args:
        cost_cap: the tightest per-request cap in USD (request `max_cost` and the per-request budget).
        budget: the daily and monthly budgets in force, named (`price_cap.period_budgets`): a model that
            lists no price cannot be held to them.

    Raises:
        ModelNotFoundError: `model` or a `models` entry names no model.
    """
    facts = facts_of(catalog)
    bound, estimate = prompt_token_counts(request.messages, request.tools, request.response_format)
    ctx = Context(
        request=request,
        defaults=defaults,
        required=request.required_capabilities() | set(defaults.capabilities),
        bound=bound,
        estimate=estimate,
        images=request.image_count(),
        inputs=request.required_inputs(),
        price_cap=request.max_cost_per_1k if request.max_cost_per_1k is not None else defaults.max_cost_per_1k,
        cost_cap=cost_cap,
        float_cap=None if cost_cap is None else float_cap(cost_cap),
        open_breakers=open_breakers,
        today=datetime.fromtimestamp(now, UTC).date().isoformat(),
        router_bound=facts.router_bound,
        providers=frozenset(p.lower() for p in request.provider) if request.provider else None,
        wanted_tokens=request.max_tokens or defaults.default_max_tokens,
        budget=budget,
    )
    reference = resolve_reference(catalog, request.model)
    if reference.kind == "model" and reference.entry is not None:
        return _explicit_chain(catalog, facts, ctx, reference.entry)
    if reference.kind == "auto" and request.models:  # `models` alone is the chain
        return _explicit_chain(catalog, facts, ctx, resolve_model(catalog, request.models[0]))
    tier = reference.tier or request.tier
    plan = _auto_plan(ctx, facts, tier, speed or SpeedBook())
    plan.mode = f"tier:{tier}" if reference.kind == "tier" else "auto"
    return plan


def _explicit_chain(catalog: Catalog, facts: CatalogFacts, ctx: Context, first: CatalogEntry) -> Plan:
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


def _chain_plan(ctx: Context, pool: Sequence[EntryFacts]) -> Plan:
    """An explicit chain: every check, in chain order, no scoring."""
    kept: list[Candidate] = []
    exclusions: list[Exclusion] = []
    for facts in pool:
        reason = exclusion(ctx, facts, auto=False)
        if reason is None:
            reason, max_tokens = token_exclusion(ctx, facts)
            if reason is None:
                reason, worst = prompt_exclusion(ctx, facts, max_tokens)
                if reason is None:
                    kept.append(Candidate(facts.entry, 0.0, max_tokens, worst, "named in the chain"))
                    continue
        exclusions.append(Exclusion(facts.id, reason))
    return _plan(ctx, kept, exclusions) if kept else EmptyPlan(ctx, exclusions)


def _plan(
    ctx: Context, candidates: Sequence[Candidate], exclusions: list[Exclusion] | Callable[[], list[Exclusion]]
) -> Plan:
    return Plan(
        candidates=candidates,
        exclusions=exclusions,
        required=set(ctx.required),
        prompt_tokens_bound=ctx.bound,
        prompt_tokens_estimate=ctx.estimate,
        price_cap=ctx.price_cap,
    )


def _auto_plan(ctx: Context, facts: CatalogFacts, tier: str | None, speed: SpeedBook) -> Plan:
    key = shape_key(ctx, tier)
    shape = facts.shapes.get(key)
    if not isinstance(shape, Shape):
        pool = facts.all if tier is None else [f for f in facts.all if f.entry.tier == tier]
        shape = facts.remember(key, Shape(ctx, pool))
    quality = ctx.request.quality or (ctx.defaults.quality if tier is None else TIER_QUALITY[tier])
    fast = (ctx.request.speed or ctx.defaults.speed) == "fast"
    view_key, view = shape.view(ctx)
    if ctx.cost_cap is not None:
        return _capped_plan(ctx, ctx.cost_cap, shape, (quality, fast, view_key), view, speed, tier)
    rows = shape.ranking((quality, fast, view_key, ()), view.kept, speed)
    stated = partial(_stated, view, ctx, (), tier)
    if not rows:
        return EmptyPlan(ctx, stated)
    return _plan(ctx, Ranked(rows, weights(quality, fast), partial(worst_case, ctx)), stated)


def _capped_plan(
    ctx: Context,
    cap: Decimal,
    shape: Shape,
    key: tuple[str, bool, ViewKey],
    view: View,
    speed: SpeedBook,
    tier: str | None,
) -> Plan:
    """The view of the prompt less the models whose worst case is above the per-request cap `cap`
    (or unknown): its ranking is kept per set of models the cap leaves out."""
    late, known = _above_cap(ctx, cap, shape, view)
    kept = view.kept
    if late:
        out = {index for index, _ in late}
        kept = [passed for passed in kept if passed[0] not in out]
    quality, fast, view_key = key
    rows = shape.ranking((quality, fast, view_key, tuple(index for index, _ in late)), kept, speed)
    stated = partial(_stated, view, ctx, late, tier)
    if not rows:
        return EmptyPlan(ctx, stated)
    return _plan(ctx, Ranked(rows, weights(quality, fast), partial(worst_case, ctx), known), stated)


def _stated(view: View, ctx: Context, late: Sequence[Positioned], tier: str | None) -> list[Exclusion]:
    """An automatic plan's exclusions as its own request (`ctx`) states them, in pool order, then the
    tier's note: worked out when first read."""
    stated = [exclusion for _, exclusion in view.positioned(ctx, late)]
    if tier is not None:
        stated.append(Exclusion("*", f"only {tier}-tier models were considered"))
    return stated


def _above_cap(
    ctx: Context, cap: Decimal, shape: Shape, view: View
) -> tuple[list[Positioned], dict[str, Decimal | None]]:
    """(the view's models the cap excludes, in pool order; the worst cases worked out of those it keeps).

    Only the models the float screen cannot place surely within the cap or surely above it have
    their worst case worked out here; the reasons of those surely above it are worked out when read.
    """
    screen, at = shape.screen()
    over, unsure = screen.split(ctx.float_cap, ctx.bound, ctx.images)
    known: dict[str, Decimal | None] = {}
    late: list[Positioned] = []
    for index in unsure:
        if index not in view.dropped:
            _, facts, max_tokens, _ = at[index]
            reason, worst = cost_exclusion(ctx, cap, facts, max_tokens)
            if reason is None:
                known[facts.id] = worst
            else:
                late.append((index, Exclusion(facts.id, reason)))
    for index in over:
        if index not in view.dropped:
            _, facts, max_tokens, _ = at[index]
            late.append((index, Exclusion(facts.id, partial(above_cap_reason, ctx, cap, facts, max_tokens))))
    late.sort(key=position)
    return late, known
