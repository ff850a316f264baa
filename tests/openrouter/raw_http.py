"""Raw HTTP/1.1 on a byte stream, for the hand-written upstreams of the transport tests."""

from __future__ import annotations

import anyio.abc

__all__ = ["read_request"]


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
