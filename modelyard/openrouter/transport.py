"""An httpx2 transport on aiohttp's connection pool: the upstream client's default on asyncio.

Why: at 200 concurrent requests httpx2's own pool (httpcore2) spends ~1 ms of CPU per request and
reaches about a quarter of aiohttp's throughput against the same upstream; through this transport
httpx2 keeps its API (and `MockTransport` for tests) and gets within ~15% of raw aiohttp
(figures in `bench/RESULTS.md`). `httpx-aiohttp` does the same but pulls in the old `httpx` as a
second HTTP stack and maps a server disconnect to `ConnectTimeout`; this one maps every aiohttp
failure to the httpx2 exception it means, so `modelyard.openrouter.failures` sees httpx2 only.

aiohttp runs on asyncio only: under any other event loop (trio) requests go to httpx2's own
transport with the same limits. With proxy variables in the environment the client keeps httpx2's
own transport (which honours them): aiohttp's `trust_env` looks them up in a worker thread on every
request, which costs more than the pool saves.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import socket
import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import httpx2

if TYPE_CHECKING:
    from collections.abc import Iterator

    import aiohttp

__all__ = ["AiohttpTransport", "default_transport", "on_asyncio"]


def default_transport(limits: httpx2.Limits) -> httpx2.AsyncBaseTransport | None:
    """`AiohttpTransport`, or None (httpx2's own) when a proxy is configured or aiohttp is missing."""
    if urllib.request.getproxies() or importlib.util.find_spec("aiohttp") is None:
        return None
    return AiohttpTransport(limits=limits)


_MAX_HEADER_BYTES: Final = 65536

# The connect timeout of the request being sent from this context: it bounds the host's lookup, which
# aiohttp's `sock_connect` leaves out (httpx2's connect timeout covers it). Set only when it changes.
_LOOKUP_TIMEOUT: contextvars.ContextVar[float | None] = contextvars.ContextVar("lookup_timeout", default=None)


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """Sends httpx2 requests through one `aiohttp.ClientSession` (created on first use).

    Args:
        limits: `max_connections` (None: unlimited) and `keepalive_expiry` of the pool.
        tls_context: makes the TLS context for `https://` requests, once, at the first of them
            (default: httpx2's, with certifi's CA bundle); plain-HTTP upstreams never need one.
    """

    def __init__(
        self,
        *,
        limits: httpx2.Limits | None = None,
        tls_context: Callable[[], ssl.SSLContext] = httpx2.create_ssl_context,
    ) -> None:
        self._limits = limits or httpx2.Limits(max_connections=256, max_keepalive_connections=256)
        self._make_tls_context = tls_context
        self._tls: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None
        self._fallback: httpx2.AsyncHTTPTransport | None = None
        self._timeouts: dict[tuple[float | None, float | None, float | None], aiohttp.ClientTimeout] = {}
        self._resolver: aiohttp.abc.AbstractResolver | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if not on_asyncio():
            return await self._native().handle_async_request(request)
        try:
            body = request.content
        except httpx2.RequestNotRead:
            body = await request.aread()
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]
        timeouts = request.extensions.get("timeout", {})
        response = await self.send(request.method, str(request.url), headers, body, timeouts, request=request)
        if not response.content_type.startswith("text/event-stream"):
            # Not a stream: read it in one go (httpx2 would read it all before returning anyway).
            return self.as_httpx2(response, await self.read(response, request), request)
        return self.as_httpx2(response, None, request)

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeouts: dict[str, float | None],
        *,
        request: httpx2.Request | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one request straight through aiohttp and return its response, body unread (asyncio only).

        The client's chat calls come here directly: building httpx2's request and response objects
        costs about as much CPU as aiohttp's whole round trip. Failures are raised as the httpx2
        exceptions they mean, as from `handle_async_request`.
        """
        session = self._session if self._session is not None else self._open()
        timeout = self._timeout(timeouts)
        # A connection timeout from this moment on is aiohttp's `connect` (the pool wait and the connect)
        # running out, not its `sock_connect`: the request waited for the pool (see `_timeout`).
        pool_deadline = None if timeout.connect is None else asyncio.get_running_loop().time() + timeout.connect
        if _LOOKUP_TIMEOUT.get() != timeout.sock_connect:
            _LOOKUP_TIMEOUT.set(timeout.sock_connect)
        with _mapped(request, method, url, pool_deadline, timeouts):
            return await session.request(
                method,
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                ssl=self._tls_for(url),
            )

    async def read(self, response: aiohttp.ClientResponse, request: httpx2.Request | None = None) -> bytes:
        """The whole body of `response`, which is then released (its connection back in the pool)."""
        try:
            with _mapped(request, response.method, str(response.url)):
                return await response.read()
        finally:
            response.release()

    async def chunks(
        self, response: aiohttp.ClientResponse, request: httpx2.Request | None = None
    ) -> AsyncIterator[bytes]:
        """The body of `response` as it arrives.

        The read timeout bounds each wait for more of it, as httpx2's does, not the time between two
        arrivals, as aiohttp's `sock_read` does: a reader still busy with one chunk when the next one is
        due is not timed out for the upstream's gap.
        """
        reads = _TimedReads(response.content, _take_read_timeout(response))
        try:
            with _mapped(request, response.method, str(response.url)):
                while chunk := await reads.next():
                    yield chunk
        finally:
            reads.close()

    def as_httpx2(
        self, response: aiohttp.ClientResponse, content: bytes | None, request: httpx2.Request | None = None
    ) -> httpx2.Response:
        """`response` as an httpx2 response: with `content` when read, else streaming its body."""
        request = request or httpx2.Request(response.method, str(response.url))
        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode("latin-1")}
        if content is not None:
            return httpx2.Response(
                response.status, headers=response.raw_headers, content=content, request=request, extensions=extensions
            )
        return httpx2.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(self, response, request),
            request=request,
            extensions=extensions,
        )

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        self._resolver = _timed_resolver()
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            keepalive_timeout=self._limits.keepalive_expiry or 5.0,
            resolver=self._resolver,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # httpx2 decodes Content-Encoding itself
            cookie_jar=aiohttp.DummyCookieJar(),  # and keeps the cookies
            # httpx2 (h11) reads header lines of any length within 64 KiB; aiohttp stops at 8 KiB by default.
            max_line_size=_MAX_HEADER_BYTES,
            max_field_size=_MAX_HEADER_BYTES,
            # No skip_auto_headers: httpx2's Accept, Accept-Encoding and User-Agent are always set, so
            # aiohttp adds none of its own; skipping them costs a header copy per request.
        )
        return self._session

    def _tls_for(self, url: str) -> ssl.SSLContext | bool:
        """`ssl=` for `url`'s request: loading a CA bundle costs tens of ms, paid at the first https one."""
        if not url.startswith("https:"):
            return True  # aiohttp's default, which a plain-HTTP request never uses
        if self._tls is None:
            self._tls = self._make_tls_context()
        return self._tls

    def _timeout(self, timeouts: dict[str, float | None]) -> aiohttp.ClientTimeout:
        """httpx2's timeouts as aiohttp's (the same few settings recur, so each is built once).

        aiohttp's `connect` bounds the wait for a free connection and the connect together, where httpx2
        gives each its own timeout: it gets their sum, so a connect after a wait still has all of its own
        (`sock_connect`), and only a wait for the pool can run it out. `sock_read` bounds the wait for
        the headers and for a body read whole; a streamed body's reads are timed by `chunks`.
        """
        key = (timeouts.get("pool"), timeouts.get("connect"), timeouts.get("read"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            import aiohttp

            pool, connect, read = key
            budget = None if pool is None else pool + (connect or 0.0)
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, connect=budget, sock_connect=connect, sock_read=read
            )
        return timeout

    def _native(self) -> httpx2.AsyncHTTPTransport:
        if self._fallback is None:
            self._fallback = httpx2.AsyncHTTPTransport(limits=self._limits)
        return self._fallback

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        if self._resolver is not None:
            resolver, self._resolver = self._resolver, None
            await resolver.close()  # a resolver passed in is not the connector's to close
        if self._fallback is not None:
            await self._fallback.aclose()


class _Body(httpx2.AsyncByteStream):
    """An event stream as it arrives; closing it early closes the connection (cancelling upstream)."""

    def __init__(self, transport: AiohttpTransport, response: aiohttp.ClientResponse, request: httpx2.Request) -> None:
        self._transport = transport
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._transport.chunks(self._response, self._request):
            yield chunk

    async def aclose(self) -> None:
        # release() keeps the connection only when the body was read to its end; otherwise it closes it.
        self._response.release()


def on_asyncio() -> bool:
    """True inside a running asyncio loop (aiohttp's only home)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _timed_resolver() -> aiohttp.abc.AbstractResolver:
    """aiohttp's default resolver, each lookup bounded by the connect timeout of the request it is for.

    aiohttp's `sock_connect` starts after the lookup, which only its `connect` bounds: that is the pool
    wait and the connect together (see `AiohttpTransport._timeout`), so a lookup that never answered
    ran it out and failed as a pool timeout, after both, where httpx2 fails it as a connect timeout.
    (A class made here: aiohttp is imported only when used.)
    """
    import aiohttp.abc

    class TimedResolver(aiohttp.abc.AbstractResolver):
        def __init__(self) -> None:
            self._resolver = aiohttp.DefaultResolver()

        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[aiohttp.abc.ResolveResult]:
            async with asyncio.timeout(_LOOKUP_TIMEOUT.get()):
                return await self._resolver.resolve(host, port, family)

        async def close(self) -> None:
            await self._resolver.close()

    return TimedResolver()


def _take_read_timeout(response: aiohttp.ClientResponse) -> float | None:
    """Stop aiohttp's `sock_read` timer for the rest of `response`'s body and return its seconds.

    The timer is the connection's, which sets it again for its next response. None when the body has
    all arrived (its connection is then back in the pool, perhaps another response's already).
    """
    connection = response.connection
    protocol = connection.protocol if connection is not None else None
    if protocol is None or not hasattr(protocol, "start_timeout"):  # an aiohttp without it: `sock_read` stays on
        return None
    wait, protocol.read_timeout = protocol.read_timeout, None
    protocol.start_timeout()  # without a timeout: cancels the timer running since the last arrival
    return wait


class _TimedReads:
    """A streamed body's reads, each wait for more of it bounded by `wait` seconds (None: unbounded).

    One timer per body, not one per read (an `asyncio.timeout` per read costs ~4 µs a chunk): it wakes
    at most every `wait` seconds, and fails the body, with a `TimeoutError` from the read, only when a
    read has by then waited that long.
    """

    def __init__(self, content: aiohttp.StreamReader, wait: float | None) -> None:
        self._content = content
        self._wait = wait
        self._loop = asyncio.get_running_loop()
        self._since: float | None = None  # when the read waiting now began
        self._timer = None if wait is None else self._loop.call_later(wait, self._check)

    async def next(self) -> bytes:
        """What has arrived of the body, else the next of it as it arrives (b"" at its end)."""
        if chunk := self._content.read_nowait():
            return chunk
        self._since = self._loop.time()
        try:
            return await self._content.readany()
        finally:
            self._since = None

    def close(self) -> None:
        """Stop the timer (the body is read, or left)."""
        if self._timer is not None:
            self._timer.cancel()

    def _check(self) -> None:
        assert self._wait is not None
        content, now = self._content, self._loop.time()
        if content.is_eof() or content.exception() is not None:
            return  # no read will wait again
        due = (now if self._since is None else self._since) + self._wait
        if self._since is not None and now >= due:
            content.set_exception(TimeoutError("read timed out"))
        else:
            self._timer = self._loop.call_at(due, self._check)


@contextmanager
def _mapped(
    request: httpx2.Request | None,
    method: str,
    url: str,
    pool_deadline: float | None = None,
    timeouts: dict[str, float | None] | None = None,
) -> Iterator[None]:
    """Raise the httpx2 exception each aiohttp failure means (the client maps only httpx2's).

    `request` is the httpx2 request sent, if any; else one is built for the exception (only then), with
    `timeouts` as its `timeout` extension, as httpx2 sets it (a connect timeout's message names the
    limit). A connection timeout from `pool_deadline` (the event loop's time) on is the pool's.
    """
    import aiohttp

    try:
        yield
    except (aiohttp.ClientError, OSError) as exc:
        if request is None:
            request = httpx2.Request(method, url, extensions={"timeout": timeouts} if timeouts else None)
        raise _httpx2_error(exc, request, pool_deadline) from exc


def _httpx2_error(exc: BaseException, request: httpx2.Request, pool_deadline: float | None) -> httpx2.HTTPError:
    import aiohttp

    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        if pool_deadline is not None and asyncio.get_running_loop().time() >= pool_deadline:
            return httpx2.PoolTimeout(f"no connection free in the pool in time ({message})", request=request)
        return httpx2.ConnectTimeout(str(exc) or "connect timed out", request=request)
    if isinstance(exc, (TimeoutError, aiohttp.SocketTimeoutError)):
        return httpx2.ReadTimeout(str(exc) or "read timed out", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        # The OS error's own text, as httpx2's transport gives it: aiohttp's adds its `ssl` setting
        # ("ssl:default" even for a plain-HTTP URL), which says nothing of what failed.
        cause = exc.certificate_error if isinstance(exc, aiohttp.ClientConnectorCertificateError) else exc.os_error
        return httpx2.ConnectError(str(cause) or message, request=request)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        return httpx2.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx2.UnsupportedProtocol(message, request=request)
    return httpx2.ReadError(message, request=request)
