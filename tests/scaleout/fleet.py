"""A fleet on loopback for the scale-out tests: one sandbox upstream and N `modelyard serve --transport
streamable-http` processes sharing one Redis, each driven by a real MCP client."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
from anyio.abc import Process
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

KEY = "sk-or-v1-sandbox"
STARTUP_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


async def _stop(process: Process) -> None:
    if process.returncode is None:
        process.terminate()
        with anyio.move_on_after(5):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()
    await process.aclose()


@dataclass
class Sandbox:
    """The sandbox child process: its OpenAI-style base URL and its control API."""

    base_url: str
    http: httpx2.AsyncClient

    @property
    def control(self) -> str:
        return self.base_url.removesuffix("/api/v1") + "/_sandbox"

    async def ledger(self) -> dict[str, Any]:
        """`GET /_sandbox/ledger`: entries and totals (money as decimal strings)."""
        response = await self.http.get(f"{self.control}/ledger")
        response.raise_for_status()
        ledger: dict[str, Any] = response.json()
        return ledger

    async def fault(self, **fault: Any) -> None:
        """`POST /_sandbox/faults`."""
        (await self.http.post(f"{self.control}/faults", json=fault)).raise_for_status()


@asynccontextmanager
async def sandbox_process(tmp_path: Path) -> AsyncIterator[Sandbox]:
    """`python -m modelyard.sandbox --port 0` as a child; yields once it printed SANDBOX_URL."""
    log = (tmp_path / "sandbox.log").open("wb")
    process = await anyio.open_process(
        [sys.executable, "-m", "modelyard.sandbox", "--port", "0", "--key", KEY],
        stdin=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        assert process.stdout is not None
        seen = b""
        with anyio.fail_after(STARTUP_S):
            while b"\n" not in seen:
                seen += await process.stdout.receive()
        line = seen.decode().splitlines()[0]
        assert line.startswith("SANDBOX_URL="), line
        async with httpx2.AsyncClient(timeout=30) as http:
            yield Sandbox(base_url=line.split("=", 1)[1].strip(), http=http)
    finally:
        await _stop(process)
        log.close()


def server_env(tmp_path: Path, base_url: str, store: str, **extra: str) -> dict[str, str]:
    """The whole environment of a server child: PATH, a throw-away HOME, the key, the sandbox, the store."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(home),
        "OPENROUTER_API_KEY": KEY,
        "OPENROUTER_BASE_URL": base_url,
        "MODELYARD_STORE": store,
        **extra,
    }


@dataclass
class Instance:
    """One server child: its MCP URL and its process (tests SIGKILL it to simulate a crash)."""

    url: str
    process: Process


@asynccontextmanager
async def http_server(env: dict[str, str], tmp_path: Path, name: str) -> AsyncIterator[str]:
    """`python -m modelyard serve --transport streamable-http` on a free port; yields its MCP URL."""
    async with http_instance(env, tmp_path, name) as instance:
        yield instance.url


@asynccontextmanager
async def http_instance(env: dict[str, str], tmp_path: Path, name: str) -> AsyncIterator[Instance]:
    """As `http_server`, yielding the child process too."""
    port = free_port()
    command = [sys.executable, "-m", "modelyard", "serve", "--transport", "streamable-http", "--port", str(port)]
    log = tmp_path / f"{name}.log"
    with log.open("wb") as sink:
        process = await anyio.open_process(
            command, env=env, cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
    try:
        with anyio.fail_after(STARTUP_S):
            while not await anyio.to_thread.run_sync(_port_answers, port):
                assert process.returncode is None, f"{name} exited {process.returncode}: {log.read_text()}"
                await anyio.sleep(0.1)
        yield Instance(url=f"http://127.0.0.1:{port}/mcp", process=process)
    finally:
        await _stop(process)


@asynccontextmanager
async def fleet(env: dict[str, str], tmp_path: Path, size: int = 2) -> AsyncIterator[list[Client]]:
    """`size` servers sharing `env` (so one store), each with a connected MCP client, started together."""
    async with fleet_instances(env, tmp_path, size) as (_, clients):
        yield clients


@asynccontextmanager
async def fleet_instances(
    env: dict[str, str], tmp_path: Path, size: int = 2
) -> AsyncIterator[tuple[list[Instance], list[Client]]]:
    """As `fleet`, yielding the instances (URL and process) beside their clients."""
    async with AsyncExitStack() as stack:
        instances: list[Instance | None] = [None] * size

        async def start(index: int) -> None:
            instances[index] = await stack.enter_async_context(http_instance(env, tmp_path, f"instance-{index}"))

        async with anyio.create_task_group() as group:
            for index in range(size):
                group.start_soon(start, index)
        started = [instance for instance in instances if instance is not None]
        clients = []
        for url in (instance.url for instance in started):
            http = await stack.enter_async_context(httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=120)))
            clients.append(await stack.enter_async_context(Client(streamable_http_client(url, http_client=http))))
        yield started, clients


def text_of(result: CallToolResult) -> str:
    """The text blocks of a tool result, joined."""
    return " ".join(part.text for part in result.content if isinstance(part, TextContent))


def structured(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful tool result (fails the test on an error result)."""
    assert not result.is_error, text_of(result)
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content
