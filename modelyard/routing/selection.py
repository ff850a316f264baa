"""Selection: filter the catalog by the request's constraints, then rank what is left.

Deterministic for the same inputs: scores tie-break on the model id. Every excluded model gets a
reason, so `plan_route` can say why a model was not chosen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from modelyard.routing.catalog import Catalog, CatalogEntry
from modelyard.routing.pricing import per_1k, prompt_token_bound, prompt_token_estimate, worst_case_cost
from modelyard.routing.request import Capability, RouteRequest
from modelyard.routing.resolve import resolve_model, resolve_reference
from modelyard.routing.speed import SpeedBook

__all__ = ["Candidate", "Exclusion", "Plan", "SelectionDefaults", "select"]

_WEIGHTS = {"low": (0.2, 0.7), "medium": (0.45, 0.45), "high": (0.7, 0.2)}  # (quality, cost)


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
class Candidate:
    """A model that may serve the request, with what it would send and the most it can cost."""

    entry: CatalogEntry
    score: float
    max_tokens: int
    worst_case: Decimal | None
    reason: str

    @property
    def id(self) -> str:
        return self.entry.id


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
        router_bound=_max_prices(catalog),
    )
    reference = resolve_reference(catalog, request.model)
    if reference.kind == "model" and reference.entry is not None:
        return _explicit_chain(catalog, ctx, reference.entry)
    if reference.kind == "auto" and request.models:  # `models` alone is the chain
        return _explicit_chain(catalog, ctx, resolve_model(catalog, request.models[0]))
    tier = reference.tier or request.tier
    pool = [e for e in catalog.entries.values() if tier is None or e.tier == tier]
    plan = _rank(ctx, pool, speed or SpeedBook(), auto=True)
    if tier is not None:
        plan.exclusions.append(Exclusion("*", f"only {tier}-tier models were considered"))
    plan.mode = f"tier:{tier}" if reference.kind == "tier" else "auto"
    return plan


def _explicit_chain(catalog: Catalog, ctx: _Context, first: CatalogEntry) -> Plan:
    """The named model, then `models`, then the configured fallbacks: in that order, filtered."""
    chain = [first] + [resolve_model(catalog, name) for name in ctx.request.models]
    chain += [e for name in ctx.defaults.fallback_models if (e := catalog.get(name)) is not None]
    unique = list({e.id: e for e in chain}.values())
    plan = _rank(ctx, unique, SpeedBook(), auto=False)
    plan.mode = "explicit"
    return plan


def _rank(ctx: _Context, pool: Sequence[CatalogEntry], speed: SpeedBook, *, auto: bool) -> Plan:
    kept: list[Candidate] = []
    exclusions: list[Exclusion] = []
    for entry in pool:
        reason = _exclusion(ctx, entry, auto=auto)
        if reason is None:
            max_tokens = _max_tokens(ctx, entry)
            reason = _cost_exclusion(ctx, entry, max_tokens)
            if reason is None:
                kept.append(Candidate(entry, 0.0, max_tokens, _worst_case(ctx, entry, max_tokens), ""))
                continue
        exclusions.append(Exclusion(entry.id, reason))
    ranked = _scored(ctx, kept, speed) if auto else [_explained(c, "named in the chain") for c in kept]
    return Plan(
        candidates=ranked,
        exclusions=exclusions,
        required=set(ctx.required),
        prompt_tokens_bound=ctx.bound,
        prompt_tokens_estimate=ctx.estimate,
    )


def _exclusion(ctx: _Context, entry: CatalogEntry, *, auto: bool) -> str | None:
    """Why `entry` cannot serve the request, or None. Checks run cheapest first."""
    info, caps = entry.info, entry.info.capabilities
    if entry.id in ctx.open_breakers:
        return "circuit breaker open after repeated failures"
    if auto and info.is_router:
        return "a router picks its own model; name it (model='openrouter/auto') to use it"
    if auto and entry.id.endswith(":free"):
        return "free variant (rate-limited to 20 requests/min); name it explicitly to use it"
    if "text" not in info.architecture.output_modalities:
        return f"does not output text ({', '.join(info.architecture.output_modalities)})"
    if missing := sorted(c for c in ctx.required if not getattr(caps, c)):
        return f"lacks {', '.join(missing)}"
    if ctx.request.provider and info.author.lower() not in {p.lower() for p in ctx.request.provider}:
        return f"author {info.author} is not among {', '.join(ctx.request.provider)}"
    if info.expiration_date and info.expiration_date < ctx.today:
        return f"retired on {info.expiration_date}"
    if ctx.price_cap is not None:
        return _price_exclusion(entry, ctx.price_cap)
    return None


def _price_exclusion(entry: CatalogEntry, cap: Decimal) -> str | None:
    pricing = entry.info.pricing
    if pricing.is_dynamic:
        return "price is only known after routing, so it cannot be held to max_cost_per_1k"
    prompt, completion = per_1k(pricing.prompt), per_1k(pricing.completion)
    if prompt > cap or completion > cap:
        return (
            f"price ${prompt.normalize():f}/${completion.normalize():f} per 1K tokens "
            f"(prompt/completion) is above max_cost_per_1k ${cap.normalize():f}"
        )
    return None


def _max_tokens(ctx: _Context, entry: CatalogEntry) -> int:
    """The max_tokens to send: the request's, else the default, capped by the model's own limit."""
    wanted = ctx.request.max_tokens or ctx.defaults.default_max_tokens
    limit = entry.info.capabilities.max_completion_tokens
    if ctx.request.max_tokens is None and limit is not None:
        return min(wanted, limit)
    return wanted


def _cost_exclusion(ctx: _Context, entry: CatalogEntry, max_tokens: int) -> str | None:
    caps = entry.info.capabilities
    if caps.max_completion_tokens is not None and max_tokens > caps.max_completion_tokens:
        return f"max_tokens {max_tokens} is above its completion limit {caps.max_completion_tokens}"
    if caps.context_length is not None and ctx.estimate + max_tokens > caps.context_length:
        return f"context {caps.context_length} < ~{ctx.estimate} prompt + {max_tokens} max_tokens"
    worst = _worst_case(ctx, entry, max_tokens)
    if ctx.cost_cap is not None and worst is not None and worst > ctx.cost_cap:
        return f"worst-case cost ${worst.normalize():f} is above the per-request cap ${ctx.cost_cap.normalize():f}"
    return None


def _worst_case(ctx: _Context, entry: CatalogEntry, max_tokens: int) -> Decimal | None:
    pricing = entry.info.pricing
    if pricing.is_dynamic:
        # A router may pick any model: bound it by the dearest prices in the catalog.
        prompt, completion = ctx.router_bound
        return ctx.bound * prompt + max_tokens * completion
    return worst_case_cost(pricing, prompt_tokens=ctx.bound, max_tokens=max_tokens, images=ctx.images)


def _max_prices(catalog: Catalog) -> tuple[Decimal, Decimal]:
    priced = [e.info.pricing for e in catalog.entries.values() if not e.info.pricing.is_dynamic]
    return (
        max((p.prompt for p in priced), default=Decimal(0)),
        max((p.completion for p in priced), default=Decimal(0)),
    )


def _scored(ctx: _Context, kept: list[Candidate], speed: SpeedBook) -> list[Candidate]:
    if not kept:
        return []
    quality_pref = ctx.request.quality or ctx.defaults.quality
    fast = (ctx.request.speed or ctx.defaults.speed) == "fast"
    w_quality, w_cost = _WEIGHTS.get(quality_pref, _WEIGHTS["medium"])
    w_speed = 0.4 if fast else 0.1
    top_quality = max(c.entry.quality for c in kept) or 1.0
    cost_of = _cost_scale([_blended(c) for c in kept])
    speed_of = _speed_scale(speed, [c.id for c in kept])
    scored = []
    for c in kept:
        q, k, s = c.entry.quality / top_quality, cost_of(_blended(c)), speed_of(c.id)
        score = (w_quality * q + w_cost * k + w_speed * s) / (w_quality + w_cost + w_speed)
        reason = (
            f"{c.entry.tier} tier, quality {c.entry.quality:g} ({c.entry.quality_source}), "
            f"${per_1k(c.entry.info.pricing.prompt).normalize():f}/"
            f"${per_1k(c.entry.info.pricing.completion).normalize():f} per 1K, score {score:.3f} "
            f"(weights quality {w_quality}, cost {w_cost}, speed {w_speed})"
        )
        scored.append(Candidate(c.entry, round(score, 6), c.max_tokens, c.worst_case, reason))
    return sorted(scored, key=lambda c: (-c.score, c.id))


def _explained(candidate: Candidate, reason: str) -> Candidate:
    return Candidate(candidate.entry, candidate.score, candidate.max_tokens, candidate.worst_case, reason)


def _blended(candidate: Candidate) -> float:
    """USD per 1M tokens at a typical 3:1 prompt:completion mix."""
    pricing = candidate.entry.info.pricing
    return max(0.0, float(pricing.prompt * 3 + pricing.completion) / 4 * 1e6)


def _cost_scale(prices: list[float]) -> Callable[[float], float]:
    """1 for the cheapest, 0 for the dearest, on a log scale."""
    low, high = math.log10(min(prices) + 0.01), math.log10(max(prices) + 0.01)
    span = high - low
    return lambda price: 1.0 if span == 0 else 1.0 - (math.log10(price + 0.01) - low) / span


def _speed_scale(speed: SpeedBook, ids: list[str]) -> Callable[[str], float]:
    """Throughput relative to the fastest known; unknown speed scores 0.3, below any known fast model."""
    known = {i: s.throughput_tps for i in ids if (s := speed.get(i)) and s.throughput_tps}
    top = max(known.values(), default=0.0)

    def score(model: str) -> float:
        value = known.get(model)
        return 0.3 if value is None or top <= 0 else value / top

    return score
