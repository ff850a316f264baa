"""`modelyard serve` logs upstream requests at DEBUG only: httpx2 (and httpcore2) say nothing below WARNING on
stderr unless `MODELYARD_DEBUG=1`, as the README says."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import stdio_client

from modelyard.cli import configure_logging
from modelyard.openrouter import OpenRouterClient
from modelyard.sandbox import Sandbox
from tests.server.conftest import KEY, server_env, stdio_params

pytestmark = pytest.mark.anyio

_LOGGERS = ("", "httpx2", "httpcore2")


@pytest.fixture
def logging_levels() -> Iterator[None]:
    """Put back the levels `configure_logging` sets, so no other test sees them."""
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


async def _list_models(base_url: str) -> None:
    async with OpenRouterClient(KEY, base_url=base_url) as client:
        await client.list_models()


@pytest.mark.usefixtures("logging_levels")
async def test_the_servers_logging_keeps_httpx2_quiet_about_each_upstream_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With serve's logging (INFO), an upstream call leaves no httpx2 record; with debug on, it does."""
    async with Sandbox.running(api_key=KEY) as sandbox:
        configure_logging(quiet=False)
        await _list_models(sandbox.base_url)
        assert [r for r in caplog.records if r.name.startswith(("httpx2", "httpcore2"))] == []
        assert logging.getLogger().getEffectiveLevel() == logging.INFO

        configure_logging(quiet=False, debug=True)
        await _list_models(sandbox.base_url)
    assert any(r.name == "httpx2" and "HTTP Request: GET" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("debug", [False, True], ids=["default", "MODELYARD_DEBUG=1"])
async def test_modelyard_serve_writes_httpx2_request_lines_to_stderr_only_in_debug(tmp_path: Path, debug: bool) -> None:
    """The server as a host runs it: a tool call that reaches the upstream, then its stderr is read."""
    stderr = tmp_path / "stderr.txt"
    async with Sandbox.running(api_key=KEY) as sandbox:
        env = server_env(tmp_path, sandbox.base_url, **({"MODELYARD_DEBUG": "1"} if debug else {}))
        with anyio.fail_after(30), stderr.open("w") as errlog:
            async with Client(stdio_client(stdio_params(env, tmp_path), errlog=errlog)) as client:
                await client.call_tool("list_models", {"limit": 1})
    upstream_lines = [line for line in stderr.read_text().splitlines() if "httpx2" in line]
    assert bool(upstream_lines) is debug, stderr.read_text()
