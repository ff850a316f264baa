"""Fixtures for the tool tests: a sandbox upstream and an MCP client of a server that reads images from tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client

from modelyard.sandbox import Sandbox
from modelyard.server import build_server
from modelyard.settings import Settings

KEY = "sk-or-v1-sandbox"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A sandbox upstream on a free loopback port."""
    async with Sandbox.running(api_key=KEY) as sb:
        yield sb


@pytest.fixture
async def client(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Client]:
    """An in-memory MCP client of a server on the sandbox, with a fresh store and tmp_path as its image folder."""
    settings = Settings(
        openrouter_api_key=KEY,
        openrouter_base_url=sandbox.base_url,
        store=f"sqlite:///{tmp_path / 'tools.db'}",
        allowed_image_dirs=[tmp_path],
    )
    async with Client(build_server(settings)) as c:
        yield c
