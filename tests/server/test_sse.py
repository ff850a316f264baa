"""`modelyard.server.sse`: the SSE app's connections are served only while its lifespan holds the context
(served over real loopback HTTP in `test_http_transports.py`)."""

from __future__ import annotations

import pytest
from mcp.server.lowlevel import Server
from mcp.server.sse import SseServerTransport
from starlette.types import Message

from modelyard.server.sse import MESSAGE_PATH, SseConnections

pytestmark = pytest.mark.anyio


async def _nothing_received() -> Message:
    raise AssertionError("the connection was read")


async def _nothing_sent(message: Message) -> None:
    raise AssertionError(f"the connection was answered: {message}")


async def test_a_connection_arriving_while_the_apps_lifespan_is_not_running_is_refused_before_it_is_served() -> None:
    """Without the lifespan (an app served with `lifespan="off"`, or after it ended) there is no context to
    serve a connection with: it fails at once, saying so, rather than serving tools that have none."""
    connections = SseConnections(Server("t"), SseServerTransport(MESSAGE_PATH))
    scope = {"type": "http", "method": "GET", "path": "/sse", "headers": []}
    async with connections.run():
        pass
    with pytest.raises(RuntimeError, match="lifespan is not running"):
        await connections(scope, _nothing_received, _nothing_sent)
