"""Fixtures for the server tests: a sandbox upstream, a server child's environment, ports and results."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import StdioServerParameters
from mcp.types import CallToolResult, TextContent

from modelyard.sandbox import Sandbox

KEY = "sk-or-v1-sandbox"
READ_TOOLS = ("list_models", "get_metrics", "get_budget", "plan_route", "test_connection")
WRITE_TOOLS = ("execute", "set_budget", "compare_models", "execute_batch")
SERVE = ["-m", "modelyard", "serve"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A sandbox upstream on a free loopback port, in this process (servers under test are children)."""
    async with Sandbox.running(api_key=KEY) as sb:
        yield sb


def server_env(tmp_path: Path, base_url: str | None, *, key: str | None = KEY, **extra: str) -> dict[str, str]:
    """The whole environment of a `python -m modelyard serve` child: PATH, a throw-away HOME (so no user
    config is read), this checkout's code (not whichever one an editable install points at), the key, the
    upstream, a fresh SQLite store, and `extra`."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "PYTHONPATH": str(ROOT)}
    env["MODELYARD_STORE"] = f"sqlite:///{tmp_path / 's.db'}"
    if base_url is not None:
        env["OPENROUTER_BASE_URL"] = base_url
    if key is not None:
        env["OPENROUTER_API_KEY"] = key
    return {**env, **extra}


def stdio_params(env: dict[str, str], cwd: Path) -> StdioServerParameters:
    """`python -m modelyard serve` over stdio, exactly as a host launches it."""
    return StdioServerParameters(command=sys.executable, args=list(SERVE), env=env, cwd=str(cwd))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def text_of(result: CallToolResult) -> str:
    """The text blocks of a tool result, joined."""
    return " ".join(part.text for part in result.content if isinstance(part, TextContent))


def structured(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful tool result (fails the test on an error result)."""
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    """The message of an is_error tool result (fails the test on a success)."""
    assert result.is_error, result.structured_content
    return text_of(result)
