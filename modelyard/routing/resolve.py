"""Model references: what a caller may write in `model` and how it maps to catalog ids.

Accepted: an exact id (`openai/gpt-4o-mini`), a canonical slug (`anthropic/claude-4.5-sonnet-20250929`),
either in any case, the same with an `openrouter/` prefix, a short name (`gpt-4o-mini`), a tier
(`economy`, `balanced`, `premium`), `auto`, and `openrouter/auto` (OpenRouter's own router, passed
through). Any model reference may end in `:floor`, `:nitro` or `:exacto`, routing variants OpenRouter
accepts on every model without listing them in `/models`: each resolves to the listed model, whose entry
keeps the variant (`CatalogEntry.variant`, sent upstream as `wire_id`).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Literal

from modelyard.errors import ModelNotFoundError
from modelyard.routing.catalog import TIERS, Catalog, CatalogEntry, Tier

__all__ = ["ROUTING_VARIANTS", "Reference", "resolve_model", "resolve_reference"]

AUTO = "auto"
ROUTER_IDS = frozenset({"openrouter/auto", "openrouter/free"})
ROUTING_VARIANTS = (":floor", ":nitro", ":exacto")
"""Suffixes that choose how OpenRouter serves a model, not which model, and that a budget can hold
(reference §3.4): `:floor` sorts its providers by price, `:nitro` by throughput (priority-tier endpoints
included), `:exacto` by tool-calling quality. Under any limit every attempt carries `provider.max_price`
at the listed prices (`price_cap`), so a dearer endpoint one of them prefers is never used and the
listed prices stay an upper bound; with no limit in force none is needed. `:online` (web search, billed
per search and in the prompt, which no max_price caps) is unknown unless `/models` lists it. `:free`,
`:batch`, `:thinking` and `:extended` are other models (their own prices, context or reasoning),
reachable only where `/models` lists them."""
_TIER_BY_NAME: dict[str, Tier] = {tier: tier for tier in TIERS}


@dataclass(frozen=True, slots=True)
class Reference:
    """A resolved `model` argument: automatic selection, a tier, or one model."""

    kind: Literal["auto", "tier", "model"]
    tier: Tier | None = None
    entry: CatalogEntry | None = None

    @property
    def variant(self) -> str:
        """The routing variant asked for with the model (`:nitro`...), else ''."""
        return self.entry.variant if self.entry is not None else ""


def resolve_reference(catalog: Catalog, reference: str | None) -> Reference:
    """Resolve what a caller wrote in `model`.

    Raises:
        ModelNotFoundError: the name matches no model, or several; it lists the closest ids.
    """
    text = (reference or AUTO).strip()
    lowered = text.lower()
    if lowered == AUTO:
        return Reference("auto")
    if tier := _TIER_BY_NAME.get(lowered):
        return Reference("tier", tier=tier)
    return Reference("model", entry=resolve_model(catalog, text))


def resolve_model(catalog: Catalog, reference: str) -> CatalogEntry:
    """The one catalog entry a model name refers to.

    A name that matches nothing but ends in a routing variant is the model it names without the
    variant: that model's entry (id, prices, limits), carrying the variant in `variant`.

    Raises:
        ModelNotFoundError: unknown or ambiguous, with the closest ids.
    """
    text = reference.strip()
    matches, searched = _matches(catalog, text)
    variant = ""
    if not matches and (split := _split_variant(text)):
        base, variant = split
        matches, searched = _matches(catalog, base)
        matches = [m for m in matches if not m.info.is_router]  # a variant picks a model's providers
    if len(matches) == 1:
        return dataclasses.replace(matches[0], variant=variant) if variant else matches[0]
    if len(matches) > 1:
        raise ModelNotFoundError(reference, [m.id for m in matches][:8], ambiguous=True)
    raise ModelNotFoundError(reference, _closest(catalog, searched))


def _matches(catalog: Catalog, text: str) -> tuple[list[CatalogEntry], str]:
    """The entries `text` names (exact or any-case id or canonical slug, with or without `openrouter/`,
    else a short name), and the text searched last (for suggestions)."""
    if entry := catalog.get(text):
        return [entry], text
    if text.lower() not in ROUTER_IDS and text.lower().startswith("openrouter/"):
        text = text[len("openrouter/") :]
        if entry := catalog.get(text):
            return [entry], text
    return _short_name_matches(catalog, text), text


def _split_variant(text: str) -> tuple[str, str] | None:
    """(`text` without its routing variant, the variant in lower case), or None if it ends in none."""
    lowered = text.lower()
    for variant in ROUTING_VARIANTS:
        if lowered.endswith(variant) and len(text) > len(variant):
            return text[: -len(variant)], variant
    return None


def _short_name_matches(catalog: Catalog, text: str) -> list[CatalogEntry]:
    """Entries whose id after the author is `text` (case-insensitive); a paid model wins over its `:free` twin."""
    wanted = text.lower()
    found = [e for e in catalog.entries.values() if e.id.lower().split("/", 1)[-1] == wanted]
    if len(found) > 1:
        paid = [e for e in found if ":" not in e.id]
        found = paid or found
    return found


def _closest(catalog: Catalog, text: str) -> list[str]:
    ids = list(catalog.entries)
    short = {i.split("/", 1)[-1]: i for i in ids}
    near = difflib.get_close_matches(text, ids, n=5, cutoff=0.5)
    near += [short[s] for s in difflib.get_close_matches(text, list(short), n=5, cutoff=0.5)]
    near += [i for i in ids if text.lower() in i.lower()]
    return list(dict.fromkeys(near))[:5]
