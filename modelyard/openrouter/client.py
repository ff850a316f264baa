"""The async OpenRouter client: the only code in modelyard that speaks OpenRouter over HTTP.

It does not retry: retry policy belongs to routing. Every failure is raised as one typed
`modelyard.errors.UpstreamError`, and the API key never appears in a message, repr or log line. The
failures reported inside a 200 answer (its body or its stream) are found by `answer_checks`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import httpx2
from pydantic import BaseModel, ValidationError

from modelyard.errors import ConfigurationError
from modelyard.openrouter.answer_checks import checked_chunks, checked_response
from modelyard.openrouter.catalog_schemas import EndpointsInfo, ModelInfo, ModelList
from modelyard.openrouter.failures import (
    Scrubber,
    error_from_response,
    error_from_transport,
    malformed,
)
from modelyard.openrouter.schemas import ChatChunk, ChatRequest, ChatResponse, Credits, Generation, KeyInfo
from modelyard.openrouter.sse import iter_lines
from modelyard.openrouter.transport import AiohttpTransport, default_transport, on_asyncio
from modelyard.settings import clean_secret

if TYPE_CHECKING:
    import aiohttp

__all__ = ["DEFAULT_BASE_URL", "GenerationHook", "OpenRouterClient"]

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
log = logging.getLogger(__name__)
_T = TypeVar("_T", bound=BaseModel)
GenerationHook = Callable[[str], None]
"""Told the generation id of a 200 answer whose headers arrived (see `OpenRouterClient.chat`)."""


class _DataEnvelope(BaseModel):
    data: Any


class OpenRouterClient:
    """Async client for OpenRouter's REST API.

    Args:
        api_key: the OpenRouter key (whitespace around it is dropped); only `list_models` and
            `model_endpoints` work without one.
        base_url: API root, e.g. the sandbox's `http://127.0.0.1:PORT/api/v1`.
        transport: an httpx2 transport to use instead of the default (tests, custom stacks). The
            default sends through aiohttp's pool on asyncio (`AiohttpTransport`), httpx2's elsewhere.
        timeout: read timeout in seconds for one request (a stream's wait for its next chunk, not the
            reader's own work between chunks); also bounds the wait for a free connection (on the
            aiohttp path, that wait and the connect together get `timeout + connect_timeout`).
        connect_timeout: seconds to establish a connection.
        limits: connection-pool limits (default 256 connections, all kept alive).
        app_name: sent as `X-OpenRouter-Title` / `X-Title` for OpenRouter's app attribution.
        app_url: sent as `HTTP-Referer`.
        clock: seconds since the epoch, used to turn rate-limit reset times into waits.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        limits: httpx2.Limits | None = None,
        app_name: str = "modelyard",
        app_url: str = "https://github.com/modelyard/modelyard",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api_key = _checked_key(api_key)
        self._scrub = Scrubber(self._api_key)
        self._clock = clock
        self.base_url = base_url.rstrip("/")
        headers = {"HTTP-Referer": app_url, "X-OpenRouter-Title": app_name, "X-Title": app_name}
        limits = limits or httpx2.Limits(max_connections=256, max_keepalive_connections=256)
        transport = transport or default_transport(limits)
        # Chat calls on asyncio go straight to aiohttp when it is the transport (see `_direct`).
        self._direct = transport if isinstance(transport, AiohttpTransport) else None
        self._http = httpx2.AsyncClient(
            base_url=self.base_url + "/",
            headers=headers,
            transport=transport,
            timeout=httpx2.Timeout(timeout, connect=connect_timeout),
            limits=limits,
        )
        # The chat call is the hot path: its URL, headers and timeouts are merged once, here, not
        # per request by `AsyncClient.build_request` (which re-parses the URL every time).
        self._chat_url = httpx2.URL(self.base_url + "/chat/completions")
        self._chat_headers = httpx2.Headers(self._http.headers)
        self._chat_headers.update({"Content-Type": "application/json", **self._auth(required=False)})
        self._chat_timeouts = self._http.timeout.as_dict()
        self._chat_extensions = {"timeout": self._chat_timeouts}
        self._chat_url_text = str(self._chat_url)
        self._chat_header_items = self._chat_headers.multi_items()

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"OpenRouterClient(base_url={self.base_url!r}, api_key=<{key}>)"

    @property
    def has_key(self) -> bool:
        """True when an API key was given."""
        return self._api_key is not None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # ------------------------------------------------------------------ catalog and account

    async def list_models(self) -> list[ModelInfo]:
        """`GET /models`: every model OpenRouter lists (text output, the service's default)."""
        response = await self._get("models", auth=False)
        return self._parse(response, ModelList, model=None).data

    async def model_endpoints(self, model_id: str) -> EndpointsInfo:
        """`GET /models/{id}/endpoints`: the providers serving a model and their latency/throughput."""
        slug = model_id.split(":", 1)[0]
        response = await self._get(f"models/{slug}/endpoints", auth=self.has_key, model=model_id)
        return EndpointsInfo.model_validate(self._parse(response, _DataEnvelope, model=model_id).data)

    async def key_info(self) -> KeyInfo:
        """`GET /key`: the key's label, limit, remaining credit and spend."""
        response = await self._get("key", auth=True)
        return KeyInfo.model_validate(self._parse(response, _DataEnvelope, model=None).data)

    async def credits(self) -> Credits:
        """`GET /credits`: the account's credit, bought and used (what bounds a key with no limit of its own).

        Raises:
            ForbiddenError: the key may not read it (since 2026 only a management key may).
        """
        response = await self._get("credits", auth=True)
        data = self._parse(response, _DataEnvelope, model=None).data
        try:
            return Credits.model_validate(data)
        except ValidationError:
            raise malformed(response.content, model=None, reason="not a credits record") from None

    async def generation(self, generation_id: str) -> Generation:
        """`GET /generation?id=`: OpenRouter's record of one completion."""
        response = await self._get("generation", auth=True, params={"id": generation_id})
        data = self._parse(response, _DataEnvelope, model=None).data
        try:
            return Generation.model_validate(data)
        except ValidationError:
            raise malformed(response.content, model=None, reason="not a generation record") from None

    # ------------------------------------------------------------------ chat

    async def chat(self, request: ChatRequest, *, on_generation: GenerationHook | None = None) -> ChatResponse:
        """`POST /chat/completions` without streaming.

        Args:
            on_generation: called with the generation id (`X-Generation-Id`) as soon as a 200 answer's
                headers arrive, before its body: from then on the answer may be billed even if the
                call fails or is cancelled (`generation()` tells later).

        Raises:
            UpstreamError: the typed failure, including an `error` object inside a 200 body
                (`StreamError`) and a body that is not JSON (`MalformedResponseError`).
        """
        direct = self._direct_transport()
        try:
            if direct is None:
                response = await self._send_whole(self._chat_request(request, stream=False), on_generation)
            else:
                sent = await self._send_direct(direct, request, stream=False)
                _announce(on_generation, sent.status, sent.headers)
                content = await direct.read(sent)
                if sent.status == 200 and not _encoded(sent):
                    return checked_response(
                        self._decode(content, ChatResponse, model=request.model), request.model, self._scrub
                    )
                response = direct.as_httpx2(sent, content)
        except httpx2.HTTPError as exc:
            raise error_from_transport(exc, model=request.model, scrub=self._scrub) from None
        result = self._parse(response, ChatResponse, model=request.model)
        return checked_response(result, request.model, self._scrub)

    async def stream_chat(
        self, request: ChatRequest, *, on_generation: GenerationHook | None = None
    ) -> AsyncGenerator[ChatChunk]:
        """`POST /chat/completions` with `stream: true`: yields each chunk as it arrives.

        The last chunk carries `usage`. Closing the iterator early closes the connection, which
        cancels the generation upstream (with most providers: others finish and bill it).
        `on_generation` is called as `chat`'s is.

        Raises:
            StreamError: an error chunk mid-stream (`finish_reason: "error"`).
            IncompleteStreamError: the stream ended or broke without a finish reason.
        """
        started = False
        direct = self._direct_transport()
        try:
            if direct is not None:
                sent = await self._send_direct(direct, request, stream=True)
                _announce(on_generation, sent.status, sent.headers)
                if sent.status == 200 and _event_stream(sent.content_type) and not _encoded(sent):
                    started = True
                    try:
                        async for chunk in checked_chunks(iter_lines(direct.chunks(sent)), request.model, self._scrub):
                            yield chunk
                    finally:
                        sent.release()  # keeps the connection only when the body was read to its end
                    return
                # An error, a plain JSON body or a compressed stream: the general path below reads it.
                streaming = sent.status < 300 and _event_stream(sent.content_type)
                response = direct.as_httpx2(sent, None if streaming else await direct.read(sent))
            else:
                response = await self._http.send(self._chat_request(request, stream=True), stream=True)
                _announce(on_generation, response.status_code, response.headers)
            try:
                if response.status_code >= 300:
                    await response.aread()
                    raise error_from_response(response, model=request.model, scrub=self._scrub, clock=self._clock)
                started = True
                async for chunk in self._chunks(response, request.model):
                    yield chunk
            finally:
                await response.aclose()
        except httpx2.HTTPError as exc:
            raise error_from_transport(exc, model=request.model, scrub=self._scrub, streaming_started=started) from None

    async def _chunks(self, response: httpx2.Response, model: str | None) -> AsyncIterator[ChatChunk]:
        if not _event_stream(response.headers.get("content-type", "")):
            # An error that happened before streaming began can arrive as a plain JSON 200 body.
            await response.aread()
            checked_response(self._parse(response, ChatResponse, model=model), model, self._scrub)
            raise malformed(response.content, model=model, reason="expected an event stream")
        # The same line splitting as the direct path (httpx2's `aiter_lines` also splits at U+2028,
        # which JSON may carry unescaped).
        async for chunk in checked_chunks(iter_lines(response.aiter_bytes()), model, self._scrub):
            yield chunk

    # ------------------------------------------------------------------ plumbing

    def _chat_request(self, request: ChatRequest, *, stream: bool) -> httpx2.Request:
        """The `POST /chat/completions` request as an httpx2 request (transports other than aiohttp's)."""
        return httpx2.Request(
            "POST",
            self._chat_url,
            headers=self._chat_headers,
            content=self._chat_body(request, stream=stream),
            extensions=self._chat_extensions,
        )

    async def _send_whole(self, request: httpx2.Request, on_generation: GenerationHook | None) -> httpx2.Response:
        """Send `request` through httpx2 and read the whole body, announcing the generation in between."""
        if on_generation is None:
            return await self._http.send(request)
        response = await self._http.send(request, stream=True)
        try:
            _announce(on_generation, response.status_code, response.headers)
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _chat_body(self, request: ChatRequest, *, stream: bool) -> bytes:
        """The JSON body, serialised by pydantic in one step."""
        self._auth()  # no key: the configuration error, before anything is sent
        wire = request.model_copy(update={"stream": True}) if stream else request
        return wire.model_dump_json(exclude_none=True, exclude=None if stream else {"stream"}).encode()

    def _direct_transport(self) -> AiohttpTransport | None:
        # Once closed, calls take the httpx2 path, which refuses them (aiohttp would open a new pool).
        return self._direct if self._direct is not None and not self._http.is_closed and on_asyncio() else None

    async def _send_direct(
        self, direct: AiohttpTransport, request: ChatRequest, *, stream: bool
    ) -> aiohttp.ClientResponse:
        """Send the chat request through aiohttp with exactly the headers httpx2 would have sent."""
        body = self._chat_body(request, stream=stream)
        sent = await direct.send("POST", self._chat_url_text, self._chat_header_items, body, self._chat_timeouts)
        # The line httpx2 logs for each request it sends (this path bypasses httpx2), at DEBUG: one INFO
        # line per request would cost `serve` 50-125 µs each in a host's log (MODELYARD_DEBUG=1 shows it).
        log.debug('HTTP Request: POST %s "HTTP/1.1 %d %s"', self._chat_url_text, sent.status, sent.reason or "")
        return sent

    def _auth(self, required: bool = True) -> dict[str, str]:
        if self._api_key is None:
            if required:
                raise ConfigurationError(
                    "No OpenRouter API key: set OPENROUTER_API_KEY (or point OPENROUTER_BASE_URL at "
                    "`modelyard sandbox` to try everything offline)."
                )
            return {}
        return {"Authorization": f"Bearer {self._api_key}"}

    async def _get(
        self, path: str, *, auth: bool, model: str | None = None, params: dict[str, str] | None = None
    ) -> httpx2.Response:
        headers = self._auth() if auth else self._auth(required=False)
        try:
            return await self._http.get(path, headers=headers, params=params)
        except httpx2.HTTPError as exc:
            raise error_from_transport(exc, model=model, scrub=self._scrub) from None

    def _parse(self, response: httpx2.Response, schema: type[_T], *, model: str | None) -> _T:
        if response.status_code >= 300:
            raise error_from_response(response, model=model, scrub=self._scrub, clock=self._clock)
        return self._decode(response.content, schema, model=model)

    def _decode(self, content: bytes, schema: type[_T], *, model: str | None) -> _T:
        try:
            # Non-streamed bodies start with "\n         \n" keep-alives (§4.3); JSON allows that.
            return schema.model_validate_json(content)
        except ValidationError:
            raise malformed(content, model=model, reason=f"not a valid {schema.__name__}") from None


def _event_stream(content_type: str) -> bool:
    """Whether a Content-Type names an event stream, in any case: media types are case-insensitive
    (RFC 9110 §8.3.1), and httpx2 hands the header over as sent (aiohttp lower-cases it)."""
    return content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


def _encoded(response: aiohttp.ClientResponse) -> bool:
    """Whether the body is compressed (then httpx2 decodes it, on the general path)."""
    return "Content-Encoding" in response.headers


def _announce(on_generation: GenerationHook | None, status: int, headers: Mapping[str, str]) -> None:
    """Tell `on_generation` the id of a 200 answer whose headers have arrived."""
    if on_generation is not None and status == 200 and (generation_id := headers.get("x-generation-id")):
        on_generation(generation_id)


def _checked_key(api_key: str | None) -> str | None:
    """The key without the whitespace around it, or None; one that cannot go in a header is refused here,
    before any request (where the HTTP library would quote it in its error)."""
    if not api_key:
        return None
    try:
        return clean_secret(api_key, "The OpenRouter API key") or None
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
