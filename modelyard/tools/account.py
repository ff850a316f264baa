"""`get_metrics`, `get_budget`, `set_budget` (tighten only) and `test_connection`."""

# Annotations are evaluated here, not left as strings: the SDK would resolve each tool's strings three
# times while building the server (about 20 ms of the cold start).

import time
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from modelyard.error_text import dollars
from modelyard.errors import AuthenticationError, ForbiddenError, ModelyardError, UpstreamNotFoundError
from modelyard.routing.budget import MAX_LIMIT
from modelyard.routing.limits import blocking_limits, least_request_cost, limit_sources
from modelyard.routing.metrics import BudgetStatus, Metrics, current_budget
from modelyard.routing.money import Usd
from modelyard.routing.schema import ResultModel
from modelyard.server.context import AppContext, AppContextOnDemand
from modelyard.store import redacted
from modelyard.tools.common import app_of, caller_of, tool_errors

if TYPE_CHECKING:
    from modelyard.routing.catalog import Catalog

__all__ = ["ConnectionReport", "register"]

_KEYS_PAGE = "https://openrouter.ai/settings/keys"
_CREDITS_PAGE = "https://openrouter.ai/settings/credits"


class ConnectionReport(ResultModel):
    """Whether modelyard can reach OpenRouter, and with what."""

    upstream: str = Field(description="The API root in use.")
    sandbox: bool = Field(description="True when the upstream is a local sandbox, not openrouter.ai.")
    key_present: bool
    key_valid: bool | None = Field(description="null when it could not be checked.")
    key_label: str | None = None
    credit_remaining: Usd | None = Field(
        default=None,
        description="USD left of the key's own limit; null = no per-key limit (the account's credit bounds it) "
        "or unknown.",
    )
    account_credit_remaining: Usd | None = Field(
        default=None,
        description="USD left of the account's credit (/credits: bought minus used); null when the key may not "
        "read it (since 2026 only a management key may) or it is unknown.",
    )
    round_trip_ms: float | None = None
    catalog_models: int | None = None
    catalog_age_s: float | None = None
    store_healthy: bool
    problems: list[str] = Field(
        default_factory=list,
        description="What stands in the way of a request, each with its fix: no key or a bad one, a key or "
        "account without the credit for one request (402), no catalog, a store that does not answer, a budget "
        "limit so low that no paid model can answer.",
    )


async def _account_credit(app: AppContext, report: ConnectionReport) -> None:
    """The account's credit left, when the key may read it (an ordinary key's 403, or a 404, is no problem)."""
    try:
        report.account_credit_remaining = (await app.client.credits()).remaining
    except (ForbiddenError, UpstreamNotFoundError):
        pass
    except ModelyardError as exc:
        report.problems.append(f"/credits: {exc}")


async def _key(app: AppContext, report: ConnectionReport) -> None:
    """The key's validity, label and limit (`/key`), the round trip, and the account's credit."""
    began = time.perf_counter()
    try:
        key = await app.client.key_info()
        report.key_valid, report.key_label, report.credit_remaining = True, key.label, key.limit_remaining
    except ModelyardError as exc:
        # Only a 401 says the key is bad ("401" in the text could be a port in a URL the message names).
        report.key_valid = False if isinstance(exc, AuthenticationError) else None
        report.problems.append(f"/key: {exc}")
    report.round_trip_ms = round((time.perf_counter() - began) * 1000, 2)
    if report.key_valid:
        await _account_credit(app, report)


def _least_hold(catalog: "Catalog", max_tokens: int) -> tuple[Decimal, str] | None:
    """The least credit a request at `max_tokens` needs, and the model: OpenRouter answers 402 when a request's
    `max_tokens` at the model's completion price is more than the credit left. The cheapest paid model's;
    None when the catalog has none (free models are not held to it)."""
    holds = (
        (info.pricing.completion * min(max_tokens, info.capabilities.max_completion_tokens or max_tokens), info.id)
        for info in (entry.info for entry in catalog.entries.values())
        if not info.pricing.is_dynamic and info.pricing.completion > 0
    )
    return min(holds, default=None)


def _credit_problems(report: ConnectionReport, least: tuple[Decimal, str] | None, max_tokens: int) -> None:
    """A problem for the key's limit or the account's credit, when either is too small for one request."""
    for what, left, fix in (
        ("The key's limit", report.credit_remaining, f"raise the key's limit at {_KEYS_PAGE}"),
        ("The account's credit", report.account_credit_remaining, f"add credit at {_CREDITS_PAGE}"),
    ):
        if left is None or (left > 0 and (least is None or left >= least[0])):
            continue
        if left <= 0 or least is None:
            why = f"{what} is spent ({dollars(left)} left): requests to paid models will fail"
        else:
            why = (
                f"{what} has {dollars(left)} left, less than the {dollars(least[0])} OpenRouter needs "
                f"for a request at the default max_tokens {max_tokens} even to the cheapest paid model ({least[1]}): "
                "such requests will fail"
            )
        report.problems.append(f"{why} with 402 (out of credit); {fix}.")


async def _connection(app: AppContext) -> ConnectionReport:
    base = app.settings.openrouter_base_url
    local = any(h in base for h in ("127.0.0.1", "localhost", "[::1]"))
    report = ConnectionReport(
        upstream=base,  # never with credentials: the settings refuse them
        sandbox=local,
        key_present=app.client.has_key,
        key_valid=None,
        store_healthy=await app.store.healthy(),
    )
    if not app.client.has_key:
        report.problems.append(
            "No key: set OPENROUTER_API_KEY, or run `modelyard sandbox` and point OPENROUTER_BASE_URL at it."
        )
    else:
        await _key(app, report)
    least, max_tokens, catalog = None, app.settings.default_max_tokens, None
    try:
        catalog = await app.router.catalogs.current()
        report.catalog_models, report.catalog_age_s = len(catalog), round(catalog.age_s(time.time()), 1)
        least = _least_hold(catalog, max_tokens)
    except ModelyardError as exc:
        report.problems.append(f"catalog: {exc}")
    _credit_problems(report, least, max_tokens)
    if not report.store_healthy:
        report.problems.append(f"store {redacted(app.settings.store)} does not answer")
    else:
        await _budget_problems(app, report, catalog)
    return report


async def _budget_problems(app: AppContext, report: ConnectionReport, catalog: "Catalog | None") -> None:
    """A problem for each budget limit so low that no paid model can answer (one of $0 without a catalog)."""
    budgets, router = app.router.budgets, app.router
    try:
        sources = limit_sources(budgets.configured, await budgets.tightenings())
    except ModelyardError as exc:
        report.problems.append(f"Budget: the run-time limits could not be read: {exc}")
        return
    least = None if catalog is None else least_request_cost(catalog, router.defaults, now=router.clock.now())
    report.problems.extend(f"Budget: {problem}" for problem in blocking_limits(sources, least))


def register(server: MCPServer[AppContextOnDemand]) -> None:
    """Add the metrics, budget and connection tools."""
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    async def get_metrics(
        ctx: Context[AppContextOnDemand],
        window: Annotated[
            Literal["today", "7d", "all"], Field(description="UTC today, the last 7 days, or all.")
        ] = "today",
    ) -> Metrics:
        """Requests, successes, failures, cache hits and savings, tokens and spend; per model: calls, p50/p95
        latency, error rate and circuit-breaker state; top models; budget status."""
        with tool_errors():
            return await (await app_of(ctx)).router.metrics(window)

    @server.tool(annotations=read_only)
    async def get_budget(ctx: Context[AppContextOnDemand]) -> BudgetStatus:
        """Daily, monthly and per-request limits (USD; null = none), spend today and this month, money held
        by requests in flight, and what remains; `sources` says, per limit, whether the operator's config or a
        run-time tightening (set_budget) is in force, and when that was set."""
        with tool_errors():
            return await current_budget((await app_of(ctx)).router.budgets)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True))
    async def set_budget(
        ctx: Context[AppContextOnDemand],
        daily: Annotated[
            Decimal | None, Field(ge=0, le=MAX_LIMIT, description="New daily limit, USD (only lower).")
        ] = None,
        monthly: Annotated[
            Decimal | None, Field(ge=0, le=MAX_LIMIT, description="New monthly limit, USD (only lower).")
        ] = None,
        per_request: Annotated[
            Decimal | None, Field(ge=0, le=MAX_LIMIT, description="New per-request limit, USD (only lower).")
        ] = None,
    ) -> BudgetStatus:
        """Tighten the budget. Limits can only be lowered here; raising one needs the operator (config, or
        `modelyard budget --reset` for a limit lowered at run time), so an agent cannot lift its own cap."""
        app = await app_of(ctx)
        if daily is None and monthly is None and per_request is None:
            raise ToolError("Give at least one of daily, monthly or per_request (USD).")
        with tool_errors():
            budgets = app.router.budgets
            await budgets.tighten(daily=daily, monthly=monthly, per_request=per_request, by=caller_of(ctx))
            return await current_budget(budgets)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=True))
    async def test_connection(ctx: Context[AppContextOnDemand]) -> ConnectionReport:
        """Is the key present and valid, how much credit is left, how old and large is the catalog, what is
        the upstream round trip, is the store healthy, and is this the sandbox or the live service."""
        with tool_errors():
            return await _connection(await app_of(ctx))
