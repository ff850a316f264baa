"""`list_models`: the catalog, filtered and sorted, prices per 1M tokens."""

# Annotations are evaluated here, not left as strings: the SDK would resolve each tool's strings three
# times while building the server (about 20 ms of the cold start).

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from pydantic import Field

from modelyard.routing.money import Usd
from modelyard.routing.pricing import per_1k, per_million
from modelyard.routing.request import Capability
from modelyard.routing.schema import ResultModel
from modelyard.server.context import AppContextOnDemand
from modelyard.tools.common import app_of, tool_errors

if TYPE_CHECKING:
    from modelyard.routing.catalog import CatalogEntry

__all__ = ["ModelRow", "ModelsResult", "register"]

Sort = Literal["quality", "price", "context", "name"]


class ModelRow(ResultModel):
    id: str
    name: str
    prompt_per_1m: Usd | None = Field(description="USD per 1M prompt tokens; null for routers (dynamic).")
    completion_per_1m: Usd | None = Field(description="USD per 1M completion tokens; null for routers.")
    context_length: int | None
    max_completion_tokens: int | None
    capabilities: list[str]
    tier: str
    quality: float
    quality_source: str


class ModelsResult(ResultModel):
    models: list[ModelRow]
    total: int = Field(description="Models matching the filters (before `limit`).")
    catalog_size: int
    catalog_age_s: float


def _row(entry: "CatalogEntry") -> ModelRow:
    info, dynamic = entry.info, entry.info.pricing.is_dynamic
    return ModelRow(
        id=info.id,
        name=info.name,
        prompt_per_1m=None if dynamic else per_million(info.pricing.prompt).normalize(),
        completion_per_1m=None if dynamic else per_million(info.pricing.completion).normalize(),
        context_length=info.capabilities.context_length,
        max_completion_tokens=info.capabilities.max_completion_tokens,
        capabilities=info.capabilities.names(),
        tier=entry.tier,
        quality=entry.quality,
        quality_source=entry.quality_source,
    )


def _matches(
    entry: "CatalogEntry",
    provider: list[str] | None,
    capabilities: list[Capability] | None,
    max_cost_per_1k: Decimal | None,
    min_context: int | None,
    tier: str | None,
    search: str | None,
) -> bool:
    info = entry.info
    if provider and info.author.lower() not in {p.lower() for p in provider}:
        return False
    if capabilities and not all(getattr(info.capabilities, c) for c in capabilities):
        return False
    if max_cost_per_1k is not None and (
        info.pricing.is_dynamic or max(per_1k(info.pricing.prompt), per_1k(info.pricing.completion)) > max_cost_per_1k
    ):
        return False
    if min_context is not None and (info.capabilities.context_length or 0) < min_context:
        return False
    if tier and entry.tier != tier:
        return False
    return not search or search.lower() in f"{info.id} {info.name}".lower()


_SORTS = {
    "quality": lambda e: (-e.quality, e.id),
    "price": lambda e: (e.info.pricing.is_dynamic, e.info.pricing.prompt + e.info.pricing.completion, e.id),
    "context": lambda e: (-(e.info.capabilities.context_length or 0), e.id),
    "name": lambda e: (e.id,),
}


def register(server: MCPServer[AppContextOnDemand]) -> None:
    """Add `list_models`."""

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False))
    async def list_models(
        ctx: Context[AppContextOnDemand],
        provider: Annotated[list[str] | None, Field(description="Model authors, e.g. ['openai', 'anthropic'].")] = None,
        capabilities: Annotated[list[Capability] | None, Field(description="All of these are required.")] = None,
        max_cost_per_1k: Annotated[
            Decimal | None, Field(ge=0, description="USD per 1K tokens, prompt and completion.")
        ] = None,
        min_context: Annotated[int | None, Field(ge=1, description="Minimum context length in tokens.")] = None,
        tier: Annotated[Literal["economy", "balanced", "premium"] | None, Field(description="Quality tier.")] = None,
        search: Annotated[str | None, Field(description="Text to find in the id or name.")] = None,
        sort: Annotated[
            Sort, Field(description="quality (best first), price (cheapest first), context, name.")
        ] = "quality",
        limit: Annotated[int, Field(ge=1, le=200, description="Rows returned.")] = 20,
    ) -> ModelsResult:
        """The model catalog filtered by provider, capabilities, max price, min context, tier and text, sorted;
        prices per 1M tokens. Works without an API key (from the cached catalog)."""
        app = await app_of(ctx)
        with tool_errors():
            catalog = await app.router.catalogs.current()
        rows = [
            e
            for e in catalog.entries.values()
            if _matches(e, provider, capabilities, max_cost_per_1k, min_context, tier, search)
        ]
        rows.sort(key=_SORTS[sort])
        return ModelsResult(
            models=[_row(e) for e in rows[:limit]],
            total=len(rows),
            catalog_size=len(catalog),
            catalog_age_s=round(catalog.age_s(app.router.clock.now()), 1),
        )
