"""SSE for `modelyard serve --transport sse`, every connection served from the process's one context.

The SDK's `sse_app` serves each connection through `Server.run()`, which enters the server's lifespan
for that connection alone: every client opened a client, store and router of its own (a pool and a
store connection each, and a startup's cost), and what belongs to the process (breakers, observed
speeds, the response cache, the budget lease, requests in flight coalesced) was split between them.
The app here enters the lifespan once, in its own ASGI lifespan, as the SDK's streamable HTTP app
does (through its session manager), and serves each connection with the SDK's `serve_dual_era_loop`
on that lifespan's state, as the session manager serves its sessions with `serve_loop`. Its routes are
the SDK's: `/sse`, `/messages/` and the server's custom routes (`/health`).

A connection's response is ended here when the SDK's transport leaves it open: when the server stops,
sse-starlette's `EventSourceResponse` (which the transport streams with) sees uvicorn's `should_exit` and
cancels its own tasks, the one streaming the events among them, so the response's last message is never
sent. uvicorn then logged "ASGI callable returned without completing response" (an ERROR) for every
connected client on every restart, and cut each stream off mid-chunk rather than ending it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, Final

from mcp.server import MCPServer
from mcp.server.lowlevel import Server
from mcp.server.runner import serve_dual_era_loop
from mcp.server.sse import SseServerTransport
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Message, Receive, Scope, Send

__all__ = ["MESSAGE_PATH", "SSE_PATH", "SseConnections", "sse_app"]

SSE_PATH: Final = "/sse"
MESSAGE_PATH: Final = "/messages/"


def sse_app(server: MCPServer[Any], *, transport_security: TransportSecuritySettings) -> Starlette:
    """The ASGI app serving `server` over SSE, its lifespan entered once for the app's life (uvicorn's
    `lifespan="on"` runs it)."""
    # The SDK has no public way to its low-level server or custom routes; its own `sse_app` reads them so.
    lowlevel: Server[Any] = server._lowlevel_server
    transport = SseServerTransport(MESSAGE_PATH, security_settings=transport_security)
    connections = SseConnections(lowlevel, transport)
    routes: list[BaseRoute] = [
        Route(SSE_PATH, endpoint=connections, methods=["GET"]),
        Mount(MESSAGE_PATH, app=transport.handle_post_message),
        *server._custom_starlette_routes,  # last: the lowest precedence, as in the SDK's app
    ]
    return Starlette(routes=routes, lifespan=lambda _: connections.run())


class SseConnections:
    """The ASGI app at `/sse`: serves each connection with the server's lifespan state, which `run()` enters
    once for all of them.

    Args:
        server: the low-level server (its lifespan, handlers and initialization options).
        transport: the SSE transport whose `handle_post_message` receives the connections' messages.
    """

    def __init__(self, server: Server[Any], transport: SseServerTransport) -> None:
        self._server = server
        self._transport = transport
        self._state: Any = None
        self._running = False

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Enter the server's lifespan; connections are served until this exits, which closes it."""
        async with self._server.lifespan(self._server) as state:
            self._state, self._running = state, True
            try:
                yield
            finally:
                self._state, self._running = None, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one client connection until it closes.

        Raises:
            RuntimeError: the app's lifespan is not running (served without `lifespan="on"`, or shut down).
        """
        if not self._running:
            raise RuntimeError("An SSE connection arrived while the app's lifespan is not running.")
        response = _Response(send)
        async with self._transport.connect_sse(scope, receive, response.send) as (read, write):
            options = self._server.create_initialization_options()
            await serve_dual_era_loop(self._server, read, write, lifespan_state=self._state, init_options=options)
        await response.end()


class _Response:
    """The `send` of one connection's response, noting whether it began and ended, so `end()` can end one
    the transport left open (see the module's docstring).

    Args:
        send: the ASGI server's `send`.
    """

    def __init__(self, send: Send) -> None:
        self._send = send
        self._started = self._ended = False

    async def send(self, message: Message) -> None:
        """Send `message`, noting the response's start and its last body message."""
        if message["type"] == "http.response.start":
            self._started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self._ended = True
        await self._send(message)

    async def end(self) -> None:
        """Send the empty last body message of a response begun and not ended: the client's stream ends."""
        if self._started and not self._ended:
            with suppress(OSError):  # the client left first (an ASGI server may raise on a closed connection)
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})
