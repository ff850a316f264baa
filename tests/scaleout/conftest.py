"""Fixtures every fleet test shares: a sandbox process and a fresh namespace on the test Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.scaleout.fleet import Sandbox, sandbox_process
from tests.scaleout.redis_server import store_url, wipe


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    """The sandbox in a process of its own, as the fleet's instances reach it over loopback."""
    async with sandbox_process(tmp_path) as running:
        yield running


@pytest.fixture
async def store() -> AsyncIterator[str]:
    """A fresh namespace on the test Redis for this fleet; wiped afterwards."""
    url = store_url()
    yield url
    await wipe(url)
