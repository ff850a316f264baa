"""Secrets and access: the API key never leaks (debug logging on, every tool and failure path), HTTP needs the
bearer token, local images stay inside the allowed roots, and an agent cannot raise its own budget."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import urllib.parse
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.types import CallToolResult

from modelyard.sandbox import FAULT_KINDS, Sandbox
from tests.reliability.harness import (
    Figures,
    bare_error,
    by_size,
    http_server,
    http_session,
    money,
    stdio_server,
    text_of,
)
from tests.server.conftest import SERVE, free_port, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.reliability]

MODEL, BACKUP = "openai/gpt-4o-mini", "mistralai/mistral-nemo"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _needles(key: str) -> list[str]:
    """The key, its secret part, and the encodings it could hide under."""
    secret = key.removeprefix("sk-or-v1-")
    return [
        key,
        secret,
        secret[:24],
        secret[-24:],
        urllib.parse.quote(key),
        base64.b64encode(key.encode()).decode(),
        base64.b64encode(f"Bearer {key}".encode()).decode(),
        json.dumps(key)[1:-1],
    ]


def _dump(result: CallToolResult) -> str:
    return json.dumps(result.model_dump(mode="json"), ensure_ascii=False)


def _images(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An allowed folder with one image, and every way of pointing outside it."""
    allowed = tmp_path / "images"
    outside = tmp_path / "private"
    sibling = tmp_path / "images-evil"
    for folder in (allowed, outside, sibling):
        folder.mkdir()
    (allowed / "ok.png").write_bytes(PNG)
    (outside / "secret.png").write_bytes(PNG)
    (sibling / "x.png").write_bytes(PNG)
    (allowed / "link.png").symlink_to(outside / "secret.png")
    (allowed / "linked-dir").symlink_to(outside, target_is_directory=True)
    escapes = {
        "absolute": str(outside / "secret.png"),
        "dot-dot": str(allowed / ".." / "private" / "secret.png"),
        "relative dot-dot": "../private/secret.png",
        "symlink to a file outside": str(allowed / "link.png"),
        "symlink to a folder outside": str(allowed / "linked-dir" / "secret.png"),
        "sibling with the same prefix": str(sibling / "x.png"),
        "system file": "/etc/passwd",
        "home": "~/.ssh/id_rsa",
        "file URL": f"file://{outside / 'secret.png'}",
    }
    return allowed, escapes


@pytest.mark.parametrize("size", by_size(1, 3))
async def test_with_debug_logging_no_tool_or_failure_path_leaks_the_key_anywhere(size: int, tmp_path: Path) -> None:
    """Every tool and failure path with MODELYARD_DEBUG=1: the key is in no result, log, metric or store file."""
    key = "sk-or-v1-" + secrets.token_hex(32)
    allowed, escapes = _images(tmp_path)
    blobs: list[str] = []
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with Sandbox.running(api_key=key) as sandbox:
        env = server_env(
            tmp_path,
            sandbox.base_url,
            key=key,
            MODELYARD_DEBUG="1",
            MODELYARD_MAX_RETRIES="1",
            MODELYARD_REQUEST_TIMEOUT_S="1",
            MODELYARD_ALLOWED_IMAGE_DIRS=json.dumps([str(allowed)]),
            MODELYARD_BUDGET__DAILY="5",
        )
        paths = 0
        with anyio.fail_after(240):
            async with stdio_server(env, tmp_path, tmp_path / "server.log") as server:
                client = server.client

                async def call(tool: str, arguments: dict[str, Any], *, ok: bool | None = None) -> CallToolResult:
                    nonlocal paths
                    paths += 1
                    result = await client.call_tool(tool, arguments, progress_callback=on_progress)
                    blobs.append(_dump(result))
                    assert not bare_error(tool, result), (tool, arguments, text_of(result))
                    if ok is not None:
                        assert result.is_error is not ok, (tool, arguments, text_of(result))
                    return result

                for round_ in range(size):
                    prompt = f"Leak test {round_}"
                    fresh = True if round_ == 0 else None  # later rounds may meet breakers opened by faults
                    await call("list_models", {"limit": 3}, ok=fresh)
                    await call("execute", {"prompt": prompt, "model": MODEL}, ok=fresh)
                    await call("execute", {"prompt": prompt, "model": MODEL, "stream": True}, ok=fresh)
                    await call("execute", {"prompt": prompt, "model": MODEL, "temperature": 0}, ok=fresh)
                    await call("execute", {"prompt": prompt, "model": MODEL, "temperature": 0}, ok=fresh)  # cache hit
                    await call("execute", {"prompt": prompt, "images": [str(allowed / "ok.png")], "model": "gpt-4o"})
                    await call("plan_route", {"prompt": prompt}, ok=fresh)
                    await call(
                        "compare_models", {"prompt": prompt, "models": [MODEL, BACKUP], "judge": MODEL}, ok=fresh
                    )
                    await call("execute_batch", {"tasks": [{"prompt": prompt}, {"prompt": prompt, "model": "nope"}]})
                    await call("execute", {"prompt": prompt, "model": MODEL, "supervisor": BACKUP}, ok=fresh)
                    # Every injected fault, streamed and not, with and without a fallback.
                    for kind in FAULT_KINDS:
                        params: dict[str, Any] = {"latency_ms": 10} if kind == "latency" else {}
                        for stream in (False, True):
                            sandbox.state.faults.add(model=MODEL, kind=kind, count=2, **params)
                            await call("execute", {"prompt": f"{prompt} {kind}", "model": MODEL, "stream": stream})
                            sandbox.state.faults.add(model=MODEL, kind=kind, count=2, **params)
                            arguments = {"prompt": f"{prompt} {kind}!", "model": MODEL, "models": [BACKUP]}
                            await call("execute", {**arguments, "stream": stream})
                            sandbox.state.faults.clear()
                    # Mistakes and refusals.
                    await call("execute", {"prompt": prompt, "model": "gpt-4o-mnii"}, ok=False)
                    await call(
                        "execute", {"prompt": prompt, "capabilities": ["vision"], "max_cost_per_1k": 0}, ok=False
                    )
                    await call("execute", {"prompt": prompt, "max_tokens": "lots"}, ok=False)
                    await call("execute", {}, ok=False)
                    for where in escapes.values():
                        await call("execute", {"prompt": prompt, "images": [where]}, ok=False)
                    await call("set_budget", {"daily": 50}, ok=False)
                    await call("execute", {"prompt": prompt, "model": "gpt-4o", "max_cost": "0.0000001"}, ok=False)
                    # The key runs out of credit (402), then is refused outright (401): both must stay masked.
                    sandbox.state.set_key_limit(Decimal("0.0000001"))
                    await call("execute", {"prompt": prompt, "model": MODEL}, ok=False if fresh else None)
                    await call("test_connection", {}, ok=True)
                    sandbox.state.set_key_limit(None)
                    sandbox.state.api_key = "sk-or-v1-someone-else"
                    await call("execute", {"prompt": prompt, "model": MODEL}, ok=False if fresh else None)
                    await call("test_connection", {}, ok=True)
                    sandbox.state.api_key = key
                    await call("get_metrics", {"window": "all"}, ok=True)
                    await call("get_budget", {}, ok=True)
                    await call("set_budget", {"daily": 4}, ok=True)
                    await call("test_connection", {}, ok=True)
        # The same key against an upstream that is not there at all (connection refused).
        dead = server_env(tmp_path, f"http://127.0.0.1:{free_port()}/api/v1", key=key, MODELYARD_DEBUG="1")
        dead["MODELYARD_STORE"] = f"sqlite:///{tmp_path / 'dead.db'}"
        with anyio.fail_after(60):
            async with stdio_server(dead, tmp_path, tmp_path / "dead.log") as server:
                for tool, arguments in (("execute", {"prompt": "x"}), ("test_connection", {}), ("list_models", {})):
                    result = await server.client.call_tool(tool, arguments)
                    blobs.append(_dump(result))
                    paths += 1
                    assert not bare_error(tool, result), text_of(result)

    logs = (tmp_path / "server.log").read_text(errors="replace") + (tmp_path / "dead.log").read_text(errors="replace")
    store_files = _store_files(tmp_path)
    haystacks = {
        "tool results": "\n".join(blobs),
        "progress notifications": "\n".join(progress),
        "stderr logs (debug)": logs,
        **{f"store file {p.name}": p.read_bytes().decode("latin-1") for p in store_files},
    }
    hits = {where: [n[:12] for n in _needles(key) if n in text] for where, text in haystacks.items()}
    Figures(
        "secrets",
        {
            "tool_calls": paths,
            "log_bytes": len(logs),
            "debug_lines": logs.count("DEBUG"),
            "store_files": sorted(p.name for p in store_files),
            "scanned_bytes": sum(len(t) for t in haystacks.values()),
            "hits": sum(len(v) for v in hits.values()),
        },
    ).show()
    assert "DEBUG" in logs  # debug logging was really on
    assert any(p.name == "s.db-wal" or p.name == "s.db" for p in store_files)
    assert all(found == [] for found in hits.values()), hits


def _store_files(folder: Path) -> list[Path]:
    """The SQLite files of both servers (database, and WAL/shared-memory files if any are left)."""
    return [path for path in folder.iterdir() if path.name.startswith(("s.db", "dead.db"))]


# ---------------------------------------------------------------------------------------------- HTTP access

TOOLS_CALL = {
    "jsonrpc": "2.0",
    "id": 7,
    "method": "tools/call",
    "params": {"name": "execute", "arguments": {"prompt": "should never run", "model": MODEL}},
}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}


def _wrong_ways(token: str) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """(headers, query) that each fail to present the token properly."""
    return {
        "no token": ({}, {}),
        "wrong token": ({"Authorization": "Bearer " + token[::-1]}, {}),
        "token with a suffix": ({"Authorization": f"Bearer {token}x"}, {}),
        "bearer without a token": ({"Authorization": "Bearer"}, {}),
        "no scheme": ({"Authorization": token}, {}),
        "basic scheme": ({"Authorization": "Basic " + base64.b64encode(f"u:{token}".encode()).decode()}, {}),
        "X-API-Key header": ({"X-API-Key": token}, {}),
        "Proxy-Authorization header": ({"Proxy-Authorization": f"Bearer {token}"}, {}),
        "cookie": ({"Cookie": f"token={token}"}, {}),
        "query parameter": ({}, {"token": token, "access_token": token}),
    }


@pytest.mark.parametrize("size", by_size(1, 5))
async def test_http_without_the_right_bearer_token_gets_401_and_nothing_runs(size: int, tmp_path: Path) -> None:
    """No token, a wrong one, or the token in the wrong place: 401 on every request, and the upstream sees nothing."""
    token = secrets.token_urlsafe(24)
    async with Sandbox.running(api_key="sk-or-v1-http") as sandbox:
        env = server_env(tmp_path, sandbox.base_url, key="sk-or-v1-http", MODELYARD_HTTP_TOKEN=token)
        statuses: dict[str, set[int]] = {}
        with anyio.fail_after(120):
            async with (
                http_server(env, tmp_path, tmp_path / "server.log") as server,
                httpx2.AsyncClient(timeout=10) as raw,
            ):
                accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
                for _ in range(size):
                    for name, (headers, query) in _wrong_ways(token).items():
                        for body in (INITIALIZE, TOOLS_CALL):
                            response = await raw.post(
                                server.url, json=body, headers={**accept, **headers}, params=query
                            )
                            statuses.setdefault(name, set()).add(response.status_code)
                            assert response.headers.get("www-authenticate", "").startswith("Bearer"), name
                            assert token not in response.text
                        got = await raw.get(
                            server.url, headers={"Accept": "text/event-stream", **headers}, params=query
                        )
                        statuses[name].add(got.status_code)
                        deleted = await raw.delete(server.url, headers=headers, params=query)
                        statuses[name].add(deleted.status_code)
                requests_while_refused = sandbox.state.request_count
                async with http_session(server.url, token=token) as client:
                    answer = await client.call_tool("execute", {"prompt": "with the token", "model": MODEL})
    Figures(
        "http-auth",
        {
            "ways_refused": len(statuses),
            "requests_each": 4 * size,
            "statuses": sorted({s for v in statuses.values() for s in v}),
        },
    ).show()
    assert all(found == {401} for found in statuses.values()), statuses
    assert requests_while_refused == 0  # nothing executed upstream while every request was refused
    assert not answer.is_error and sandbox.state.request_count == 1


@pytest.mark.parametrize("size", by_size(["0.0.0.0"], ["0.0.0.0", "::", "example.invalid", "10.0.0.1"]))
async def test_a_non_loopback_bind_without_a_token_is_refused_before_it_listens(
    size: list[str], tmp_path: Path
) -> None:
    """`serve --transport streamable-http --host <non-loopback>` with no token exits non-zero and says why."""
    for host in size:
        port = free_port()
        command = [sys.executable, *SERVE, "--transport", "streamable-http", "--host", host, "--port", str(port)]
        with anyio.fail_after(30):
            done = await anyio.run_process(
                command, env=server_env(tmp_path, None), cwd=str(tmp_path), check=False, stdin=subprocess.DEVNULL
            )
        message = done.stderr.decode()
        assert done.returncode != 0, host
        assert f"Refusing to serve on {host} without a bearer token" in message and "MODELYARD_HTTP_TOKEN" in message
        assert "Traceback" not in message and done.stdout == b""


# ---------------------------------------------------------------------------------------------- images, budget


@pytest.mark.parametrize("size", by_size(1, 3))
async def test_local_images_outside_the_allowed_roots_are_refused_and_nothing_is_read_or_sent(
    size: int, tmp_path: Path
) -> None:
    """Absolute paths, `..`, symlinks out (to a file or a folder), prefix siblings: all refused, none uploaded."""
    allowed, escapes = _images(tmp_path)
    async with Sandbox.running(api_key="sk-or-v1-images") as sandbox:
        env = server_env(
            tmp_path, sandbox.base_url, key="sk-or-v1-images", MODELYARD_ALLOWED_IMAGE_DIRS=json.dumps([str(allowed)])
        )
        with anyio.fail_after(60):
            async with stdio_server(env, tmp_path, tmp_path / "server.log") as server:
                refused = {}
                for _ in range(size):
                    for name, where in escapes.items():
                        for tool in ("execute", "plan_route"):
                            result = await server.client.call_tool(tool, {"prompt": "describe", "images": [where]})
                            refused[f"{tool} {name}"] = text_of(result)
                            assert result.is_error, (tool, name, where)
                sent_while_refusing = sandbox.state.request_count
                inside = await server.client.call_tool(
                    "execute", {"prompt": "describe", "images": [str(allowed / "ok.png")]}
                )
    for name, text in refused.items():
        assert "outside the allowed directories" in text or "not a usable file path" in text, (name, text)
        assert str(tmp_path / "private") not in text or "outside" in text
    assert sent_while_refusing == 0
    assert not inside.is_error, text_of(inside)  # the allowed folder still works


@pytest.mark.parametrize("size", by_size(20, 200))
async def test_set_budget_cannot_raise_any_limit_even_under_concurrent_attempts(size: int, tmp_path: Path) -> None:
    """Raising the operator's limits or an earlier tightening is refused, also when many calls race."""
    env = server_env(
        tmp_path,
        None,
        key="sk-or-v1-budget",
        MODELYARD_BUDGET__DAILY="1",
        MODELYARD_BUDGET__MONTHLY="10",
        MODELYARD_BUDGET__PER_REQUEST="0.1",
    )
    with anyio.fail_after(60):
        async with stdio_server(env, tmp_path, tmp_path / "server.log") as server:
            client = server.client
            raised: list[CallToolResult] = []

            async def attempt(index: int) -> None:
                name = ("daily", "monthly", "per_request")[index % 3]
                value = ("1.5", "11", "0.2")[index % 3] if index % 2 else str(10**6 + index)
                raised.append(await client.call_tool("set_budget", {name: value}))

            async with anyio.create_task_group() as group:
                for index in range(size):
                    group.start_soon(attempt, index)
            lowered = await client.call_tool("set_budget", {"daily": "0.5"})
            again = await client.call_tool("set_budget", {"daily": "0.75"})
            final = (await client.call_tool("get_budget", {})).structured_content
    assert all(result.is_error and "only tighten" in text_of(result) for result in raised)
    assert not lowered.is_error
    assert again.is_error and "only tighten" in text_of(again) and "operator" in text_of(again)
    assert final is not None
    assert (money(final["daily"]), money(final["monthly"]), money(final["per_request"])) == (
        Decimal("0.5"),
        Decimal("10"),
        Decimal("0.1"),
    )
