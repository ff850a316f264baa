"""A new user's setup mistakes say what to fix, the same on both HTTP paths (httpx2's and the direct one).

A base URL without `/api/v1` gets 404s that are not OpenRouter's (a web page, or a bare "Not Found"):
`WrongBaseUrlError`, naming the URL and OPENROUTER_BASE_URL, where OpenRouter's own JSON 404s ("No
endpoints found ...") stay `UpstreamNotFoundError`. Nothing listening is a connect error naming the
URL (and never aiohttp's `ssl:default`). A rejected key points at OPENROUTER_API_KEY, never quoting it.
Each case runs against the sandbox over loopback, or against hand-made replies served to both paths.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx2
import pytest

from modelyard import errors
from modelyard.openrouter import ChatRequest, OpenRouterClient
from modelyard.openrouter.transport import AiohttpTransport
from modelyard.sandbox import Sandbox
from tests.openrouter.raw_http import Reply, loopback_server

pytestmark = pytest.mark.anyio

KEY = "sk-or-v1-sandbox"
WRONG_KEY = "sk-or-v1-not-the-sandboxs-key-0123456789"
REQUEST = ChatRequest(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
PATHS = ["direct", "httpx2"]
Call = Callable[[OpenRouterClient], Awaitable[Any]]


def _wrong_base_url(url: str) -> str:
    return (
        f"The upstream answered 404 Not Found at {url}, which is not an OpenRouter API path: check "
        "OPENROUTER_BASE_URL (it should end in /api/v1, e.g. https://openrouter.ai/api/v1)"
    )


def _transport(path: str) -> httpx2.AsyncBaseTransport | None:
    """None: the default, aiohttp's pool with the chat calls sent straight through it (the direct path)."""
    return httpx2.AsyncHTTPTransport() if path == "httpx2" else None


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.running(api_key=KEY) as sb:
        yield sb


async def _chat(client: OpenRouterClient) -> Any:
    return await client.chat(REQUEST)


async def _stream(client: OpenRouterClient) -> Any:
    return [chunk async for chunk in client.stream_chat(REQUEST)]


async def _models(client: OpenRouterClient) -> Any:
    return await client.list_models()


async def _key(client: OpenRouterClient) -> Any:
    return await client.key_info()


CALLS: dict[str, tuple[Call, str]] = {
    "chat": (_chat, "/chat/completions"),
    "stream": (_stream, "/chat/completions"),
    "models": (_models, "/models"),
    "key": (_key, "/key"),
}


async def _failure(client: OpenRouterClient, call: Call) -> errors.UpstreamError:
    with pytest.raises(errors.UpstreamError) as caught:
        await call(client)
    return caught.value


# ------------------------------------------------------------------ a base URL without /api/v1


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", CALLS)
async def test_a_base_url_without_api_v1_says_to_check_openrouter_base_url(
    sandbox: Sandbox, path: str, name: str
) -> None:
    """The sandbox's origin as the base URL (the `/api/v1` left out): every call fails as the wrong base
    URL it is, naming the URL it reached, on both paths."""
    origin = sandbox.base_url.removesuffix("/api/v1")
    call, suffix = CALLS[name]
    async with OpenRouterClient(KEY, base_url=origin, transport=_transport(path)) as client:
        assert isinstance(client._direct, AiohttpTransport) == (path == "direct")
        error = await _failure(client, call)
    assert type(error) is errors.WrongBaseUrlError and isinstance(error, errors.UpstreamNotFoundError)
    assert str(error) == _wrong_base_url(origin + suffix)
    assert (error.status, error.retryable, error.kind) == (404, False, "wrong_base_url")


_JSON = {"content-type": "application/json"}
NOT_OPENROUTERS_404: dict[str, Reply] = {
    "a web page": (404, {"content-type": "text/html"}, b"<!DOCTYPE html><html><h1>404</h1></html>"),
    "a bare JSON Not Found": (404, _JSON, b'{"error":{"message":"Not Found","code":404}}'),
    "another server's JSON": (404, _JSON, b'{"detail":"Not Found"}'),
    "an empty body": (404, {}, b""),
}
OPENROUTERS_404: Reply = (
    404,
    _JSON,
    json.dumps(
        {
            "error": {
                "message": "No endpoints found that support tool use. To learn more about provider routing, "
                "visit: https://openrouter.ai/docs/provider-routing",
                "code": 404,
            },
            "user_id": "user_2x7DNyswjOHVRWDYVMCIROyGjsS",
        }
    ).encode(),
)


async def _on_both_paths(reply: Reply, call: Call) -> tuple[errors.UpstreamError, str]:
    """The error `call` raises for `reply`, the same from the httpx2 path (`MockTransport`) and the direct
    path (aiohttp over loopback), both at one base URL; and that URL."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        status, headers, body = reply
        return httpx2.Response(status, headers=headers, content=body)

    async with loopback_server(reply) as base_url:
        async with OpenRouterClient(KEY, base_url=base_url, transport=httpx2.MockTransport(handler)) as client:
            expected = await _failure(client, call)
        async with OpenRouterClient(KEY, base_url=base_url) as client:
            assert isinstance(client._direct, AiohttpTransport)
            got = await _failure(client, call)
    assert (type(got), str(got), got.status, got.code) == (
        type(expected),
        str(expected),
        expected.status,
        expected.code,
    )
    return got, base_url


@pytest.mark.parametrize("call", [_chat, _stream], ids=["chat", "stream"])
@pytest.mark.parametrize("name", NOT_OPENROUTERS_404)
async def test_a_404_that_is_not_openrouters_error_is_a_wrong_base_url_on_both_paths(name: str, call: Call) -> None:
    error, base_url = await _on_both_paths(NOT_OPENROUTERS_404[name], call)
    assert type(error) is errors.WrongBaseUrlError
    assert str(error) == _wrong_base_url(base_url + "/chat/completions")


@pytest.mark.parametrize("call", [_chat, _stream], ids=["chat", "stream"])
async def test_openrouters_own_404_stays_a_404_of_the_model_on_both_paths(call: Call) -> None:
    """ "No endpoints found that support tool use" is about the model: the next one may serve the request."""
    error, _ = await _on_both_paths(OPENROUTERS_404, call)
    assert type(error) is errors.UpstreamNotFoundError
    assert str(error).startswith("404 No endpoints found that support tool use.")


async def test_the_sandboxs_404_for_an_unknown_model_stays_a_404_of_the_model(sandbox: Sandbox) -> None:
    async with OpenRouterClient(KEY, base_url=sandbox.base_url) as client:
        with pytest.raises(errors.UpstreamNotFoundError) as caught:
            await client.model_endpoints("nobody/no-such-model")
    assert type(caught.value) is errors.UpstreamNotFoundError and "no-such-model" in str(caught.value)


# ------------------------------------------------------------------ nothing listening


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", CALLS)
async def test_a_refused_connection_names_the_url_and_never_ssl(path: str, name: str) -> None:
    """A plain-HTTP base URL with nothing listening: a connect error naming the URL, no `ssl:default`."""
    origin = f"http://127.0.0.1:{_closed_port()}"
    async with OpenRouterClient(KEY, base_url=origin + "/api/v1", transport=_transport(path)) as client:
        error = await _failure(client, CALLS[name][0])
    assert type(error) is errors.UpstreamConnectError and error.retryable
    assert str(error) == (
        f"Could not connect to {origin} (connection refused): is OPENROUTER_BASE_URL right and the server up?"
    )


@contextmanager
def _unanswered() -> Iterator[str]:
    """The origin of a loopback listener whose backlog one connection it never accepts fills: a further
    connect is never answered (the kernel drops its SYN), as at an address a firewall drops."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", CALLS)
async def test_a_connect_that_is_never_answered_names_the_url_and_the_connect_timeout(path: str, name: str) -> None:
    """It read "Could not reach OpenRouter (ConnectTimeout: ...)" where a refused connection names the URL."""
    with _unanswered() as origin:
        base_url = origin + "/api/v1"
        async with OpenRouterClient(KEY, base_url=base_url, transport=_transport(path), connect_timeout=0.3) as client:
            with anyio.fail_after(10):
                error = await _failure(client, CALLS[name][0])
    assert type(error) is errors.UpstreamConnectError and error.retryable
    assert str(error) == (
        f"Could not connect to {origin} within connect_timeout_s=0.3s: is OPENROUTER_BASE_URL right and the server up?"
    )


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_the_direct_transports_connect_error_tells_the_os_error_not_aiohttps_ssl_setting(scheme: str) -> None:
    """What aiohttp's text adds (`ssl:default`, `ssl:<ssl.SSLContext object at 0x...>`) says nothing of the
    failure: the transport hands on the OS error's text, as httpx2's own transport does."""
    url = f"{scheme}://127.0.0.1:{_closed_port()}/api/v1/models"
    transport = AiohttpTransport()
    try:
        with pytest.raises(httpx2.ConnectError) as caught:
            await transport.handle_async_request(httpx2.Request("GET", url))
    finally:
        await transport.aclose()
    assert "ssl" not in str(caught.value).lower() and "Connect call failed" in str(caught.value)


# ------------------------------------------------------------------ a rejected key


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["chat", "stream", "key"])
async def test_a_rejected_key_says_to_check_openrouter_api_key_without_quoting_it(
    sandbox: Sandbox, path: str, name: str
) -> None:
    async with OpenRouterClient(WRONG_KEY, base_url=sandbox.base_url, transport=_transport(path)) as client:
        error = await _failure(client, CALLS[name][0])
    assert type(error) is errors.AuthenticationError and error.status == 401
    assert str(error) == "OpenRouter rejected the API key (401 User not found.): check OPENROUTER_API_KEY"
    assert WRONG_KEY not in str(error) and WRONG_KEY not in repr(error)


async def test_a_rejected_key_with_no_json_says_the_status_and_its_reason() -> None:
    """A 401 without OpenRouter's error body (a proxy's, say) still points at the key, with the reason phrase."""
    transport = httpx2.MockTransport(lambda request: httpx2.Response(401))
    async with OpenRouterClient(WRONG_KEY, base_url="https://or.test/api/v1", transport=transport) as client:
        error = await _failure(client, _chat)
    assert type(error) is errors.AuthenticationError
    assert str(error) == "OpenRouter rejected the API key (401 Unauthorized): check OPENROUTER_API_KEY"
