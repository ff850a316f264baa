"""Shared fixtures: anyio on asyncio, the shared fixtures folder, a clean environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = SHARED / "fixtures" / "openrouter"


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--reliability-full`: run the reliability suite (tests/reliability) at the issue's full sizes."""
    parser.addoption(
        "--reliability-full",
        action="store_true",
        default=False,
        help="run tests/reliability at full size (also RELIABILITY_FULL=1); CI size otherwise",
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test sees the developer's OpenRouter key or modelyard settings, nor writes to their state dir (where
    a Redis store's spool lives)."""
    import os

    for name in list(os.environ):
        if name.startswith(("OPENROUTER_", "MODELYARD_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    yield


def shared_fixture(*parts: str) -> Path:
    """A path under ../shared/fixtures/openrouter, or skip the test saying why."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared fixtures folder is not beside this checkout")
    return path
