"""`python -m modelyard serve` over real stdio, launched the way a host launches it (a bare environment)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import ByteReceiveStream
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client
from mcp.types import jsonrpc_message_adapter

from modelyard.sandbox import Sandbox
from modelyard.tools import TOOL_NAMES
from tests.server.conftest import (
    KEY,
    READ_TOOLS,
    SERVE,
    WRITE_TOOLS,
    error_text,
    server_env,
    stdio_params,
    structured,
)

pytestmark = pytest.mark.anyio

NINE = {
    "execute",
    "plan_route",
    "compare_models",
    "execute_batch",
    "list_models",
    "get_metrics",
    "get_budget",
    "set_budget",
    "test_connection",
}


async def test_tools_list_over_stdio_has_the_nine_tools_with_output_schemas_and_read_only_hints(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """tools/list names exactly the nine DESIGN §2 tools; read tools say readOnlyHint, the others do not."""
    with anyio.fail_after(30):
        async with Client(stdio_params(server_env(tmp_path, sandbox.base_url), tmp_path)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == NINE == set(TOOL_NAMES)
    for name in READ_TOOLS:
        annotations = tools[name].annotations
        assert annotations is not None and annotations.read_only_hint is True, name
    for name in WRITE_TOOLS:
        annotations = tools[name].annotations
        assert annotations is not None and annotations.read_only_hint is False, name
    for name, tool in tools.items():
        assert tool.output_schema and tool.output_schema.get("type") == "object", name
        assert tool.description, name
    assert {"content", "model", "cost", "attempts"} <= set(tools["execute"].output_schema["properties"])


async def test_every_tool_family_answers_over_stdio_with_structured_results_and_tool_errors(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """list_models, execute, plan_route, get_metrics, budgets and test_connection work over the wire; mistakes
    come back as is_error results whose text says what to do."""
    with anyio.fail_after(40):
        async with Client(stdio_params(server_env(tmp_path, sandbox.base_url), tmp_path)) as client:
            models = structured(await client.call_tool("list_models", {"search": "gpt-4o-mini", "limit": 5}))
            assert "openai/gpt-4o-mini" in [row["id"] for row in models["models"]]
            assert models["total"] >= 1 and models["catalog_size"] >= models["total"]

            done = structured(await client.call_tool("execute", {"prompt": "Say hi", "model": "gpt-4o-mini"}))
            assert done["content"] and done["model"] == "openai/gpt-4o-mini"
            assert Decimal(str(done["cost"])) == sandbox.state.ledger[-1].cost > 0
            assert [attempt["outcome"] for attempt in done["attempts"]] == ["ok"]
            assert done["usage"]["completion_tokens"] > 0 and done["requested_model"] == "gpt-4o-mini"

            requests_before = sandbox.state.request_count
            plan = structured(await client.call_tool("plan_route", {"prompt": "x", "capabilities": ["vision"]}))
            assert plan["candidates"] and plan["excluded_total"] > 0
            assert sandbox.state.request_count == requests_before  # a dry run sends nothing

            metrics = structured(await client.call_tool("get_metrics", {"window": "today"}))
            assert metrics["total_requests"] == 1 and Decimal(str(metrics["total_cost"])) == Decimal(str(done["cost"]))

            unknown = error_text(await client.call_tool("execute", {"prompt": "x", "model": "gpt-4o-mnii"}))
            assert "gpt-4o-mnii" in unknown and "did you mean" in unknown and "openai/gpt-4o-mini" in unknown

            assert structured(await client.call_tool("get_budget", {}))["daily"] is None
            tightened = structured(await client.call_tool("set_budget", {"daily": 2}))
            assert Decimal(str(tightened["daily"])) == 2
            raised = error_text(await client.call_tool("set_budget", {"daily": 50}))
            assert "only tighten" in raised and "operator" in raised
            assert Decimal(str(structured(await client.call_tool("get_budget", {}))["daily"])) == 2

            report = structured(await client.call_tool("test_connection", {}))
    assert report["sandbox"] is True and report["key_present"] is True and report["key_valid"] is True
    assert report["store_healthy"] is True and report["catalog_models"] >= 25 and report["problems"] == []
    assert report["upstream"] == sandbox.base_url


async def test_serve_without_a_key_starts_lists_models_and_execute_says_how_to_set_the_key(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """No OPENROUTER_API_KEY: the server still starts, the public catalog answers, and execute explains the
    key and the sandbox instead of failing obscurely."""
    with anyio.fail_after(30):
        async with Client(stdio_params(server_env(tmp_path, sandbox.base_url, key=None), tmp_path)) as client:
            assert structured(await client.call_tool("list_models", {}))["total"] > 0
            message = error_text(await client.call_tool("execute", {"prompt": "hi", "model": "gpt-4o-mini"}))
            report = structured(await client.call_tool("test_connection", {}))
    assert "OPENROUTER_API_KEY" in message and "sandbox" in message
    assert report["key_present"] is False and any("OPENROUTER_API_KEY" in p for p in report["problems"])
    assert sandbox.state.request_count == 0  # nothing was sent upstream without a key


async def _read_all(stream: ByteReceiveStream, into: bytearray) -> None:
    try:
        async for chunk in stream:
            into += chunk
    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass


async def test_the_childs_stdout_carries_only_json_rpc_and_its_logs_go_to_stderr(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A raw conversation with the child, to its exit: every stdout line is a JSON-RPC message, the logs are
    on stderr, and the key appears in neither, even with debug logging on."""
    env = server_env(tmp_path, sandbox.base_url) | {"MODELYARD_DEBUG": "1"}
    requests: list[dict[str, Any]] = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "list_models", "arguments": {"limit": 2}},
        },
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "execute", "arguments": {"prompt": "hi"}},
        },
    ]
    stderr = bytearray()
    lines: list[bytes] = []
    with anyio.fail_after(30):
        async with (
            await anyio.open_process([sys.executable, *SERVE], env=env, cwd=str(tmp_path)) as process,
            anyio.create_task_group() as group,
        ):
            try:
                assert process.stdin and process.stdout and process.stderr
                group.start_soon(_read_all, process.stderr, stderr)
                stdout = BufferedByteReceiveStream(process.stdout)
                await process.stdin.send((json.dumps(requests[0]) + "\n").encode())
                lines.append(await stdout.receive_until(b"\n", 1 << 20))
                for message in requests[1:]:
                    await process.stdin.send((json.dumps(message) + "\n").encode())
                while b'"id":3' not in lines[-1].replace(b" ", b""):
                    lines.append(await stdout.receive_until(b"\n", 1 << 22))
                await process.stdin.aclose()  # a host closing stdin: the server must exit on its own
                rest = bytearray()
                await _read_all(stdout, rest)
                lines += rest.split(b"\n")
                assert await process.wait() == 0, stderr.decode(errors="replace")
            finally:
                if process.returncode is None:  # a failure above: don't wait for an exit
                    process.kill()
    raw = [line for line in lines if line.strip()]
    for line in raw:
        jsonrpc_message_adapter.validate_json(line)  # raises on anything that is not a JSON-RPC message
    answers = {m["id"]: m for m in map(json.loads, raw) if "result" in m}
    assert set(answers) == {1, 2, 3} and len(raw) == 3
    assert answers[2]["result"]["structuredContent"]["models"]
    assert answers[3]["result"]["structuredContent"]["content"]
    logs = stderr.decode(errors="replace")
    assert "modelyard ready" in logs and "chat/completions" in logs
    wire = b"\n".join(lines).decode()
    assert KEY not in logs and KEY not in wire


def _line(message: dict[str, Any]) -> bytes:
    return (json.dumps(message) + "\n").encode()


_HANDSHAKE = (
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is a POSIX signal")
async def test_a_sigterm_during_a_call_shuts_the_server_down_cleanly_and_the_call_is_in_the_ledger(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Hosts stop servers with SIGTERM (the Python SDK's client does, 2 s after closing stdin). The server
    exits 0, as when its stdin closes, and the call in flight, whose answer had begun, has its ledger row
    (its cost unknown yet: OpenRouter has not finished it) instead of vanishing with the process."""
    import signal

    model = "openai/gpt-4o-mini"
    sandbox.state.faults.add(model=model, kind="latency", count=1, latency_ms=5000)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "execute", "arguments": {
        "prompt": "hi", "model": model}}}  # fmt: skip
    stderr = bytearray()
    with anyio.fail_after(30):
        async with (
            await anyio.open_process([sys.executable, *SERVE], env=server_env(tmp_path, sandbox.base_url)) as process,
            anyio.create_task_group() as group,
        ):
            try:
                assert process.stdin and process.stdout and process.stderr
                group.start_soon(_read_all, process.stderr, stderr)
                stdout = BufferedByteReceiveStream(process.stdout)
                await process.stdin.send(_line(_HANDSHAKE[0]))
                await stdout.receive_until(b"\n", 1 << 20)
                await process.stdin.send(_line(_HANDSHAKE[1]) + _line(call))
                for _ in range(500):  # until the request reached the upstream; its headers come at once
                    if sandbox.state.ledger:
                        break
                    await anyio.sleep(0.02)
                await anyio.sleep(1.0)  # the headers (sent at once) reach the child; the answer is 5 s away
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0, stderr.decode(errors="replace")
            finally:
                if process.returncode is None:
                    process.kill()
    assert _cancelled_with_its_abandoned_answer(tmp_path / "s.db", sandbox), stderr.decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="modelyard's own transport serves POSIX pipes only")
async def test_a_host_closing_the_servers_stdout_ends_it_cleanly_and_the_call_in_flight_is_in_the_ledger(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A host that stops reading (it closed its end of the server's stdout) ends the server as closing stdin
    does: the next answer finds the wire gone, the server exits 0 without a traceback, and the call in
    flight, whose answer had begun, has its ledger row instead of vanishing with the process."""
    import os

    from modelyard.server.stdio import FdLines

    model = "openai/gpt-4o-mini"
    sandbox.state.faults.add(model=model, kind="latency", count=1, latency_ms=20_000)
    execute = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "execute", "arguments": {
        "prompt": "hi", "model": model}}}  # fmt: skip
    get_budget = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "get_budget", "arguments": {}}}
    stdout_end, server_stdout = os.pipe()  # a pipe of our own: its read end can really be closed
    os.set_blocking(stdout_end, False)
    env = server_env(tmp_path, sandbox.base_url)
    try:
        with anyio.fail_after(30):
            process = await anyio.open_process([sys.executable, *SERVE], env=env, stdout=server_stdout)
        os.close(server_stdout)
        async with process:
            try:
                assert process.stdin and process.stderr
                await process.stdin.send(_line(_HANDSHAKE[0]))
                with anyio.fail_after(30):
                    assert '"id":1' in (await anext(aiter(FdLines(stdout_end)))).replace(" ", "")
                await process.stdin.send(_line(_HANDSHAKE[1]) + _line(execute))
                for _ in range(500):  # until the request reached the upstream
                    if sandbox.state.ledger:
                        break
                    await anyio.sleep(0.02)
                await anyio.sleep(1.0)  # its headers (sent at once) reach the child; the answer is 20 s away
                os.close(stdout_end)  # the host stops reading
                await process.stdin.send(_line(get_budget))  # answered at once, into a closed pipe
                with anyio.fail_after(10):
                    code = await process.wait()
                stderr = b"".join([chunk async for chunk in process.stderr]).decode(errors="replace")
            finally:
                if process.returncode is None:
                    process.kill()
    finally:
        with contextlib.suppress(OSError):
            os.close(stdout_end)
    assert code == 0 and "Traceback" not in stderr, stderr
    assert _cancelled_with_its_abandoned_answer(tmp_path / "s.db", sandbox), stderr


def _cancelled_with_its_abandoned_answer(db: Path, sandbox: Sandbox) -> bool:
    """The ledger holds the request, cancelled, and its abandoned answer, which may be billed (an unknown
    cost, with its generation id for the lookup)."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT status, cost, json_extract(detail, '$.generation_id') FROM ledger").fetchall()
    finally:
        conn.close()
    expected = [("cancelled", "0", None), ("error", None, sandbox.state.ledger[0].generation_id)]
    return sorted(rows, key=str) == sorted(expected, key=str)
