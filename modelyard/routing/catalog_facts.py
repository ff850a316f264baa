"""What selection reads of each catalog entry, worked out once per catalog and kept beside it.

A `Catalog` is an immutable snapshot, so facts derived from it (capability sets, prices per 1K,
log prices, the dearest prices a router may charge) and the filter results of recurring request
shapes live exactly as long as the catalog does.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from modelyard.routing.catalog import Catalog, CatalogEntry
from modelyard.routing.pricing import per_1k
from modelyard.routing.request import CAPABILITIES

__all__ = ["CatalogFacts", "EntryFacts", "facts_of"]

_SHAPES_KEPT = 256


@dataclass(frozen=True, slots=True)
class EntryFacts:
    """What selection reads of one catalog entry."""

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


class CatalogFacts:
    """Every entry's `EntryFacts`, in catalog (id) order, the router bound of the catalog, and the
    filter results of the request shapes seen (`shapes`, at most 256: cleared when full)."""

    def __init__(self, catalog: Catalog) -> None:
        self.all = [entry_facts(entry) for entry in catalog.entries.values()]
        self.by_id = {f.id: f for f in self.all}
        priced = [f.entry.info.pricing for f in self.all if not f.dynamic]
        self.router_bound = (
            max((p.prompt for p in priced), default=Decimal(0)),
            max((p.completion for p in priced), default=Decimal(0)),
        )
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
    blended = max(0.0, float(pricing.prompt * 3 + pricing.completion) / 4 * 1e6)
    return EntryFacts(
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
