"""open_store: store URLs and plain paths choose and open the backend."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import modelyard.store
from modelyard.errors import ConfigurationError
from modelyard.store import SQLiteStore, open_store, open_store_async, redacted
from tests.store._locks import locked_for

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


def test_three_slashes_and_a_bare_file_name_are_refused_not_put_at_the_root() -> None:
    """sqlite:///relative.db (SQLAlchemy's relative spelling) would open /relative.db here: it is refused,
    and the message names the plain path that means the working directory."""
    with pytest.raises(ConfigurationError, match=r"filesystem root.*plain path \(relative\.db\)"):
        open_store("sqlite:///relative.db")


async def test_four_slashes_and_a_bare_file_name_open_it_at_the_root_as_asked() -> None:
    """sqlite:////x.db asks for the root in so many words: it is not refused as ambiguous."""
    from modelyard.store import _sqlite_path

    assert _sqlite_path("sqlite:////x.db") == Path("/x.db")


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
        [
            "BudgetLimits",
            "LedgerRow",
            "Reservation",
            "SQLiteStore",
            "SpendTotals",
            "Store",
            "open_store",
            "open_store_async",
            "redacted",
            "spool_location",
        ]
    )


async def test_open_store_async_opens_the_file_a_url_names(tmp_path: Path) -> None:
    """The async opener reads URLs exactly as `open_store` does."""
    target = tmp_path / "a" / "async.db"
    store = await open_store_async(f"sqlite://{target}")
    assert isinstance(store, SQLiteStore)
    assert store.path == target
    await store.aclose()
    memory = await open_store_async("sqlite:///:memory:")
    assert isinstance(memory, SQLiteStore)
    assert str(memory.path) == ":memory:"
    await memory.aclose()


@pytest.mark.parametrize("url", ["", "postgres://db/x", "sqlite://relative.db"])
async def test_open_store_async_refuses_what_open_store_refuses(url: str) -> None:
    """Bad URLs are the same configuration errors."""
    with pytest.raises(ConfigurationError):
        await open_store_async(url)


async def test_a_file_that_cannot_be_created_is_a_configuration_error_from_the_async_opener(tmp_path: Path) -> None:
    """A path under a plain file cannot be opened: the error names the path."""
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigurationError, match="Cannot open the SQLite store"):
        await SQLiteStore.open(tmp_path / "file" / "store.db")


async def test_a_file_another_process_holds_locked_is_waited_for_without_blocking_the_event_loop(
    tmp_path: Path,
) -> None:
    """While another connection holds the write lock, the open waits in a worker thread: the event
    loop keeps running (here it is what releases the lock), and the open then succeeds."""
    db = tmp_path / "locked.db"
    await (await SQLiteStore.open(db)).aclose()  # the file exists, in WAL mode, with its schema
    async with locked_for(db) as lock:
        began = anyio.current_time()
        with anyio.fail_after(8):
            store = await open_store_async(f"sqlite://{db}")
        waited = anyio.current_time() - began
    ticks = lock.ticks
    assert ticks >= 10, f"the event loop ran only {ticks} times while the open waited"
    assert waited >= 0.25, "the open did not wait for the lock"
    await store.aclose()


_REDIS_DOWN = "redis://:hunter2pass@127.0.0.1:1/0"  # port 1: nothing listens there


async def test_a_redis_store_that_does_not_answer_is_refused_at_open_naming_it_without_its_password() -> None:
    with pytest.raises(ConfigurationError, match="does not answer") as caught:
        await open_store_async(_REDIS_DOWN)
    assert "127.0.0.1:1" in str(caught.value) and "hunter2pass" not in str(caught.value)
    assert "MODELYARD_STORE" in str(caught.value)


async def test_each_call_to_a_redis_store_that_went_down_is_a_store_error_not_a_redis_one() -> None:
    """A server keeps running when its Redis goes away: each call then says which store and what to check."""
    from modelyard.errors import StoreUnavailableError
    from modelyard.store.redis import RedisStore

    async with RedisStore(_REDIS_DOWN) as store:
        for call in (lambda: store.totals(now=0.0), lambda: store.get_value("k"), lambda: store.rows()):
            with pytest.raises(StoreUnavailableError, match="does not answer") as caught:
                await call()
            assert "hunter2pass" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://app:p@ss@cache:6379/0", "redis://app:***@cache:6379/0"),
        ("rediss://default:a@b@c@cache", "rediss://default:***@cache"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
    ],
)
def test_a_store_urls_password_is_hidden_whole_even_when_it_holds_an_at_sign(url: str, shown: str) -> None:
    """Redis reads the password up to the last `@` of the authority: none of it may show (`modelyard ledger`
    prints the store it read on stderr, the server its log line)."""
    assert redacted(url) == shown
