"""The protocol floor: an MCP server over stdio with one tool that does nothing.

    python -m bench.empty_server    # serves until stdin closes

`bench.bench_mcp` times a `noop` round trip against it, next to modelyard's `execute`.
"""

from __future__ import annotations

from mcp.server import MCPServer

server = MCPServer("empty")


@server.tool()
async def noop() -> str:
    """Do nothing and say so (async: a plain `def` tool runs in a worker thread, which is no floor)."""
    return "ok"


if __name__ == "__main__":
    server.run("stdio")
