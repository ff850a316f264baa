"""Stateless streamable HTTP (`MODELYARD_HTTP_STATELESS`): one MCP client session whose requests a
round-robin balancer alternates between two instances works end to end, with no sticky sessions."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.scaleout.fleet import Sandbox, http_server, server_env, structured

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

MODEL = "openai/gpt-4o-mini"
LEGACY = "2025-06-18"  # the last protocol revision with server-side sessions (mcp-session-id)


class RoundRobin(httpx2.AsyncBaseTransport):
    """A balancer in the client: request N goes to `ports[N % len(ports)]`, whatever session it belongs to."""

    def __init__(self, ports: list[int]) -> None:
        self._ports = ports
        self._next = 0
        self._inner = httpx2.AsyncHTTPTransport()
        self.sent: Counter[int] = Counter()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = self._ports[self._next % len(self._ports)]
        self._next += 1
        self.sent[port] += 1
        request.url = request.url.copy_with(port=port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def balanced_session(env: dict[str, str], tmp_path: Path) -> AsyncIterator[tuple[Client, RoundRobin]]:
    """Two instances on `env` and one MCP client whose every HTTP request alternates between them."""
    async with AsyncExitStack() as stack:
        urls = [await stack.enter_async_context(http_server(env, tmp_path, f"instance-{n}")) for n in range(2)]
        balancer = RoundRobin([httpx2.URL(url).port or 0 for url in urls])
        http = await stack.enter_async_context(
            httpx2.AsyncClient(transport=balancer, timeout=httpx2.Timeout(30, read=60))
        )
        client = await stack.enter_async_context(Client(streamable_http_client(urls[0], http_client=http)))
        yield client, balancer


async def test_one_session_alternating_between_two_stateless_instances_lists_tools_and_executes(
    sandbox: Sandbox, store: str, tmp_path: Path
) -> None:
    """With MODELYARD_HTTP_STATELESS=1 every request stands alone: the client's requests alternate between
    the instances, and list_tools and repeated executes all succeed."""
    env = server_env(tmp_path, sandbox.base_url, store, MODELYARD_HTTP_STATELESS="1")
    with anyio.fail_after(120):
        async with balanced_session(env, tmp_path) as (client, balancer):
            for _ in range(2):
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert {"execute", "get_metrics", "plan_route"} <= names
            answers = []
            for number in range(6):
                arguments = {"prompt": f"Stateless call {number}: say hi.", "model": MODEL, "max_tokens": 16}
                answers.append(structured(await client.call_tool("execute", arguments)))
            metrics = structured(await client.call_tool("get_metrics", {}))
    assert all(answer["content"] for answer in answers)
    assert len(balancer.sent) == 2 and min(balancer.sent.values()) >= 5, balancer.sent
    assert metrics["total_requests"] == 6, "either instance sees the whole fleet's ledger"
    assert len((await sandbox.ledger())["entries"]) == 6


def _rpc(number: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params or {}}
    return {**message, "id": number} if number else message


def _result(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC result of a response sent as JSON or as one SSE event."""
    assert response.status_code == 200, (response.status_code, response.text)
    text = response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    reply: dict[str, Any] = json.loads(text)
    result: dict[str, Any] = reply["result"]
    return result


@pytest.mark.parametrize("stateless", [True, False], ids=["stateless", "stateful"])
async def test_a_session_id_protocol_client_alternating_between_instances_needs_stateless_mode(
    sandbox: Sandbox, store: str, tmp_path: Path, stateless: bool
) -> None:
    """A client speaking the session-based protocol (2025-06-18: initialize, then `mcp-session-id` on every
    request), sent alternately to two instances: in stateless mode each request stands alone and the whole
    exchange works; in the default mode the other instance does not know the session (404), which is why a
    balancer needs sticky sessions unless MODELYARD_HTTP_STATELESS is set."""
    extra = {"MODELYARD_HTTP_STATELESS": "1"} if stateless else {}
    env = server_env(tmp_path, sandbox.base_url, store, **extra)
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    hello = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "rr", "version": "1"}}
    with anyio.fail_after(120):
        async with AsyncExitStack() as stack:
            a, b = [await stack.enter_async_context(http_server(env, tmp_path, f"instance-{n}")) for n in range(2)]
            http = await stack.enter_async_context(httpx2.AsyncClient(timeout=60))
            init = await http.post(a, headers=headers, json=_rpc(1, "initialize", hello))
            assert _result(init)["serverInfo"]["name"] == "modelyard"
            session = init.headers.get("mcp-session-id")
            assert (session is None) is stateless
            headers |= {"mcp-protocol-version": LEGACY, **({"mcp-session-id": session} if session else {})}
            notified = await http.post(b, headers=headers, json=_rpc(0, "notifications/initialized"))
            listed = await http.post(b, headers=headers, json=_rpc(2, "tools/list"))
            if not stateless:
                assert (notified.status_code, listed.status_code) == (404, 404)
                assert "Session not found" in listed.text
                return
            assert notified.status_code == 202
            assert "execute" in {tool["name"] for tool in _result(listed)["tools"]}
            for number, url in enumerate((a, b, a, b), start=3):
                arguments = {"prompt": f"Legacy call {number}.", "model": MODEL, "max_tokens": 16}
                call = {"name": "execute", "arguments": arguments}
                result = _result(await http.post(url, headers=headers, json=_rpc(number, "tools/call", call)))
                assert not result.get("isError"), result
    assert len((await sandbox.ledger())["entries"]) == 4
