"""The HTTP/1.1 layer: keep-alive, bodies, chunked streams and the fault primitives."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx2
import pytest
from anyio.abc import SocketStream

from modelyard.sandbox.http import (
    CloseConnection,
    Handler,
    Hang,
    HttpServer,
    RawBytes,
    Reply,
    Request,
    Reset,
    Response,
    StreamResponse,
)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
    server = HttpServer(handler)
    port = await server.bind("127.0.0.1", 0)
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve_forever)
        yield port
        group.cancel_scope.cancel()


async def echo(request: Request) -> Reply:
    return Response(200, request.method.encode() + b" " + request.path.encode() + b" " + request.body)


async def read_until(stream: SocketStream, marker: bytes, limit: float = 2) -> bytes:
    data = b""
    with anyio.fail_after(limit):
        while marker not in data:
            data += await stream.receive()
    return data


async def test_port_zero_binds_a_free_loopback_port_and_reports_it() -> None:
    """Port 0 picks a free port, which `bind` returns, on 127.0.0.1."""
    async with serving(echo) as port, httpx2.AsyncClient() as client:
        response = await client.post(f"http://127.0.0.1:{port}/x", content=b"hello")
    assert port > 0
    assert response.text == "POST /x hello"


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    """Two requests written on one socket get two responses on that socket."""
    request = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    async with serving(echo) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        first = await read_until(stream, b"POST /a abc")
        await stream.send(request.replace(b"/a", b"/b"))
        second = await read_until(stream, b"POST /b abc")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert second.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_streamed_bodies_are_sent_chunk_by_chunk() -> None:
    """A StreamResponse arrives with chunked transfer encoding, each chunk as sent."""

    async def chunks() -> AsyncGenerator[bytes, None]:
        for part in (b"one ", b"two ", b"three"):
            yield part

    async def handler(request: Request) -> Reply:
        return StreamResponse(200, chunks())

    async with (
        serving(handler) as port,
        httpx2.AsyncClient() as client,
        client.stream("GET", f"http://127.0.0.1:{port}/") as response,
    ):
        parts = [part async for part in response.aiter_raw()]
    assert response.headers["transfer-encoding"] == "chunked"
    assert b"".join(parts) == b"one two three"


async def test_reset_aborts_with_a_tcp_rst_before_any_response() -> None:
    """A Reset reply makes the client's read fail with a connection reset, not a clean EOF."""

    async def handler(request: Request) -> Reply:
        return Reset()

    async with serving(handler) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(anyio.BrokenResourceError) as caught:
            await stream.receive()
    assert isinstance(caught.value.__cause__, ConnectionResetError)


async def test_close_connection_with_reset_drops_a_stream_midway_with_an_rst() -> None:
    """Raising CloseConnection(reset=True) after a chunk resets the connection."""

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield b"first"
        raise CloseConnection(reset=True)

    async def handler(request: Request) -> Reply:
        return StreamResponse(200, chunks())

    async with serving(handler) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_until(stream, b"first")
        with pytest.raises(anyio.BrokenResourceError), anyio.fail_after(2):
            while True:
                await stream.receive()


async def test_close_connection_without_reset_ends_the_body_early() -> None:
    """A plain CloseConnection closes after the sent chunks: the client sees an incomplete body."""

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield b"partial"
        raise CloseConnection()

    async def handler(request: Request) -> Reply:
        return StreamResponse(200, chunks())

    async with serving(handler) as port, httpx2.AsyncClient() as client:
        with pytest.raises(httpx2.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_hang_answers_nothing_and_reports_when_the_client_leaves() -> None:
    """A Hang reply sends no byte and calls on_disconnect once the client closes."""
    left = anyio.Event()

    async def handler(request: Request) -> Reply:
        return Hang(on_disconnect=left.set)

    async with serving(handler) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with anyio.move_on_after(0.1) as waited:
                await stream.receive()
            assert waited.cancelled_caught
        with anyio.fail_after(2):
            await left.wait()


async def test_raw_bytes_are_written_verbatim() -> None:
    """RawBytes bypasses HTTP framing entirely."""

    async def handler(request: Request) -> Reply:
        return RawBytes(b"not http at all")

    async with serving(handler) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await read_until(stream, b"all") == b"not http at all"


async def test_a_client_leaving_mid_stream_is_reported() -> None:
    """When the client closes during a slow stream, on_disconnect fires and the stream stops."""
    left = anyio.Event()
    sent: list[int] = []

    async def chunks() -> AsyncGenerator[bytes, None]:
        for index in range(100):
            sent.append(index)
            yield b"data: x\n\n"
            await anyio.sleep(0.01)

    async def handler(request: Request) -> Reply:
        return StreamResponse(200, chunks(), on_disconnect=left.set)

    async with serving(handler) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await read_until(stream, b"data: x")
        with anyio.fail_after(2):
            await left.wait()
    assert len(sent) < 100


async def test_a_failing_handler_answers_500_and_keeps_serving() -> None:
    """An exception in the handler becomes a 500; the server stays up."""

    async def handler(request: Request) -> Reply:
        if request.path == "/boom":
            raise RuntimeError("boom")
        return Response(200, b"fine")

    async with serving(handler) as port, httpx2.AsyncClient() as client:
        broken = await client.get(f"http://127.0.0.1:{port}/boom")
        fine = await client.get(f"http://127.0.0.1:{port}/ok")
    assert (broken.status_code, fine.text) == (500, "fine")


async def test_garbage_requests_get_a_400() -> None:
    """A request h11 cannot parse is answered 400 and the connection closed."""
    async with serving(echo) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"NOT A REQUEST\r\n\r\n")
        assert (await read_until(stream, b"\r\n")).startswith(b"HTTP/1.1 400")


async def test_connection_close_and_http_1_0_clients_get_a_closed_connection() -> None:
    """`Connection: close` is honoured; an HTTP/1.0 stream is sent unchunked and ends with the close."""

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield b"alpha "
        yield b"beta"

    async def handler(request: Request) -> Reply:
        return StreamResponse(200, chunks()) if request.path == "/stream" else Response(200, b"ok")

    async with serving(handler) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            closed = await read_until(stream, b"ok")
            with pytest.raises(anyio.EndOfStream), anyio.fail_after(2):
                await stream.receive()
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"GET /stream HTTP/1.0\r\n\r\n")
            old = b""
            with anyio.fail_after(2):
                try:
                    while True:
                        old += await stream.receive()
                except anyio.EndOfStream:
                    pass
    assert b"connection: close" in closed
    assert old.endswith(b"\r\n\r\nalpha beta") and b"chunked" not in old
