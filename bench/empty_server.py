"""The protocol floor: an MCP server over stdio with a tool that does nothing, and a thin pass-through.

    python -m bench.empty_server                    # the SDK's stdio transport; serves until stdin closes
    python -m bench.empty_server --modelyard-stdio  # the same server on modelyard's stdio transport

`bench.bench_mcp` times a `noop` round trip against it, next to modelyard's `execute`: on the SDK's
transport it is the protocol floor the targets use; on modelyard's (`modelyard.server.stdio`, which
`modelyard serve` runs on) it shows how much of the difference is the transport. `pass_through` is
what the existing OpenRouter MCP servers do: post the prompt to `OPENROUTER_BASE_URL` and return the
answer's text (no selection, fallback, budget, ledger or cost); `bench_mcp` calls it on modelyard's
transport, as `execute` runs.
"""

from __future__ import annotations

import os
from typing import Any

from mcp.server import MCPServer

server = MCPServer("empty")


@server.tool()
async def noop() -> str:
    """Do nothing and say so (async: a plain `def` tool runs in a worker thread, which is no floor)."""
    return "ok"


class _Upstream:
    """The pass-through's aiohttp session, opened at its first call: the empty server's cold start, a
    floor, never imports aiohttp."""

    session: Any = None


@server.tool()
async def pass_through(prompt: str, model: str, max_tokens: int) -> str:
    """Ask `model` through OPENROUTER_BASE_URL's chat completions and return the answer's text."""
    import aiohttp

    if _Upstream.session is None:
        _Upstream.session = aiohttp.ClientSession()
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    headers = {"Authorization": f"Bearer {os.environ['OPENROUTER_API_KEY']}"}
    url = f"{os.environ['OPENROUTER_BASE_URL']}/chat/completions"
    async with _Upstream.session.post(url, json=body, headers=headers) as response:
        response.raise_for_status()
        data = await response.json()
    return str(data["choices"][0]["message"]["content"])


if __name__ == "__main__":
    import gc
    import sys

    # `modelyard.server.tuning.tune_gc`'s settings, as `modelyard serve` runs (the rows then compare the work,
    # not the collector), without importing `modelyard.server`: the empty server's cold start is a floor.
    gc.freeze()
    gc.set_threshold(20_000, *gc.get_threshold()[1:])

    if "--modelyard-stdio" in sys.argv:
        import anyio

        from modelyard.server.stdio import run_stdio

        anyio.run(run_stdio, server)
    else:
        server.run("stdio")
