"""What the reliability tests share: sizes, real server processes, and readers of the ledger, the sandbox and /proc.

Every load loop here is bounded in count and in time, and every server listens on loopback only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import pytest
from anyio.abc import Process
from mcp import Client, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from modelyard.sandbox import Sandbox
from tests.server.conftest import SERVE, free_port, stdio_params

T = TypeVar("T")

FULL_ENV = "RELIABILITY_FULL"
FULL_OPTION = "--reliability-full"


def by_size(ci: T, full: T) -> list[Any]:
    """The two sizes of a reliability test, as `size` parameters with the ids `ci` and `full`.

    The reliability conftest keeps the one this run asked for (`--reliability-full` or RELIABILITY_FULL=1).
    """
    return [pytest.param(ci, id="ci"), pytest.param(full, id="full")]


# ---------------------------------------------------------------------------------------------- results


def text_of(result: CallToolResult) -> str:
    """The text blocks of a tool result, joined."""
    return " ".join(part.text for part in result.content if isinstance(part, TextContent))


def bare_error(tool: str, result: CallToolResult) -> bool:
    """True when an error result is the SDK's bare "Error executing tool X": an exception escaped the tool."""
    return result.is_error and text_of(result).strip() in (f"Error executing tool {tool}", "Internal server error")


def money(value: object) -> Decimal:
    """A USD amount from a result (a JSON number) or a store/sandbox decimal string, exactly as written."""
    return Decimal(str(value))


# ---------------------------------------------------------------------------------------------- processes


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent pid; the command name (field 2) may hold spaces, so split after its ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def rss_kib(pid: int) -> int:
    """The resident set size of a process (VmRSS), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    """How many file descriptors a process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class StdioServer:
    """A `python -m modelyard serve` child over stdio: its MCP client, its pid and its stderr file."""

    client: Client
    pid: int
    stderr: Path


@asynccontextmanager
async def stdio_server(env: dict[str, str], cwd: Path, stderr: Path) -> AsyncIterator[StdioServer]:
    """Launch the server the way a host does, its stderr to a file; yield it once the session is up."""
    before = _children(os.getpid())
    with stderr.open("a") as errlog:
        async with Client(stdio_client(stdio_params(env, cwd), errlog=errlog)) as client:
            new = _children(os.getpid()) - before
            assert len(new) == 1, f"expected one new child process, found {new}"
            yield StdioServer(client, new.pop(), stderr)


@dataclass
class HttpServer:
    """A `python -m modelyard serve --transport streamable-http` child on a loopback port."""

    url: str
    process: Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def _port_answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@asynccontextmanager
async def http_server(
    env: dict[str, str], cwd: Path, log: Path, *, startup_s: float = 30.0
) -> AsyncIterator[HttpServer]:
    """Start the streamable-HTTP server on a free 127.0.0.1 port; yield once the port answers; stop it."""
    port = free_port()
    command = [sys.executable, *SERVE, "--transport", "streamable-http", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as sink:
        process = await anyio.open_process(
            command, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
    try:
        with anyio.fail_after(startup_s):
            while not await anyio.to_thread.run_sync(_port_answers, port):
                assert process.returncode is None, f"server exited {process.returncode}, see {log}"
                await anyio.sleep(0.05)
        yield HttpServer(f"http://127.0.0.1:{port}/mcp", process, log)
    finally:
        if process.returncode is None:
            process.terminate()
            with anyio.move_on_after(10):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()


@asynccontextmanager
async def http_session(url: str, *, token: str | None = None, read_s: float = 120.0) -> AsyncIterator[Client]:
    """One MCP client session over streamable HTTP (its own connection pool)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx2.Limits(max_connections=200, max_keepalive_connections=200)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=read_s), limits=limits) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


# ---------------------------------------------------------------------------------------------- the store


def read_store(path: Path, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on the SQLite store (safe while the server writes: WAL)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, tuple(params)).fetchall()
    finally:
        conn.close()


def ledger_cost(path: Path) -> Decimal:
    """The exact sum of every ledger row's cost (decimal TEXT) in the store."""
    return sum(
        (Decimal(cost) for (cost,) in read_store(path, "SELECT cost FROM ledger WHERE cost IS NOT NULL")), Decimal(0)
    )


def spend_totals(path: Path) -> dict[str, Decimal]:
    """The running spend totals per UTC day and month (`spend` table)."""
    return {period: Decimal(total) for period, total in read_store(path, "SELECT period, total FROM spend")}


def integrity(path: Path) -> str:
    """`PRAGMA integrity_check` of the store ('ok' when intact)."""
    conn = sqlite3.connect(str(path), timeout=10)
    try:
        return "; ".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchall())
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------- the sandbox


def billed_entries(sandbox: Sandbox) -> list[Any]:
    """The sandbox's ledger entries that cost something (answers it billed)."""
    return [entry for entry in sandbox.state.ledger if entry.cost > 0]


def fault_share(sandbox: Sandbox) -> float:
    """The share of upstream requests that the sandbox answered with an injected fault."""
    entries = sandbox.state.ledger
    return sum(1 for entry in entries if entry.fault) / max(1, len(entries))


# ---------------------------------------------------------------------------------------------- figures


@dataclass
class Figures:
    """Measured figures of one run, printed for RELIABILITY.md (run pytest with -s to see them)."""

    name: str
    values: dict[str, object]

    def show(self) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"\nRELIABILITY {self.name} {stamp} " + json.dumps(self.values, default=str), flush=True)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of `values` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def env_with(base: Mapping[str, str], **extra: str) -> dict[str, str]:
    """A copy of `base` with `extra` added."""
    return {**base, **extra}


def fd_targets(pid: int) -> list[str]:
    """What each open file descriptor of a process points at (sockets, pipes, files)."""
    found = []
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            found.append(f"{fd}:{os.readlink(f'/proc/{pid}/fd/{fd}')}")
        except OSError:
            continue
    return found
