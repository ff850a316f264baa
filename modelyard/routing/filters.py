"""Selection's filters: one request as they read it (`Context`), and each check that leaves a model
out, with the reason `plan_route` shows.

Checks run cheapest first. The prompt-independent ones (`exclusion`, `token_exclusion`) give the same
answer for every request of the same shape; `prompt_exclusion` and `cost_exclusion` read the prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial

from modelyard.error_text import dollars
from modelyard.routing.catalog_facts import EntryFacts, RouterBound
from modelyard.routing.request import Capability, RouteRequest

__all__ = [
    "BREAKER_OPEN",
    "UNPRICED",
    "Context",
    "Exclusion",
    "SelectionDefaults",
    "above_cap_reason",
    "context_reason",
    "cost_exclusion",
    "exclusion",
    "long_prompt_price_exclusion",
    "prompt_exclusion",
    "token_exclusion",
    "worst_case",
]

BREAKER_OPEN = "circuit breaker open after repeated failures"


@dataclass(frozen=True, kw_only=True)
class SelectionDefaults:
    """Settings that apply when a request does not say."""

    default_max_tokens: int = 4096
    max_cost_per_1k: Decimal | None = None
    quality: str = "medium"
    speed: str = "any"
    capabilities: Sequence[Capability] = ()
    fallback_models: Sequence[str] = ()


class Exclusion:
    """A model left out of a plan, and why.

    `reason` may be given as a zero-argument callable, worked out when first read: under a tight cost
    cap a plan excludes hundreds of models, and a request reads why only when none is left (or for
    `plan_route`).
    """

    __slots__ = ("_reason", "model")

    def __init__(self, model: str, reason: str | Callable[[], str]) -> None:
        self.model, self._reason = model, reason

    @property
    def reason(self) -> str:
        value = self._reason
        if callable(value):
            value = self._reason = value()
        return value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Exclusion):
            return (self.model, self.reason) == (other.model, other.reason)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.model, self.reason))

    def __repr__(self) -> str:
        return f"Exclusion(model={self.model!r}, reason={self.reason!r})"


@dataclass(frozen=True, slots=True)
class Context:
    """One request as the filters read it."""

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
    float_cap: float | None
    """`cost_cap` for `Screen.split` (None: no cap, or out of the float test's range)."""
    open_breakers: frozenset[str]
    today: str
    router_bound: RouterBound
    providers: frozenset[str] | None
    """The request's allowed authors, lower-cased (None: any)."""
    wanted_tokens: int
    """max_tokens asked for: the request's, else the default."""
    budget: str | None = None
    """The daily and monthly budgets in force, named (`price_cap.period_budgets`); None: neither."""


def exclusion(ctx: Context, facts: EntryFacts, *, auto: bool) -> str | None:
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
    if facts.unpriced and ctx.budget is not None:  # its worst case would be $0, no bound on what they count
        return f"{UNPRICED}, so it cannot be held to {ctx.budget}"
    return None


UNPRICED = "lists no price although it is not a free variant: what it charges is unknown"


def _price_exclusion(facts: EntryFacts, cap: Decimal) -> str | None:
    """Why the base prices exclude the model under `max_cost_per_1k`, or None."""
    if facts.dynamic:
        return "price is only known after routing, so it cannot be held to max_cost_per_1k"
    if facts.unpriced:
        return f"{UNPRICED}, so it cannot be held to max_cost_per_1k"
    prompt, completion = facts.prompt_1k, facts.completion_1k
    if prompt > cap or completion > cap:
        return (
            f"price ${prompt.normalize():f}/${completion.normalize():f} per 1K tokens "
            f"(prompt/completion) is above max_cost_per_1k ${cap.normalize():f}"
        )
    return None


def long_prompt_price_exclusion(ctx: Context, facts: EntryFacts) -> str | None:
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


def token_exclusion(ctx: Context, facts: EntryFacts) -> tuple[str | None, int]:
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


def prompt_exclusion(ctx: Context, facts: EntryFacts, max_tokens: int) -> tuple[str | None, _Worst]:
    """Why this prompt excludes the model (context window, long-prompt prices, cost cap) or None, and
    its worst case (or how to work it out, when no cap needs it now)."""
    if facts.context is not None and ctx.estimate + max_tokens > facts.context:
        return context_reason(ctx, facts, max_tokens), None
    if facts.price_steps and (reason := long_prompt_price_exclusion(ctx, facts)) is not None:
        return reason, None
    if ctx.cost_cap is None:  # nothing to check it against: worked out only if someone reads it
        return None, partial(worst_case, ctx, facts, max_tokens)
    return cost_exclusion(ctx, ctx.cost_cap, facts, max_tokens)


_Worst = Callable[[], Decimal | None] | Decimal | None
"""A worst case, or how to work it out when it is read."""


def cost_exclusion(ctx: Context, cap: Decimal, facts: EntryFacts, max_tokens: int) -> tuple[str | None, Decimal | None]:
    """Why the per-request cap `cap` excludes the model or None, and its worst case."""
    if facts.unpriced:
        return f"{UNPRICED}, so it cannot be held to the per-request cap", None
    worst = worst_case(ctx, facts, max_tokens)
    if worst > cap:
        return _above_cap(worst, cap), None
    return None, worst


def above_cap_reason(ctx: Context, cap: Decimal, facts: EntryFacts, max_tokens: int) -> str:
    """`cost_exclusion`'s reason for a priced model known to be above the cap (from the float screen)."""
    return _above_cap(worst_case(ctx, facts, max_tokens), cap)


def _above_cap(worst: Decimal, cap: Decimal) -> str:
    return f"worst-case cost {dollars(worst)} is above the per-request cap {dollars(cap)}"


def context_reason(ctx: Context, facts: EntryFacts, max_tokens: int) -> str:
    """Why the model's context cannot hold the prompt and max_tokens."""
    return f"context {facts.context} < ~{ctx.estimate} prompt + {max_tokens} max_tokens"


def worst_case(ctx: Context, facts: EntryFacts, max_tokens: int) -> Decimal:
    """The most the request can cost on the model (`pricing.worst_case_cost`) with `max_tokens`."""
    if facts.worst is None:
        # A router may pick any model: bound it by the dearest prices in the catalog.
        prompt, completion, request, image = ctx.router_bound.held
        return ctx.bound * prompt + max_tokens * completion + request + ctx.images * image
    return facts.worst.cost(ctx.bound, max_tokens, ctx.images)
