"""The protocol floor: an MCP server over stdio with one tool that does nothing.

    python -m bench.empty_server                    # the SDK's stdio transport; serves until stdin closes
    python -m bench.empty_server --modelyard-stdio  # the same server on modelyard's stdio transport

`bench.bench_mcp` times a `noop` round trip against it, next to modelyard's `execute`: on the SDK's
transport it is the protocol floor the targets use; on modelyard's (`modelyard.server.stdio`, which
`modelyard serve` runs on) it shows how much of the difference is the transport.
"""

from __future__ import annotations

from mcp.server import MCPServer

server = MCPServer("empty")


@server.tool()
async def noop() -> str:
    """Do nothing and say so (async: a plain `def` tool runs in a worker thread, which is no floor)."""
    return "ok"


if __name__ == "__main__":
    import sys

    if "--modelyard-stdio" in sys.argv:
        import anyio

        from modelyard.server.stdio import run_stdio

        anyio.run(run_stdio, server)
    else:
        server.run("stdio")
