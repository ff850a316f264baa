"""Hand-written upstreams for the transport tests: raw HTTP/1.1 on a byte stream, and a loopback
server answering every chat call with one reply."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.abc
from aiohttp import web

__all__ = ["Reply", "loopback_server", "read_request"]

Reply = tuple[int, dict[str, str], bytes]
"""A reply as sent: status, headers, body."""


async def read_request(stream: anyio.abc.ByteStream) -> bytes:
    """One HTTP request read from `stream`: its head, then its Content-Length of body (returned)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += await stream.receive()
    return body


@asynccontextmanager
async def loopback_server(
    reply: Reply, seen: list[tuple[dict[str, str], bytes]] | None = None, *, ca: Any | None = None
) -> AsyncIterator[str]:
    """A loopback HTTP server that answers every chat call with `reply`, noting each request's headers
    and body in `seen`; HTTPS, with a certificate from the `trustme.CA` `ca`, when given. Yields its base URL."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if seen is not None:
            seen.append((dict(request.headers), body))
        status, headers, content = reply
        return web.Response(status=status, headers=headers, body=content)

    server_context = None
    if ca is not None:
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_context)
    app = web.Application()
    app.router.add_post("/api/v1/chat/completions", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"{'https' if ca is not None else 'http'}://127.0.0.1:{port}/api/v1"
    finally:
        await runner.cleanup()
