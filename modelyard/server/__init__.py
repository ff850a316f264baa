"""MCP wiring only: `build_server(settings)` and the lifespan's shared `AppContext`."""

from modelyard.server.app import build_server, serve
from modelyard.server.context import AppContext

__all__ = ["AppContext", "build_server", "serve"]
