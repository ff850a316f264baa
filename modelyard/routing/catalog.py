"""The model catalog: OpenRouter's `/models`, scored for quality and tiered, kept across restarts.

Quality is Artificial Analysis' intelligence index where the catalog has it; elsewhere an estimate
from the completion price (a log-linear fit over the 132 priced models of the Aug 2026 snapshot
that have an index: q = 32.1 + 15.75 · log10(completion USD per 1M)), labelled `estimate`.
Tiers split the scored, routable models into thirds: economy, balanced, premium.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio

from modelyard.errors import MalformedResponseError, ModelyardError, UpstreamError
from modelyard.openrouter.catalog_schemas import ModelInfo
from modelyard.store.base import Store

if TYPE_CHECKING:
    from modelyard.openrouter.client import OpenRouterClient

__all__ = ["TIERS", "Catalog", "CatalogEntry", "CatalogService", "QualitySource", "Tier"]

log = logging.getLogger(__name__)

Tier = Literal["economy", "balanced", "premium"]
QualitySource = Literal["benchmark", "estimate", "override"]
TIERS: tuple[Tier, ...] = ("economy", "balanced", "premium")
_STORE_KEY = "catalog:v1"
_FREE_ESTIMATE = 20.0


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A model with its quality score (0-100 scale of the intelligence index) and tier.

    `variant` is a routing variant OpenRouter applies to any model without listing it (`:floor`, `:nitro`,
    `:exacto`; see `resolve.ROUTING_VARIANTS`): the entry is the listed model's, the variant is kept to be sent.
    """

    info: ModelInfo
    quality: float
    quality_source: QualitySource
    tier: Tier
    variant: str = ""

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def wire_id(self) -> str:
        """The model to send upstream: the id, with its routing variant when one was asked for."""
        return self.info.id + self.variant


class Catalog:
    """An immutable snapshot of the models, indexed for lookup."""

    def __init__(
        self,
        models: Iterable[ModelInfo],
        *,
        fetched_at: float,
        quality_overrides: Mapping[str, float] | None = None,
    ) -> None:
        infos = sorted({m.id: m for m in models}.values(), key=lambda m: m.id)
        scores = _quality_scores(infos, quality_overrides or {})
        cuts = _tier_cuts([scores[m.id][0] for m in infos if not m.is_router])
        self.fetched_at = fetched_at
        self.entries: dict[str, CatalogEntry] = {
            m.id: CatalogEntry(m, scores[m.id][0], scores[m.id][1], _tier(scores[m.id][0], cuts)) for m in infos
        }
        self.by_canonical = _canonical_index(infos)
        self._folded = _folded_index(infos, self.by_canonical)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, model_id: str) -> CatalogEntry | None:
        """The entry for an id or canonical slug: exact first, else in any case (`OpenAI/GPT-4o-mini`)."""
        entry = self.entries.get(model_id)
        if entry is None and (alias := self.by_canonical.get(model_id) or self._folded.get(model_id.lower())):
            entry = self.entries.get(alias)
        return entry

    def age_s(self, now: float) -> float:
        return max(0.0, now - self.fetched_at)

    def to_json(self) -> str:
        """The snapshot as stored: the raw rows plus when they were fetched."""
        rows = [e.info.model_dump(mode="json", exclude_none=True) for e in self.entries.values()]
        return json.dumps({"fetched_at": self.fetched_at, "data": rows}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, *, quality_overrides: Mapping[str, float] | None = None) -> Catalog:
        payload = json.loads(text)
        models = [ModelInfo.model_validate(row) for row in payload["data"]]
        return cls(models, fetched_at=float(payload["fetched_at"]), quality_overrides=quality_overrides)


def _canonical_index(infos: Sequence[ModelInfo]) -> dict[str, str]:
    """Canonical slug -> id. A model and its `:free`/`:batch`/`:thinking` rows share one canonical slug,
    which chat answers report as their `model`: it names the base model (the id without ':'), and a
    variant only where no base model is listed."""
    index: dict[str, str] = {}
    for info in sorted(infos, key=lambda m: (":" in m.id, m.id)):
        if info.canonical_slug:
            index.setdefault(info.canonical_slug, info.id)
    return index


def _folded_index(infos: Sequence[ModelInfo], by_canonical: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased id or canonical slug -> id: ids first, then canonical slugs (as `by_canonical` maps them)."""
    index = {info.id.lower(): info.id for info in reversed(infos)}  # the first id wins a case clash
    for slug, model_id in by_canonical.items():
        index.setdefault(slug.lower(), model_id)
    return index


def _routable_text(info: ModelInfo) -> bool:
    """A model selection can route a text chat to: not a router, and answers in text."""
    return not info.is_router and "text" in info.architecture.output_modalities


def _quality_scores(
    infos: Sequence[ModelInfo], overrides: Mapping[str, float]
) -> dict[str, tuple[float, QualitySource]]:
    scores: dict[str, tuple[float, QualitySource]] = {}
    by_id = {m.id: m for m in infos}
    for info in infos:
        if info.id in overrides:
            scores[info.id] = (float(overrides[info.id]), "override")
        elif (index := info.intelligence_index) is not None:
            scores[info.id] = (index, "benchmark")
        else:
            scores[info.id] = (_estimate(info, by_id), "estimate")
    return scores


def _estimate(info: ModelInfo, by_id: Mapping[str, ModelInfo]) -> float:
    """Quality from price: the paid sibling's score for a `:free` variant, else the log-linear fit."""
    if info.id.endswith(":free") and (paid := by_id.get(info.id.removesuffix(":free"))):
        if paid.intelligence_index is not None:
            return paid.intelligence_index
        info = paid
    per_million = float(info.pricing.completion) * 1e6
    if per_million <= 0:
        return _FREE_ESTIMATE
    return round(min(60.0, max(5.0, 32.1 + 15.75 * math.log10(per_million))), 1)


def _tier_cuts(scores: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(scores)
    if not ordered:
        return (0.0, 0.0)
    return (ordered[len(ordered) // 3], ordered[(2 * len(ordered)) // 3])


def _tier(score: float, cuts: tuple[float, float]) -> Tier:
    if score < cuts[0]:
        return "economy"
    return "balanced" if score < cuts[1] else "premium"


def _no_catalog(reason: str | None) -> str:
    """Why there is no catalog at all, and what to check: the advice only once, for the client's messages
    for a wrong base URL and a connection that cannot be made already say to check OPENROUTER_BASE_URL."""
    message = f"No model catalog: OpenRouter's /models could not be fetched ({reason}) and none was stored earlier."
    if reason is not None and "OPENROUTER_BASE_URL" in reason:
        return message
    return f"{message} Check OPENROUTER_BASE_URL and the network."


class CatalogService:
    """Keeps a current `Catalog`: fetched live, refreshed on a TTL, the last good copy in the store.

    Args:
        client: the OpenRouter client (`list_models`).
        store: where the last good snapshot is kept, so a restart without network still works.
        ttl_s: age after which the next `current()` fetches again.
        quality_overrides: quality score per model id, from settings.
        clock: epoch seconds.
    """

    def __init__(
        self,
        client: OpenRouterClient,
        store: Store,
        *,
        ttl_s: float = 3600.0,
        quality_overrides: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._store = store
        self._ttl_s = ttl_s
        self._overrides = dict(quality_overrides or {})
        self._clock = clock
        self._catalog: Catalog | None = None
        self._lock = anyio.Lock()
        self._retry_at = 0.0  # after a failed refresh, no refetch before this time
        self.last_error: str | None = None

    @property
    def loaded(self) -> Catalog | None:
        """The catalog in memory, without fetching."""
        return self._catalog

    async def current(self) -> Catalog:
        """The catalog, fetching it first when none is loaded or it is older than the TTL.

        Raises:
            ModelyardError: no catalog could be fetched and none was stored.
        """
        catalog = self._catalog
        if catalog is not None and self._fresh(catalog):
            return catalog
        async with self._lock:
            if self._catalog is None:
                self._catalog = await self._load_stored()
            if self._catalog is None or not self._fresh(self._catalog):
                await self._try_refresh()
            if self._catalog is None:
                raise ModelyardError(_no_catalog(self.last_error))
            return self._catalog

    async def refresh(self) -> Catalog:
        """Fetch `/models` now and store it.

        Raises:
            UpstreamError: the fetch failed, or its answer lists no routable text model (an outage page
                or a partial deploy answering 200 with an empty list); the previous catalog stays in
                use, in memory and in the store.
        """
        models = await self._client.list_models()
        if not any(_routable_text(m) for m in models):
            raise MalformedResponseError(
                f"OpenRouter's /models listed {len(models)} models and no routable text model", model=None
            )
        catalog = Catalog(models, fetched_at=self._clock(), quality_overrides=self._overrides)
        await self._store.set_value(_STORE_KEY, catalog.to_json())
        self._catalog, self.last_error = catalog, None
        return catalog

    def _fresh(self, catalog: Catalog) -> bool:
        now = self._clock()
        return catalog.age_s(now) < self._ttl_s or now < self._retry_at

    async def _try_refresh(self) -> None:
        try:
            await self.refresh()
        except UpstreamError as exc:
            self.last_error = str(exc)
            if self._catalog is None:  # a fresh install: `current()` raises it next, so a warning would repeat it
                log.info("catalog refresh failed and no copy is stored: %s", exc)
                return
            age = self._catalog.age_s(self._clock())
            log.warning("catalog refresh failed, keeping the copy fetched %s s ago: %s", f"{age:,.0f}", exc)
            # Back off: do not refetch on every request while the network is down.
            self._retry_at = self._clock() + min(60.0, self._ttl_s)

    async def _load_stored(self) -> Catalog | None:
        text = await self._store.get_value(_STORE_KEY)
        if text is None:
            return None
        try:
            return Catalog.from_json(text, quality_overrides=self._overrides)
        except (ValueError, KeyError) as exc:
            log.warning("ignoring a stored catalog that does not parse: %s", exc)
            return None
