"""`python -m modelyard serve --transport streamable-http|sse` as a real subprocess: bearer auth, open
loopback serving (refusing DNS-rebinding pages), and the refusal to serve off loopback without a token."""

from __future__ import annotations

import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from modelyard.sandbox import Sandbox
from modelyard.server.app import GRACEFUL_SHUTDOWN_S
from tests.server.conftest import SERVE, free_port, server_env, structured

pytestmark = pytest.mark.anyio

TOKEN = "secret"
TRANSPORTS = ["streamable-http", "sse"]
ENDPOINT = {"streamable-http": "/mcp", "sse": "/sse"}
STARTUP_S = 20.0


def _port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _free_port_on(host: str) -> int:
    """A TCP port on `host` (IPv4 or IPv6) that nothing listens on right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _has_ipv6_loopback() -> bool:
    try:
        _free_port_on("::1")
    except OSError:
        return False
    return True


async def _stop(process: Process) -> None:
    if process.returncode is None:
        process.terminate()
        with anyio.move_on_after(5):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


@asynccontextmanager
async def http_server(
    transport: str, env: dict[str, str], tmp_path: Path, *, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """Start `modelyard serve` on a free port of `host` (loopback); yield its MCP URL once the port answers;
    stop it."""
    async with _served(transport, env, tmp_path, host=host) as (url, _, _):
        yield url


@asynccontextmanager
async def _served(
    transport: str, env: dict[str, str], tmp_path: Path, *, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[str, Process, Path]]:
    """`http_server`, yielding the process and its log (stdout and stderr) with the URL."""
    port = free_port() if host == "127.0.0.1" else _free_port_on(host)
    log = tmp_path / f"{transport}.log"
    command = [sys.executable, *SERVE, "--transport", transport, "--host", host, "--port", str(port)]
    with log.open("wb") as sink:
        process = await anyio.open_process(
            command, env=env, cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
    try:
        with anyio.fail_after(STARTUP_S):
            while not await anyio.to_thread.run_sync(_port_answers, port, host):
                assert process.returncode is None, f"server exited {process.returncode}: {log.read_text()}"
                await anyio.sleep(0.1)
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        yield f"http://{authority}{ENDPOINT[transport]}", process, log
    finally:
        await _stop(process)
        await process.aclose()


def _client(transport: str, url: str, http: httpx2.AsyncClient, headers: dict[str, str]) -> Client:
    """A real MCP client session over `transport` sending `headers` on every HTTP request."""
    target: AbstractAsyncContextManager[Any]
    if transport == "streamable-http":
        target = streamable_http_client(url, http_client=http)
    else:
        target = sse_client(url, headers=headers)
    return Client(target)


async def _status(http: httpx2.AsyncClient, transport: str, url: str, headers: dict[str, str]) -> httpx2.Response:
    """The response to the transport's opening request (a POST initialize, or the SSE GET)."""
    if transport == "streamable-http":
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        accept = {"Accept": "application/json, text/event-stream", **headers}
        return await http.post(url, json=body, headers=accept)
    async with http.stream("GET", url, headers={"Accept": "text/event-stream", **headers}) as response:
        if response.status_code != 200:  # an open event stream is never read to its end
            await response.aread()
        return response


async def _status_alone(transport: str, url: str, headers: dict[str, str]) -> httpx2.Response:
    """`_status` on a connection of its own: the SDK drops the connection after refusing an SSE request."""
    async with httpx2.AsyncClient(timeout=10) as http:
        return await _status(http, transport, url, headers)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_http_transport_with_a_token_rejects_missing_or_wrong_bearers_and_serves_the_right_one(
    transport: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    """With MODELYARD_HTTP_TOKEN set: no token and a wrong token get 401; the right one gets a working session
    that lists the nine tools and answers list_models from the sandbox catalog."""
    env = server_env(tmp_path, sandbox.base_url, MODELYARD_HTTP_TOKEN=TOKEN)
    right = {"Authorization": f"Bearer {TOKEN}"}
    with anyio.fail_after(45):
        async with http_server(transport, env, tmp_path) as url, httpx2.AsyncClient(timeout=10) as raw:
            missing = await _status(raw, transport, url, {})
            wrong = await _status(raw, transport, url, {"Authorization": "Bearer secreT"})
            post_wrong = await raw.post(url.rsplit("/", 1)[0] + "/messages/", headers={"Authorization": "Basic x"})
            health = await raw.get(url.rsplit("/", 1)[0] + "/health")
            async with (
                httpx2.AsyncClient(headers=right, timeout=httpx2.Timeout(10, read=60)) as http,
                _client(transport, url, http, right) as client,
            ):
                names = {tool.name for tool in (await client.list_tools()).tools}
                models = structured(await client.call_tool("list_models", {"limit": 3}))
    for refused in (missing, wrong, post_wrong):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "MODELYARD_HTTP_TOKEN" in missing.text
    assert (health.status_code, health.text) == (200, "ok")
    assert len(names) == 9 and "execute" in names
    assert len(models["models"]) == 3 and models["total"] >= 25


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_http_transport_without_a_token_on_loopback_serves_openly(
    transport: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    """No MODELYARD_HTTP_TOKEN and a loopback bind: a client with no Authorization header gets a session."""
    env = server_env(tmp_path, sandbox.base_url)
    with anyio.fail_after(45):
        async with (
            http_server(transport, env, tmp_path) as url,
            httpx2.AsyncClient(timeout=httpx2.Timeout(10, read=60)) as http,
            _client(transport, url, http, {}) as client,
        ):
            names = {tool.name for tool in (await client.list_tools()).tools}
            models = structured(await client.call_tool("list_models", {"limit": 1}))
    assert len(names) == 9 and models["total"] >= 25


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_health_is_503_naming_the_store_when_it_does_not_answer_and_needs_no_token(
    transport: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A Redis store that is down: /health said 200 "ok", so a load balancer kept sending requests there that
    would fail. The body names the store, never its URL's password; no token is needed even when one is set."""
    store = f"redis://:hunter2pass@127.0.0.1:{free_port()}/0"
    env = server_env(tmp_path, sandbox.base_url, MODELYARD_STORE=store, MODELYARD_HTTP_TOKEN=TOKEN)
    with anyio.fail_after(45):
        async with _served(transport, env, tmp_path) as (url, _, log):
            async with httpx2.AsyncClient(timeout=10) as http:
                health = await http.get(url.rsplit("/", 1)[0] + "/health")
            logged = log.read_text()
    assert (health.status_code, health.text) == (503, "unavailable: store could not be opened (see the log)")
    assert "/health answers 503" in logged and "hunter2pass" not in logged + health.text


OTHER_LOOPBACK_SPELLINGS = [
    "127.0.0.2",
    pytest.param(
        "0:0:0:0:0:0:0:1",
        marks=pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)"),
    ),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("host", OTHER_LOOPBACK_SPELLINGS)
async def test_http_transport_on_any_loopback_address_without_a_token_refuses_a_dns_rebinding_page(
    host: str, transport: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Bound without a token to a loopback address other than 127.0.0.1, localhost or ::1 (which alone the SDK
    guards by itself): a foreign Host gets 421 and a foreign Origin 403, while a local client, naming the
    server by its bound address, still gets a working session."""
    env = server_env(tmp_path, sandbox.base_url)
    with anyio.fail_after(45):
        async with http_server(transport, env, tmp_path, host=host) as url:
            authority = url.split("/")[2]
            port = authority.rsplit(":", 1)[1]
            foreign_host = await _status_alone(
                transport, url, {"Host": f"attacker.example:{port}", "Origin": f"http://attacker.example:{port}"}
            )
            foreign_origin = await _status_alone(transport, url, {"Origin": f"http://attacker.example:{port}"})
            local_page = await _status_alone(transport, url, {"Origin": f"http://{authority}"})
            async with (
                httpx2.AsyncClient(timeout=httpx2.Timeout(10, read=60)) as http,
                _client(transport, url, http, {}) as client,
            ):
                names = {tool.name for tool in (await client.list_tools()).tools}
    assert (foreign_host.status_code, foreign_origin.status_code, local_page.status_code) == (421, 403, 200)
    assert len(names) == 9


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_http_transport_off_loopback_without_a_token_refuses_to_start_and_says_why(
    transport: str, tmp_path: Path
) -> None:
    """`--host 0.0.0.0` with no token exits non-zero naming MODELYARD_HTTP_TOKEN, before binding anything."""
    port = free_port()
    command = [sys.executable, *SERVE, "--transport", transport, "--host", "0.0.0.0", "--port", str(port)]
    with anyio.fail_after(30):
        done = await anyio.run_process(command, env=server_env(tmp_path, None), cwd=str(tmp_path), check=False)
    message = done.stderr.decode()
    assert done.returncode != 0
    assert "Refusing to serve on 0.0.0.0 without a bearer token" in message and "MODELYARD_HTTP_TOKEN" in message
    assert "Traceback" not in message and done.stdout == b""
    assert not _port_answers(port)


async def test_an_idle_connection_outlives_the_clients_own_five_second_expiry(sandbox: Sandbox, tmp_path: Path) -> None:
    """httpx's pool drops a connection after 5 s idle; the server must hold it longer, or a client reusing it
    at 5 s meets the server's close (a ReadError). After 6 s idle the same connection still answers."""
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with anyio.fail_after(45):
        async with http_server("streamable-http", server_env(tmp_path, sandbox.base_url), tmp_path) as url:
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                replies = BufferedByteReceiveStream(stream)
                await stream.send(request)
                first = await replies.receive_until(b"\r\n\r\n", 4096) + await replies.receive_exactly(2)
                await anyio.sleep(6)
                await stream.send(request)
                second = await replies.receive_until(b"\r\n\r\n", 4096) + await replies.receive_exactly(2)
    assert first.startswith(b"HTTP/1.1 200") and first.endswith(b"ok") and second.startswith(b"HTTP/1.1 200")


async def test_two_sse_connections_share_one_context_so_an_answer_cached_through_one_is_a_hit_through_the_other(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Over SSE every connection is served from the process's one client, store and router (as over streamable
    HTTP), not from a context of its own: a deterministic answer one connection got is the other's cache hit,
    and the upstream is asked once."""
    env = server_env(tmp_path, sandbox.base_url)
    request = {"prompt": "Say hi", "model": "gpt-4o-mini", "temperature": 0}
    with anyio.fail_after(60):
        async with (
            http_server("sse", env, tmp_path) as url,
            Client(sse_client(url)) as first,
            Client(sse_client(url)) as second,
        ):
            asked = structured(await first.call_tool("execute", request))
            hit = structured(await second.call_tool("execute", request))
    assert (asked["cached"], hit["cached"]) == (False, True)
    assert hit["content"] == asked["content"] and len(sandbox.state.ledger) == 1


def _leases(db: Path) -> list[str]:
    """The budget leases (reservation rows a server process holds) in the SQLite store at `db`."""
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM reservations WHERE id LIKE 'lease-%'")]


async def test_the_sse_servers_one_context_outlives_its_connections_and_is_closed_when_the_server_stops(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The context an SSE connection used is the process's: when its clients leave, its store stays open (the
    budget lease it took is still held, for the next client), and stopping the server closes it (the lease is
    given back)."""
    env = server_env(tmp_path, sandbox.base_url, MODELYARD_BUDGET__DAILY="10")
    with anyio.fail_after(60):
        async with http_server("sse", env, tmp_path) as url:
            async with Client(sse_client(url)) as first, Client(sse_client(url)) as second:
                structured(await first.call_tool("execute", {"prompt": "Say hi", "model": "gpt-4o-mini"}))
                structured(await second.call_tool("get_budget", {}))
            await anyio.sleep(0.5)  # time for a connection's own context, were there one, to close
            held = _leases(tmp_path / "s.db")
        stopped = _leases(tmp_path / "s.db")
    assert len(held) == 1 and stopped == []


# uvicorn re-raises the signal it shut down on: SIGINT ends in the CLI's quiet exit, SIGTERM in its own status.
STOPPED = {signal.SIGINT: 0, signal.SIGTERM: -signal.SIGTERM}


@pytest.mark.parametrize("stop", list(STOPPED), ids=lambda stop: stop.name)
async def test_stopping_the_sse_server_with_a_client_connected_ends_the_clients_stream_and_logs_no_error(
    stop: signal.Signals, sandbox: Sandbox, tmp_path: Path
) -> None:
    """An ordinary restart with an SSE client connected: the client's event stream ends (the response is
    completed, not cut off), the server logs no ERROR (it logged uvicorn's "ASGI callable returned without
    completing response" once per open stream) and it exits promptly, with the status that signal gives.

    Promptly: a client reading its stream must not hold the stop up. An idle machine stops in well under a
    second; the 10 s bound leaves room for a busy 2-core CI runner and still catches a stop that hangs or
    drags on. A stream the server failed to end would be waited for until `GRACEFUL_SHUTDOWN_S` and then
    cancelled, which uvicorn logs as an ERROR: the check on the log catches that one."""
    cut_off: httpx2.HTTPError | None = None
    with anyio.fail_after(45):
        async with (
            _served("sse", server_env(tmp_path, sandbox.base_url), tmp_path) as (url, process, log),
            httpx2.AsyncClient(timeout=10) as http,
            http.stream("GET", url, headers={"Accept": "text/event-stream"}) as stream,
        ):
            lines = stream.aiter_lines()
            first = await anext(lines)  # the endpoint event: the connection is served
            process.send_signal(stop)
            started = time.monotonic()
            try:
                async for _ in lines:
                    pass
            except httpx2.RemoteProtocolError as exc:  # the response's end never came
                cut_off = exc
            await process.wait()
            took = time.monotonic() - started
    errors = [line for line in log.read_text().splitlines() if "ERROR" in line or "Traceback" in line]
    assert first == "event: endpoint"
    assert (cut_off, errors, process.returncode) == (None, [], STOPPED[stop])
    assert took < 10


def _lease_amounts(db: Path) -> list[Decimal]:
    """The amounts of the budget leases in the SQLite store at `db`."""
    with sqlite3.connect(db) as conn:
        return [Decimal(row[0]) for row in conn.execute("SELECT amount FROM reservations WHERE id LIKE 'lease-%'")]


def _ledger(db: Path) -> list[tuple[str, bool]]:
    """The status of each ledger row in the SQLite store at `db`, and whether it is an abandoned answer's."""
    with sqlite3.connect(db) as conn:
        query = "SELECT status, coalesce(json_extract(detail, '$.abandoned'), 0) FROM ledger ORDER BY ts"
        return [(row[0], bool(row[1])) for row in conn.execute(query)]


def _sse_connection_that_stops_reading(port: int) -> tuple[socket.socket, str]:
    """An SSE connection whose client reads the endpoint event and nothing after it, with a receive buffer so
    small that the server's writes to it soon stall; and the connection's message path."""
    connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connecting: it sets the window
    connection.settimeout(10)
    connection.connect(("127.0.0.1", port))
    connection.sendall(f"GET /sse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    received = b""
    while (endpoint := re.search(rb"data: (/messages/\?session_id=\w+)\r\n", received)) is None:
        chunk = connection.recv(4096)
        assert chunk, f"the server closed the connection: {received!r}"
        received += chunk
    return connection, endpoint[1].decode()


def _request(number: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": number, "method": method, "params": params}


async def _stall(http: httpx2.AsyncClient, path: str) -> None:
    """Ask for the tool list (about 47 KB an answer) over the connection at `path` until a request is not
    taken within the client's timeout: the answers pile up unwritten behind a client that does not read, until
    the server stops taking requests (after some 2,800 here; small answers, pings, never get that far)."""
    with pytest.raises(httpx2.TimeoutException):
        for number in range(2, 10_000):
            await http.post(path, json=_request(number, "tools/list", {}))


async def test_a_client_that_stopped_reading_holds_up_a_stopping_server_only_for_the_graceful_shutdown_time(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A client that stops reading its event stream (its receive window full, the server's writes to it
    paused) left a SIGTERMed server waiting for ever for that connection to end. Now what is still running
    gets `GRACEFUL_SHUTDOWN_S` and is then cancelled, and the lifespan still ends as it should: the answer an
    execute had begun when it was cancelled gets its ledger row from the reconciler's last pass, and the store
    is closed (its budget lease shrunk to that answer's hold, which may still be billed) before the process
    exits on the signal."""
    sandbox.state.faults.add(model="openai/gpt-4o-mini", kind="latency", count=1, latency_ms=30_000)
    env = server_env(tmp_path, sandbox.base_url, MODELYARD_BUDGET__DAILY="10")
    hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    execute = {"name": "execute", "arguments": {"prompt": "Say hi", "model": "gpt-4o-mini"}}
    with anyio.fail_after(60):
        async with _served("sse", env, tmp_path) as (url, process, log):
            origin = url.removesuffix(ENDPOINT["sse"])
            port = int(origin.rsplit(":", 1)[1])
            connection, path = await anyio.to_thread.run_sync(_sse_connection_that_stops_reading, port)
            try:
                async with httpx2.AsyncClient(base_url=origin, timeout=1) as http:
                    await http.post(path, json=_request(0, "initialize", hello))
                    await http.post(path, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
                    await http.post(path, json=_request(1, "tools/call", execute))  # its answer would take 30 s
                    await _stall(http, path)
                leased = _lease_amounts(tmp_path / "s.db")
                process.terminate()
                started = time.monotonic()
                with anyio.move_on_after(GRACEFUL_SHUTDOWN_S + 6):
                    await process.wait()
                took = time.monotonic() - started
                if process.returncode is None:  # it hangs: end it, and fail
                    process.kill()
            finally:
                connection.close()
    assert (took < GRACEFUL_SHUTDOWN_S + 6, process.returncode) == (True, -signal.SIGTERM), log.read_text()
    assert ("error", True) in _ledger(tmp_path / "s.db")
    (before,), (after,) = leased, _lease_amounts(tmp_path / "s.db")
    assert 0 < after < before
