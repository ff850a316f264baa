"""`build_server(settings)`: the MCP server, its lifespan, and the transports it can run on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, InputRequiredResult
from mcp.types import Tool as MCPTool

from modelyard import __version__
from modelyard.routing.labels import labelled
from modelyard.server.arguments import ArgumentCheck, closed
from modelyard.server.context import AppContextOnDemand
from modelyard.server.health import Health
from modelyard.server.http_auth import BearerAuth, check_bind, transport_security
from modelyard.server.tuning import paused_gc, tune_gc
from modelyard.settings import Settings

__all__ = ["GRACEFUL_SHUTDOWN_S", "INSTRUCTIONS", "ModelyardServer", "Transport", "build_server", "serve"]

Transport = Literal["stdio", "sse", "streamable-http"]
_IDLE_CONNECTION_S = 75
# How long a stopping HTTP server gives the calls in flight (and responses still being written) to finish
# before it cancels them: uvicorn's default waits for ever, so one client that had stopped reading its event
# stream kept a SIGTERMed server running. A cancelled call's budget hold is still settled on the way out (by
# the router, or the reconciler's last pass for an answer that had begun) and the store closed. Bounded well
# below what an orchestrator waits before a SIGKILL (typically 30 s; the Python SDK's stdio host gives 2 s),
# which would lose the ledger rows not yet written.
GRACEFUL_SHUTDOWN_S = 5

INSTRUCTIONS = """\
modelyard reaches OpenRouter's models through one set of tools and picks the right model per request.
- execute: run a prompt. Leave model='auto' to let it choose by capabilities, cost, speed and quality,
  or name a model ('gpt-4o-mini'), a tier ('economy', 'balanced', 'premium') or 'openrouter/auto'.
  Constraints: capabilities, max_cost_per_1k (USD per 1K tokens), max_cost (USD for this request).
- plan_route: see which model execute would use and what it may cost, without spending anything.
- list_models, compare_models, execute_batch, get_metrics, get_budget, set_budget, test_connection.
Costs are USD; an unknown cost is null, never 0."""


class ModelyardServer(MCPServer[AppContextOnDemand]):
    """The SDK's server, whose tools refuse an argument they do not declare instead of dropping it unread.

    Every tool's published input schema says so (`additionalProperties: false`), and a call naming an
    unknown argument, at the top level or inside a closed nested object such as a batch task, is a tool
    error naming it and the closest real one, before the tool runs (`modelyard.server.arguments`).
    """

    _checks: dict[str, ArgumentCheck] | None = None  # built at the first call, from the published schemas;
    # an unknown tool name has none, and the SDK refuses it

    async def list_tools(self) -> list[MCPTool]:
        """The tools, each input schema closed to arguments it does not declare."""
        tools = await super().list_tools()
        for tool in tools:
            tool.input_schema = closed(tool.input_schema)
        return tools

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppContextOnDemand, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Call the tool `name`, refusing arguments it does not declare (the SDK would ignore them).

        Raises:
            ToolError: an unknown argument, named with the closest declared one; or as `MCPServer.call_tool`.
        """
        checks = self._checks
        if checks is None:  # every tool is registered when the server is built: one look is enough
            checks = self._checks = {tool.name: ArgumentCheck(tool.input_schema) for tool in await self.list_tools()}
        check = checks.get(name)
        if check is not None and (problem := check.problem(arguments)) is not None:
            raise ToolError(f"Error executing tool {name}: {problem}")
        with labelled(client=_client_name(context)):
            return await super().call_tool(name, arguments, context)


def _client_name(context: Context[AppContextOnDemand, Any] | None) -> str | None:
    """The host that made the call, as its MCP `clientInfo` names it (`claude-ai 0.1.0`), for its ledger rows."""
    try:
        params = context.session.client_params if context is not None else None
    except (AttributeError, LookupError, ValueError):  # no request in flight (a direct call)
        return None
    if params is None:
        return None
    info = params.client_info
    return f"{info.name} {info.version}".strip()[:200] if info.version else info.name[:200]


def build_server(settings: Settings) -> MCPServer[AppContextOnDemand]:
    """The MCP server with every tool registered; client, store and router open once, in the background
    after the tools are first listed (or at the first tool call, if that comes first)."""

    health = Health()

    @asynccontextmanager
    async def lifespan(server: MCPServer[AppContextOnDemand]) -> AsyncIterator[AppContextOnDemand]:
        context = health.context = AppContextOnDemand(settings)
        async with anyio.create_task_group() as background:
            background.start_soon(context.keepalives.run)
            background.start_soon(context.run)
            try:
                yield context
            finally:
                await context.close()
                background.cancel_scope.cancel()

    server = ModelyardServer(
        "modelyard",
        version=__version__,
        instructions=INSTRUCTIONS,
        website_url="https://github.com/modelyard/modelyard",
        lifespan=lifespan,
        log_level="DEBUG" if settings.debug else "WARNING",
        middleware=[_warm_up_after_listing_tools],
    )
    server.custom_route("/health", methods=["GET"])(health.respond)

    # The tools depend on the server's AppContext, so they are imported here, at build time.
    from modelyard.tools import register_all

    register_all(server)
    return server


async def _warm_up_after_listing_tools(
    ctx: ServerRequestContext[AppContextOnDemand, Any], call_next: CallNext
) -> HandlerResult:
    """A host lists the tools as it starts, well before its first call: open the context then."""
    result = await call_next(ctx)
    if ctx.method == "tools/list":
        ctx.lifespan_context.warm_up()
    return result


def serve(settings: Settings, transport: Transport = "stdio", *, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the server until interrupted. HTTP transports need a bearer token off loopback.

    Raises:
        ConfigurationError: HTTP on a non-loopback address without `MODELYARD_HTTP_TOKEN`.
    """
    with paused_gc():  # building makes no garbage worth a collection
        server = build_server(settings)
        tune_gc()  # this process is the server's own: what was imported so far lives as long as it does
    if transport == "stdio":
        from modelyard.server.stdio import run_stdio

        anyio.run(run_stdio, server)
        return
    token = settings.http_token.get_secret_value() if settings.http_token else None
    check_bind(host, token)
    import uvicorn

    # Every loopback spelling gets the SDK's DNS-rebinding check, not only the three it recognises itself.
    security = transport_security(host)
    if transport == "streamable-http":
        app = server.streamable_http_app(host=host, stateless_http=settings.http_stateless, transport_security=security)
    else:
        from modelyard.server.sse import sse_app

        app = sse_app(server, transport_security=security)  # one context for every connection, not one each
    asgi = BearerAuth(app, token) if token else app
    # Idle connections stay open longer than clients keep theirs (httpx's pool: 5 s), so a client never
    # reuses a connection at the moment the server closes it (uvicorn's default is also 5 s: a ReadError).
    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_keep_alive=_IDLE_CONNECTION_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    anyio.run(uvicorn.Server(config).serve)
