"""Selection: filter the catalog by the request's constraints, then rank what is left.

Deterministic for the same inputs: scores tie-break on the model id. Every excluded model gets a
reason, so `plan_route` can say why a model was not chosen.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from modelyard.routing.catalog import Catalog, CatalogEntry
from modelyard.routing.pricing import per_1k, prompt_token_bound, prompt_token_estimate, worst_case_cost
from modelyard.routing.request import CAPABILITIES, Capability, RouteRequest
from modelyard.routing.resolve import resolve_model, resolve_reference
from modelyard.routing.speed import SpeedBook

__all__ = ["Candidate", "Exclusion", "Plan", "SelectionDefaults", "select"]

_WEIGHTS = {"low": (0.2, 0.7), "medium": (0.45, 0.45), "high": (0.7, 0.2)}  # (quality, cost)
_UNKNOWN_SPEED = 0.3


@dataclass(frozen=True, kw_only=True)
class SelectionDefaults:
    """Settings that apply when a request does not say."""

    default_max_tokens: int = 4096
    max_cost_per_1k: Decimal | None = None
    quality: str = "medium"
    speed: str = "any"
    capabilities: Sequence[Capability] = ()
    fallback_models: Sequence[str] = ()


class Candidate:
    """A model that may serve the request, with what it would send and the most it can cost.

    `worst_case` and `reason` may be given as zero-argument callables, worked out when first read:
    a plan ranks hundreds of models, a request reads them for one or two.
    """

    __slots__ = ("_reason", "_worst_case", "entry", "max_tokens", "score")

    def __init__(
        self,
        entry: CatalogEntry,
        score: float,
        max_tokens: int,
        worst_case: Decimal | Callable[[], Decimal | None] | None,
        reason: str | Callable[[], str],
    ) -> None:
        self.entry, self.score, self.max_tokens = entry, score, max_tokens
        self._worst_case, self._reason = worst_case, reason

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def worst_case(self) -> Decimal | None:
        value = self._worst_case
        if callable(value):
            value = self._worst_case = value()
        return value

    @property
    def reason(self) -> str:
        value = self._reason
        if callable(value):
            value = self._reason = value()
        return value

    def __repr__(self) -> str:
        return f"Candidate({self.id!r}, score={self.score}, max_tokens={self.max_tokens})"


@dataclass(frozen=True, slots=True)
class Exclusion:
    model: str
    reason: str


@dataclass(kw_only=True)
class Plan:
    """Ranked candidates (auto selection) or the explicit chain, and why the others were left out."""

    candidates: list[Candidate]
    exclusions: list[Exclusion] = field(default_factory=list)
    required: set[str] = field(default_factory=set)
    prompt_tokens_bound: int = 0
    prompt_tokens_estimate: int = 0
    mode: str = "auto"


@dataclass(frozen=True, slots=True)
class _Facts:
    """What selection reads of one catalog entry, worked out once per catalog."""

    entry: CatalogEntry
    id: str
    is_router: bool
    is_free: bool
    text_out: bool
    capabilities: frozenset[str]
    author: str
    expiration: str | None
    dynamic: bool
    prompt_1k: Decimal
    completion_1k: Decimal
    max_completion: int | None
    context: int | None
    log_price: float
    """log10 of the blended USD per 1M tokens (+0.01), the cost score's scale."""


class _CatalogFacts:
    """Every entry's `_Facts`, in catalog (id) order, and the router bound of the catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.all = [_facts(entry) for entry in catalog.entries.values()]
        self.by_id = {f.id: f for f in self.all}
        priced = [f.entry.info.pricing for f in self.all if not f.dynamic]
        self.router_bound = (
            max((p.prompt for p in priced), default=Decimal(0)),
            max((p.completion for p in priced), default=Decimal(0)),
        )


# A Catalog is an immutable snapshot, so what is derived from it can live as long as it does.
_FACTS: weakref.WeakKeyDictionary[Catalog, _CatalogFacts] = weakref.WeakKeyDictionary()


def _facts_of(catalog: Catalog) -> _CatalogFacts:
    facts = _FACTS.get(catalog)
    if facts is None:
        facts = _FACTS[catalog] = _CatalogFacts(catalog)
    return facts


def _facts(entry: CatalogEntry) -> _Facts:
    info = entry.info
    caps, pricing = info.capabilities, info.pricing
    blended = max(0.0, float(pricing.prompt * 3 + pricing.completion) / 4 * 1e6)
    return _Facts(
        entry=entry,
        id=entry.id,
        is_router=info.is_router,
        is_free=entry.id.endswith(":free"),
        text_out="text" in info.architecture.output_modalities,
        capabilities=frozenset(c for c in CAPABILITIES if getattr(caps, c)),
        author=info.author.lower(),
        expiration=info.expiration_date,
        dynamic=pricing.is_dynamic,
        prompt_1k=per_1k(pricing.prompt),
        completion_1k=per_1k(pricing.completion),
        max_completion=caps.max_completion_tokens,
        context=caps.context_length,
        log_price=math.log10(blended + 0.01),
    )


@dataclass(frozen=True, slots=True)
class _Context:
    request: RouteRequest
    defaults: SelectionDefaults
    required: set[Capability]
    bound: int
    estimate: int
    images: int
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
    extras = (request.tools, request.response_format)
    facts = _facts_of(catalog)
    ctx = _Context(
        request=request,
        defaults=defaults,
        required=request.required_capabilities() | set(defaults.capabilities),
        bound=prompt_token_bound(request.messages, *extras),
        estimate=prompt_token_estimate(request.messages, *extras),
        images=request.image_count(),
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
    pool = facts.all if tier is None else [f for f in facts.all if f.entry.tier == tier]
    plan = _rank(ctx, pool, speed or SpeedBook(), auto=True)
    if tier is not None:
        plan.exclusions.append(Exclusion("*", f"only {tier}-tier models were considered"))
    plan.mode = f"tier:{tier}" if reference.kind == "tier" else "auto"
    return plan


def _explicit_chain(catalog: Catalog, facts: _CatalogFacts, ctx: _Context, first: CatalogEntry) -> Plan:
    """The named model, then `models`, then the configured fallbacks: in that order, filtered."""
    chain = [first] + [resolve_model(catalog, name) for name in ctx.request.models]
    chain += [e for name in ctx.defaults.fallback_models if (e := catalog.get(name)) is not None]
    unique = list({e.id: e for e in chain}.values())
    plan = _rank(ctx, [facts.by_id.get(e.id) or _facts(e) for e in unique], SpeedBook(), auto=False)
    plan.mode = "explicit"
    return plan


_Kept = tuple[_Facts, int, "Callable[[], Decimal | None] | Decimal | None"]


def _rank(ctx: _Context, pool: Sequence[_Facts], speed: SpeedBook, *, auto: bool) -> Plan:
    kept: list[_Kept] = []
    exclusions: list[Exclusion] = []
    for facts in pool:
        reason = _exclusion(ctx, facts, auto=auto)
        if reason is None:
            reason, max_tokens, worst = _cost_exclusion(ctx, facts)
            if reason is None:
                kept.append((facts, max_tokens, worst))
                continue
        exclusions.append(Exclusion(facts.id, reason))
    if auto:
        ranked = _scored(ctx, kept, speed)
    else:
        ranked = [Candidate(f.entry, 0.0, max_tokens, worst, "named in the chain") for f, max_tokens, worst in kept]
    return Plan(
        candidates=ranked,
        exclusions=exclusions,
        required=set(ctx.required),
        prompt_tokens_bound=ctx.bound,
        prompt_tokens_estimate=ctx.estimate,
    )


def _exclusion(ctx: _Context, facts: _Facts, *, auto: bool) -> str | None:
    """Why the entry cannot serve the request, or None. Checks run cheapest first."""
    if facts.id in ctx.open_breakers:
        return "circuit breaker open after repeated failures"
    if auto and facts.is_router:
        return "a router picks its own model; name it (model='openrouter/auto') to use it"
    if auto and facts.is_free:
        return "free variant (rate-limited to 20 requests/min); name it explicitly to use it"
    if not facts.text_out:
        return f"does not output text ({', '.join(facts.entry.info.architecture.output_modalities)})"
    if ctx.required and not ctx.required <= facts.capabilities:
        caps = facts.entry.info.capabilities
        if missing := sorted(c for c in ctx.required if not getattr(caps, c)):
            return f"lacks {', '.join(missing)}"
    if ctx.providers is not None and facts.author not in ctx.providers:
        return f"author {facts.entry.info.author} is not among {', '.join(ctx.request.provider)}"
    if facts.expiration and facts.expiration < ctx.today:
        return f"retired on {facts.expiration}"
    if ctx.price_cap is not None:
        return _price_exclusion(facts, ctx.price_cap)
    return None


def _price_exclusion(facts: _Facts, cap: Decimal) -> str | None:
    if facts.dynamic:
        return "price is only known after routing, so it cannot be held to max_cost_per_1k"
    prompt, completion = facts.prompt_1k, facts.completion_1k
    if prompt > cap or completion > cap:
        return (
            f"price ${prompt.normalize():f}/${completion.normalize():f} per 1K tokens "
            f"(prompt/completion) is above max_cost_per_1k ${cap.normalize():f}"
        )
    return None


def _cost_exclusion(
    ctx: _Context, facts: _Facts
) -> tuple[str | None, int, Callable[[], Decimal | None] | Decimal | None]:
    """Why the limits or the cost cap exclude the entry (or None), the max_tokens to send, and its
    worst case (or how to work it out).

    max_tokens is the request's, else the default capped by the model's own completion limit.
    """
    limit = facts.max_completion
    max_tokens = ctx.wanted_tokens
    if limit is not None:
        if ctx.request.max_tokens is None:
            max_tokens = min(max_tokens, limit)
        elif max_tokens > limit:
            return f"max_tokens {max_tokens} is above its completion limit {limit}", max_tokens, None
    context = facts.context
    if context is not None and ctx.estimate + max_tokens > context:
        return f"context {context} < ~{ctx.estimate} prompt + {max_tokens} max_tokens", max_tokens, None
    if ctx.cost_cap is None:  # nothing to check it against: worked out only if someone reads it
        return None, max_tokens, partial(_worst_case, ctx, facts.entry, max_tokens)
    worst = _worst_case(ctx, facts.entry, max_tokens)
    if worst is not None and worst > ctx.cost_cap:
        cap = ctx.cost_cap.normalize()
        return f"worst-case cost ${worst.normalize():f} is above the per-request cap ${cap:f}", max_tokens, None
    return None, max_tokens, worst


def _worst_case(ctx: _Context, entry: CatalogEntry, max_tokens: int) -> Decimal | None:
    pricing = entry.info.pricing
    if pricing.is_dynamic:
        # A router may pick any model: bound it by the dearest prices in the catalog.
        prompt, completion = ctx.router_bound
        return ctx.bound * prompt + max_tokens * completion
    return worst_case_cost(pricing, prompt_tokens=ctx.bound, max_tokens=max_tokens, images=ctx.images)


def _scored(ctx: _Context, kept: list[_Kept], speed: SpeedBook) -> list[Candidate]:
    if not kept:
        return []
    quality_pref = ctx.request.quality or ctx.defaults.quality
    fast = (ctx.request.speed or ctx.defaults.speed) == "fast"
    w_quality, w_cost = _WEIGHTS.get(quality_pref, _WEIGHTS["medium"])
    w_speed = 0.4 if fast else 0.1
    w_total = w_quality + w_cost + w_speed
    top_quality = max(f.entry.quality for f, _, _ in kept) or 1.0
    # The cost score is 1 for the cheapest, 0 for the dearest, on a log scale.
    low = min(f.log_price for f, _, _ in kept)
    span = max(f.log_price for f, _, _ in kept) - low
    speed_of = _speed_scale(speed, [f.id for f, _, _ in kept]) if speed.knows_any() else None
    scored = []
    for facts, max_tokens, worst in kept:
        entry = facts.entry
        q = entry.quality / top_quality
        k = 1.0 if span == 0 else 1.0 - (facts.log_price - low) / span
        s = _UNKNOWN_SPEED if speed_of is None else speed_of(facts.id)
        score = (w_quality * q + w_cost * k + w_speed * s) / w_total
        reason = partial(_score_reason, facts, score, (w_quality, w_cost, w_speed))
        scored.append(Candidate(entry, round(score, 6), max_tokens, worst, reason))
    # The pool is in id order (a catalog's order) and sort is stable: ties stay in id order.
    scored.sort(key=_score, reverse=True)
    return scored


def _score(candidate: Candidate) -> float:
    return candidate.score


def _score_reason(facts: _Facts, score: float, weights: tuple[float, float, float]) -> str:
    entry = facts.entry
    w_quality, w_cost, w_speed = weights
    return (
        f"{entry.tier} tier, quality {entry.quality:g} ({entry.quality_source}), "
        f"${facts.prompt_1k.normalize():f}/${facts.completion_1k.normalize():f} per 1K, score {score:.3f} "
        f"(weights quality {w_quality}, cost {w_cost}, speed {w_speed})"
    )


def _speed_scale(speed: SpeedBook, ids: list[str]) -> Callable[[str], float]:
    """Throughput relative to the fastest known; unknown speed scores 0.3, below any known fast model."""
    known = {i: s.throughput_tps for i in ids if (s := speed.get(i)) and s.throughput_tps}
    top = max(known.values(), default=0.0)

    def score(model: str) -> float:
        value = known.get(model)
        return _UNKNOWN_SPEED if value is None or top <= 0 else value / top

    return score
