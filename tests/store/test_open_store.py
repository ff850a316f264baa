"""open_store: store URLs and plain paths choose and open the backend."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelyard.store
from modelyard.errors import ConfigurationError
from modelyard.store import SQLiteStore, open_store

pytestmark = pytest.mark.anyio


async def _opened_path(url: str) -> str:
    store = open_store(url)
    assert isinstance(store, SQLiteStore)
    await store.aclose()
    return str(store.path)


async def test_an_absolute_sqlite_url_opens_that_file(tmp_path: Path) -> None:
    """sqlite:///abs/path.db (three slashes, then the absolute path) opens /abs/path.db."""
    target = tmp_path / "a" / "store.db"
    assert await _opened_path(f"sqlite://{target}") == str(target)
    assert target.exists()


async def test_four_slashes_also_name_an_absolute_path(tmp_path: Path) -> None:
    """sqlite:////abs/path.db (SQLAlchemy's spelling) opens the same file."""
    target = tmp_path / "store.db"
    assert await _opened_path(f"sqlite:///{target}") == str(target)


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://:memory:", ":memory:"])
async def test_memory_urls_open_an_in_memory_store(url: str) -> None:
    """The :memory: spellings open a private in-memory database."""
    assert await _opened_path(url) == ":memory:"


async def test_a_plain_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain relative path opens under the working directory."""
    monkeypatch.chdir(tmp_path)
    assert await _opened_path("sub/plain.db") == str(tmp_path / "sub" / "plain.db")


async def test_a_home_relative_url_expands_the_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite:///~/x.db opens x.db in the home folder."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert await _opened_path("sqlite:///~/x.db") == str(tmp_path / "x.db")


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "rediss://user:secret@cache:6380"])
async def test_redis_urls_open_a_redis_store_without_connecting(url: str) -> None:
    """A Redis URL opens the shared RedisStore (lazily: no connection yet) and its repr hides the password."""
    from modelyard.store.redis import RedisStore

    store = open_store(url)
    assert isinstance(store, RedisStore)
    assert "secret" not in repr(store)
    await store.aclose()


@pytest.mark.parametrize("url", ["postgres://db/x", "http://example.com/x.db"])
def test_unknown_schemes_are_configuration_errors(url: str) -> None:
    """Any other scheme is refused and named."""
    with pytest.raises(ConfigurationError, match="Unknown store URL scheme"):
        open_store(url)


@pytest.mark.parametrize("url", ["", "   ", "sqlite://", "sqlite:///", "sqlite://relative.db"])
def test_urls_without_a_database_file_are_configuration_errors(url: str) -> None:
    """An empty URL, or a sqlite URL naming no absolute file, is refused."""
    with pytest.raises(ConfigurationError):
        open_store(url)


def test_the_package_exports_its_public_names() -> None:
    """The store package exports exactly its public interface."""
    assert sorted(modelyard.store.__all__) == sorted(
        ["BudgetLimits", "LedgerRow", "Reservation", "SQLiteStore", "SpendTotals", "Store", "open_store"]
    )
