"""The MCP tools: one module per family, each tool a thin typed adapter over `modelyard.routing`."""

from __future__ import annotations

from mcp.server import MCPServer

from modelyard.server.context import AppContextOnDemand
from modelyard.tools import account, execute, models, multi

__all__ = ["TOOL_NAMES", "register_all"]

TOOL_NAMES = (
    "execute",
    "plan_route",
    "compare_models",
    "execute_batch",
    "list_models",
    "get_metrics",
    "get_budget",
    "set_budget",
    "test_connection",
)


def register_all(server: MCPServer[AppContextOnDemand]) -> None:
    """Register every tool on `server` (the one place that lists them)."""
    for family in (execute, models, multi, account):
        family.register(server)
