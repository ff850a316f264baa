"""What selection reads of each catalog entry, worked out once per catalog and kept beside it.

A `Catalog` is an immutable snapshot, so facts derived from it (capability sets, input and output
modalities, prices per 1K and the long-prompt prices above them, the prices a worst case reads per
prompt-size class, log prices, the dearest prices a router may charge) and the filter results of
recurring request shapes live exactly as long as the catalog does.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from modelyard.openrouter.catalog_schemas import Pricing
from modelyard.routing.catalog import Catalog, CatalogEntry
from modelyard.routing.pricing import WorstPrices, _dearest, listed_prices, per_1k, prompt_thresholds, worst_prices
from modelyard.routing.request import CAPABILITIES
from modelyard.routing.worst_case import WorstCase

__all__ = ["CatalogFacts", "EntryFacts", "RouterBound", "facts_of"]

_SHAPES_KEPT = 256
_PAST_EVERY_THRESHOLD = 10**15
"""A prompt size past every `min_prompt_tokens` override: the prices for it are a model's dearest."""


@dataclass(frozen=True, slots=True)
class RouterBound:
    """The dearest prices in the catalog: a router (`openrouter/auto`, listed at `-1`) may pick any model, so
    its worst case is held at these and its `provider.max_price` capped at them.

    Attributes:
        held: per prompt token, per completion token, per request and per image, as a worst case charges
            them (cache-write, reasoning and long-prompt prices included), each the catalog's dearest.
        listed: the listed prompt, completion, request and image prices (long-prompt ones included), each
            the catalog's dearest: what `max_price` caps.
    """

    held: WorstPrices
    listed: WorstPrices

    @classmethod
    def of(cls, prices: list[Pricing]) -> RouterBound:
        """The bound of a catalog whose fixed prices are `prices`."""
        held = [worst_prices(p, _PAST_EVERY_THRESHOLD) for p in prices]
        listed = [listed_prices(p, _PAST_EVERY_THRESHOLD) for p in prices]
        return cls(_dearest_of(held), _dearest_of(listed))


def _dearest_of(prices: list[WorstPrices]) -> WorstPrices:
    zero = Decimal(0)
    prompt, completion, request, image = (max((p[i] for p in prices), default=zero) for i in range(4))
    return prompt, completion, request, image


@dataclass(frozen=True, slots=True)
class EntryFacts:
    """What selection reads of one catalog entry."""

    entry: CatalogEntry
    id: str
    is_router: bool
    is_free: bool
    unpriced: bool
    """Lists no price at all (every token, request and image at 0) yet is neither a `:free` variant
    nor a router: what it really charges (Lyria's music generators bill per clip) is not in the
    catalog, so it cannot be held to a cap nor counted cheap."""
    text_out: bool
    text_only: bool
    """Outputs text and nothing else: what automatic selection may send a chat to."""
    inputs: frozenset[str]
    """The input modalities it takes (`text`, `image`, `audio`, `video`, `file`)."""
    capabilities: frozenset[str]
    author: str
    expiration: str | None
    dynamic: bool
    prompt_1k: Decimal
    completion_1k: Decimal
    price_steps: tuple[tuple[int, Decimal, Decimal], ...]
    """(min_prompt_tokens, prompt, completion USD per 1K): for each long-prompt override threshold,
    lowest first, the dearest prices that may apply to a prompt of more tokens than it (empty for
    most models)."""
    worst: WorstCase | None
    """Its worst case, the prices worked out (None for dynamic router prices)."""
    max_completion: int | None
    context: int | None
    log_price: float
    """log10 of the blended USD per 1M tokens (+0.01), the cost score's scale; an unpriced model's
    is the catalog's dearest, so it never ranks as the cheapest."""


class CatalogFacts:
    """Every entry's `EntryFacts`, in catalog (id) order, the router bound of the catalog, and the
    filter results of the request shapes seen (`shapes`, at most 256: cleared when full)."""

    def __init__(self, catalog: Catalog) -> None:
        every = [entry_facts(entry) for entry in catalog.entries.values()]
        dearest = max((f.log_price for f in every if not (f.dynamic or f.unpriced)), default=0.0)
        self.all = [replace(f, log_price=dearest) if f.unpriced else f for f in every]
        self.by_id = {f.id: f for f in self.all}
        priced = [f.entry.info.pricing for f in self.all if not f.dynamic]
        self.router_bound = RouterBound.of(priced)
        self.shapes: dict[tuple[Any, ...], Any] = {}

    def remember(self, key: tuple[Any, ...], value: Any) -> Any:
        """Keep `value` for the request shape `key` (forgetting all when too many were kept)."""
        if len(self.shapes) >= _SHAPES_KEPT:
            self.shapes.clear()
        self.shapes[key] = value
        return value


_FACTS: weakref.WeakKeyDictionary[Catalog, CatalogFacts] = weakref.WeakKeyDictionary()


def facts_of(catalog: Catalog) -> CatalogFacts:
    """The facts of `catalog`, worked out on first use."""
    facts = _FACTS.get(catalog)
    if facts is None:
        facts = _FACTS[catalog] = CatalogFacts(catalog)
    return facts


def entry_facts(entry: CatalogEntry) -> EntryFacts:
    info = entry.info
    caps, pricing = info.capabilities, info.pricing
    outputs = info.architecture.output_modalities
    is_free = entry.id.endswith(":free")
    blended = max(0.0, float(pricing.prompt * 3 + pricing.completion) / 4 * 1e6)
    return EntryFacts(
        entry=entry,
        id=entry.id,
        is_router=info.is_router,
        is_free=is_free,
        unpriced=not (is_free or info.is_router) and _lists_no_price(pricing),
        text_out="text" in outputs,
        text_only=outputs == ["text"],
        inputs=frozenset(info.architecture.input_modalities),
        capabilities=frozenset(c for c in CAPABILITIES if getattr(caps, c)),
        author=info.author.lower(),
        expiration=info.expiration_date,
        dynamic=pricing.is_dynamic,
        prompt_1k=per_1k(pricing.prompt),
        completion_1k=per_1k(pricing.completion),
        price_steps=_price_steps(pricing),
        worst=None if pricing.is_dynamic else WorstCase(pricing),
        max_completion=caps.max_completion_tokens,
        context=caps.context_length,
        log_price=math.log10(blended + 0.01),
    )


def _lists_no_price(pricing: Pricing) -> bool:
    return not (pricing.prompt or pricing.completion or pricing.request or pricing.image)


def _price_steps(pricing: Pricing) -> tuple[tuple[int, Decimal, Decimal], ...]:
    """The dearest prompt and completion prices per 1K above each `min_prompt_tokens` threshold of
    the overrides. A prompt passes a threshold when it has more tokens than it (`pricing._passes_minimum`),
    which for a whole number of tokens is more than its floor."""
    if not pricing.overrides or pricing.is_dynamic:
        return ()
    steps = []
    for threshold in prompt_thresholds(pricing):
        prices = _dearest(pricing, threshold + 1)
        steps.append((threshold, per_1k(prices["prompt"]), per_1k(prices["completion"])))
    return tuple(steps)
