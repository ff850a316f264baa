"""Fixtures for the CLI tests: one sandbox for the module, and the environment that points the CLI at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from modelyard.sandbox import Sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """One sandbox for the module, served from a background thread (an anyio blocking portal), so each test
    can call the synchronous `main([...])`, which starts its own loop, as the console script does."""
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(Sandbox.running(port=0)) as sb:
        yield sb


@pytest.fixture
def env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point the CLI at the sandbox with a fresh store; returns an empty config file to pass as --config."""
    sandbox.state.faults.clear()
    monkeypatch.setenv("OPENROUTER_API_KEY", sandbox.api_key)
    monkeypatch.setenv("OPENROUTER_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("MODELYARD_STORE", f"sqlite:///{tmp_path / 'cli.db'}")
    config = tmp_path / "config.toml"
    config.write_text("")
    return config
