"""A small HTTP/1.1 server on anyio TCP streams and h11, with fault primitives.

A handler receives a fully read `Request` and returns one of these replies:

- `Response`: a fixed body with `Content-Length`;
- `StreamResponse`: a chunked body from an async generator, which may raise `CloseConnection` to end
  the connection mid-body (with a FIN, or with a TCP RST when `reset=True`);
- `Reset`: abort the connection with a TCP RST before any byte of a response;
- `Hang`: send nothing and wait until the client goes away;
- `RawBytes`: write bytes as they are (no HTTP framing), then close.

Connections are kept alive between requests (HTTP/1.1, unless the client asks to close; an
HTTP/1.0 stream is sent unchunked and ends with the connection). h11 parses the requests; responses
are framed here directly, which keeps the per-request cost low. A client that goes away while a
body is being sent is reported through the reply's `on_disconnect` callback.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote

import anyio
import h11
from anyio.abc import Listener, SocketAttribute, SocketStream

__all__ = [
    "CloseConnection",
    "Handler",
    "Hang",
    "HttpServer",
    "RawBytes",
    "Reply",
    "Request",
    "Reset",
    "Response",
    "StreamResponse",
]

_log = logging.getLogger(__name__)
_LINGER_RST = struct.pack("ii", 1, 0)
_CLOSE_GRACE_S = 2.0
_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}
_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


@dataclass(slots=True)
class Request:
    """One HTTP request, body included. Header names are lower-case."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes = b""
    client_host: str = ""
    keep_alive: bool = True
    """False when the client asked to close (or spoke HTTP/1.0 without keep-alive)."""
    chunked: bool = True
    """Whether a streamed body may use chunked encoding (HTTP/1.1)."""

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (the last value wins when one repeats)."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))


@dataclass(slots=True)
class Response:
    """A complete response with a fixed body."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class StreamResponse:
    """A response whose body is sent chunk by chunk (chunked transfer encoding)."""

    status: int
    chunks: AsyncGenerator[bytes, None]
    content_type: str = "text/event-stream"
    headers: list[tuple[str, str]] = field(default_factory=list)
    on_disconnect: Callable[[], None] | None = None
    watch: bool = True
    """Read from the client while sending, to notice at once when it leaves (False for bodies sent
    in one go, where there is nothing to interrupt)."""


@dataclass(slots=True)
class Reset:
    """Abort the connection with a TCP RST before sending anything."""


@dataclass(slots=True)
class Hang:
    """Send nothing; wait until the client closes the connection."""

    on_disconnect: Callable[[], None] | None = None


@dataclass(slots=True)
class RawBytes:
    """Write these bytes verbatim, then close (with an RST when `reset`)."""

    data: bytes
    reset: bool = False


class CloseConnection(Exception):
    """Raised inside a `StreamResponse` body to drop the connection mid-response."""

    def __init__(self, *, reset: bool = False) -> None:
        super().__init__("close connection")
        self.reset = reset


Reply = Response | StreamResponse | Reset | Hang | RawBytes
Handler = Callable[[Request], Awaitable[Reply]]


class HttpServer:
    """Serves one handler over HTTP/1.1 on a TCP listener."""

    def __init__(self, handler: Handler, *, on_connect: Callable[[], None] | None = None) -> None:
        self._handler = handler
        self._on_connect = on_connect
        self._listener: Listener[SocketStream] | None = None

    async def bind(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port (port 0 picks a free one) and return the bound port."""
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        self._listener = listener
        return int(listener.listeners[0].extra(SocketAttribute.local_port))

    async def serve_forever(self) -> None:
        """Accept connections until cancelled. `bind` must have been called."""
        if self._listener is None:
            raise RuntimeError("call bind() before serve_forever()")
        async with self._listener:
            await self._listener.serve(self._serve_connection)

    async def _serve_connection(self, stream: SocketStream) -> None:
        if self._on_connect is not None:
            self._on_connect()
        client = _Client(stream, _peer_host(stream))
        try:
            while True:
                request = await client.read_request()
                if request is None:
                    break
                reply = await self._call_handler(request)
                if not await _send_reply(client, reply, request):
                    return
                if not request.keep_alive:
                    await _close_gracefully(stream)
                    return
        except h11.RemoteProtocolError:
            await _send_bad_request(stream)
        except _GONE:
            pass
        except Exception:
            _log.exception("sandbox connection from %s failed", client.host)
        finally:
            await stream.aclose()

    async def _call_handler(self, request: Request) -> Reply:
        try:
            return await self._handler(request)
        except Exception:
            _log.exception("sandbox handler failed for %s %s", request.method, request.path)
            body = b'{"error":{"message":"Internal Server Error","code":500}}'
            return Response(500, body)


def _peer_host(stream: SocketStream) -> str:
    try:
        address = stream.extra(SocketAttribute.remote_address)
    except anyio.TypedAttributeLookupError:
        return ""
    return str(address[0]) if isinstance(address, tuple) else str(address)


class _Client:
    """One client connection: its socket and the bytes read past the current request."""

    def __init__(self, stream: SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self.pending = b""
        self.closed = False

    async def read_request(self) -> Request | None:
        """The next complete request, or None when the client has closed the connection."""
        conn = h11.Connection(h11.SERVER)
        if self.pending:
            conn.receive_data(self.pending)
        if self.closed:
            conn.receive_data(b"")  # h11 reads an empty chunk as the end of the stream
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                await self._receive_into(conn)
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                self.pending, self.closed = conn.trailing_data
                return _request(head, bytes(body), self.host)
            else:
                return None

    async def _receive_into(self, conn: h11.Connection) -> None:
        if conn.they_are_waiting_for_100_continue:
            await self.stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            data = await self.stream.receive()
        except _GONE:
            data = b""
        conn.receive_data(data)


def _request(head: h11.Request, body: bytes, client_host: str) -> Request:
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in head.headers}
    path, _, query = head.target.decode("latin-1").partition("?")
    connection = headers.get("connection", "").lower()
    http_11 = head.http_version == b"1.1"
    keep_alive = "close" not in connection if http_11 else "keep-alive" in connection
    return Request(
        method=head.method.decode("ascii"),
        path=unquote(path),
        query_string=query,
        headers=headers,
        body=body,
        client_host=client_host,
        keep_alive=keep_alive,
        chunked=http_11,
    )


def _head(status: int, headers: list[tuple[str, str]], request: Request, length: int | None) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
    lines += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers]
    if length is not None:
        lines.append(b"content-length: %d\r\n" % length)
    elif request.chunked:
        lines.append(b"transfer-encoding: chunked\r\n")
    lines.append(b"\r\n" if request.keep_alive else b"connection: close\r\n\r\n")
    return b"".join(lines)


async def _send_reply(client: _Client, reply: Reply, request: Request) -> bool:
    """Send one reply; True when the connection can serve another request."""
    stream = client.stream
    if isinstance(reply, Response):
        headers = [("content-type", reply.content_type), *reply.headers]
        await stream.send(_head(reply.status, headers, request, len(reply.body)) + reply.body)
        return True
    if isinstance(reply, StreamResponse):
        if not request.chunked:
            request.keep_alive = False  # an HTTP/1.0 body ends when the connection closes
        return await _send_stream(client, reply, request)
    if isinstance(reply, Reset):
        await _reset(stream)
        return False
    if isinstance(reply, Hang):
        await _hang(stream, reply)
        return False
    await stream.send(reply.data)
    await (_reset(stream) if reply.reset else _close_gracefully(stream))
    return False


class _Watch:
    """Reads from the client while a body is sent, to notice at once when it goes away."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.gone = False

    async def run(self, scope: anyio.CancelScope) -> None:
        try:
            while True:
                # Anything read (a pipelined request) is kept for the next request.
                self.client.pending += await self.client.stream.receive()
        except _GONE:
            self.gone = True
            scope.cancel()


def _frame(chunk: bytes, chunked: bool) -> bytes:
    return b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk


async def _send_chunks(stream: SocketStream, reply: StreamResponse, request: Request) -> CloseConnection | None:
    headers = [("content-type", reply.content_type), ("cache-control", "no-cache"), *reply.headers]
    pending = _head(reply.status, headers, request, None)
    try:
        async for chunk in reply.chunks:
            if chunk:
                await stream.send(pending + _frame(chunk, request.chunked))
                pending = b""
        await stream.send(pending + (b"0\r\n\r\n" if request.chunked else b""))
    except CloseConnection as close:
        return close
    finally:
        await reply.chunks.aclose()
    return None


async def _send_stream(client: _Client, reply: StreamResponse, request: Request) -> bool:
    watch = _Watch(client)
    close: CloseConnection | None = None
    try:
        if not reply.watch:
            close = await _send_chunks(client.stream, reply, request)
        else:
            async with anyio.create_task_group() as group:
                group.start_soon(watch.run, group.cancel_scope)
                close = await _send_chunks(client.stream, reply, request)
                group.cancel_scope.cancel()
    except* _GONE:
        watch.gone = True
    if watch.gone:
        if reply.on_disconnect is not None:
            reply.on_disconnect()
        return False
    if close is not None:
        await (_reset(client.stream) if close.reset else _close_gracefully(client.stream))
        return False
    return True


async def _reset(stream: SocketStream) -> None:
    """Close with SO_LINGER {1, 0}, which makes the kernel send a TCP RST."""
    try:
        raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    except (OSError, anyio.TypedAttributeLookupError):
        pass
    await stream.aclose()


async def _hang(stream: SocketStream, reply: Hang) -> None:
    try:
        while await stream.receive():
            pass
    except _GONE:
        pass
    if reply.on_disconnect is not None:
        reply.on_disconnect()


async def _close_gracefully(stream: SocketStream) -> None:
    """Half-close, then give the client a moment to read everything and close its side."""
    try:
        await stream.send_eof()
        with anyio.move_on_after(_CLOSE_GRACE_S):
            while await stream.receive():
                pass
    except _GONE:
        pass
    await stream.aclose()


async def _send_bad_request(stream: SocketStream) -> None:
    body = b'{"error":{"message":"Bad Request","code":400}}'
    head = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % len(body)
    try:
        await stream.send(head + b"connection: close\r\n\r\n" + body)
    except _GONE:
        return
    await _close_gracefully(stream)
