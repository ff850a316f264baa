"""Model references: what a caller may write in `model` and how it maps to catalog ids.

Accepted: an exact id (`openai/gpt-4o-mini`), a canonical slug (`anthropic/claude-4.5-sonnet-20250929`),
the same with an `openrouter/` prefix, a short name (`gpt-4o-mini`), a tier (`economy`, `balanced`,
`premium`), `auto`, and `openrouter/auto` (OpenRouter's own router, passed through).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from modelyard.errors import ModelNotFoundError
from modelyard.routing.catalog import TIERS, Catalog, CatalogEntry, Tier

__all__ = ["Reference", "resolve_model", "resolve_reference"]

AUTO = "auto"
ROUTER_IDS = frozenset({"openrouter/auto", "openrouter/free"})
_TIER_BY_NAME: dict[str, Tier] = {tier: tier for tier in TIERS}


@dataclass(frozen=True, slots=True)
class Reference:
    """A resolved `model` argument: automatic selection, a tier, or one model."""

    kind: Literal["auto", "tier", "model"]
    tier: Tier | None = None
    entry: CatalogEntry | None = None


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

    Raises:
        ModelNotFoundError: unknown or ambiguous, with the closest ids.
    """
    text = reference.strip()
    if entry := catalog.get(text):
        return entry
    if text.lower() not in ROUTER_IDS and text.lower().startswith("openrouter/"):
        stripped = text[len("openrouter/") :]
        if entry := catalog.get(stripped):
            return entry
        text = stripped
    matches = _short_name_matches(catalog, text)
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ModelNotFoundError(reference, [m.id for m in matches][:8], ambiguous=True)
    raise ModelNotFoundError(reference, _closest(catalog, text))


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
