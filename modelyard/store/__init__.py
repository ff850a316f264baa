"""Persistence behind one interface: the ledger, budget reservations and a small key-value area.

`open_store(url)` picks the backend from the store URL (`MODELYARD_STORE`): SQLite (embedded, the
default) or Redis (shared by a fleet of instances; `modelyard.store.redis`, imported only when used).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from modelyard.errors import ConfigurationError
from modelyard.store.base import MEMORY, BudgetLimits, LedgerRow, Reservation, SpendTotals, Store

if TYPE_CHECKING:
    from modelyard.store.sqlite import SQLiteStore

__all__ = [
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

_SQLITE_PREFIX = "sqlite://"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_WINDOWS_DRIVE = re.compile(r"^/[A-Za-z]:[/\\]")


def open_store(url: str) -> Store:
    """Open the store a URL names.

    Accepted: `sqlite:///abs/path.db` (also `sqlite:////abs/path.db`), `sqlite:///:memory:`,
    `sqlite:///~/path.db`, a plain file path (`~` expanded, relative to the working directory), and
    `redis://[user:password@]host:port/db` or `rediss://...` (optionally `?prefix=NAME`), which opens a
    `RedisStore` without connecting yet.

    Raises:
        ConfigurationError: the URL is empty, names no path (or only a bare file name after
            `sqlite:///`, which would be at the filesystem root), is a malformed Redis URL or uses an
            unknown scheme, or the database cannot be opened.
    """
    text = url.strip()
    if not text:
        raise ConfigurationError("The store URL is empty; set MODELYARD_STORE to sqlite:///path/to/file.db.")
    if _is_redis(text):
        from modelyard.store.redis import RedisStore

        try:
            return RedisStore(text)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} ({redacted(text)})") from None
    from modelyard.store.sqlite import SQLiteStore

    return SQLiteStore(_sqlite_path(text))


async def open_store_async(url: str) -> Store:
    """`open_store`, with a SQLite file opened in a worker thread: a file another process holds locked
    makes this wait (up to the busy timeout) without blocking the event loop. A Redis store must answer
    a PING.

    Raises:
        ConfigurationError: as `open_store`, or a Redis store that does not answer.
    """
    text = url.strip()
    if not text:
        return open_store(text)  # the empty URL's error
    if _is_redis(text):
        store = open_store(text)
        if not await store.healthy():  # a server that opens on a Redis that is down would fail every call
            await store.aclose()
            raise ConfigurationError(
                f"The Redis store at {redacted(text.split('?')[0])} does not answer: check that it is running "
                "and reachable from here, or point MODELYARD_STORE elsewhere."
            )
        return store
    from modelyard.store.sqlite import SQLiteStore

    return await SQLiteStore.open(_sqlite_path(text))


def spool_location(url: str, *, state_dir: Path | None = None) -> Path | None:
    """Where the spool of the store a URL names lives (see `modelyard.store.spool`), without opening it:
    beside a SQLite file, in the user's state dir (or `state_dir`) for Redis, None for an in-memory database.

    Raises:
        ConfigurationError: as `open_store`, for a URL it would refuse.
    """
    from modelyard.store import spool

    text = url.strip()
    if not text:
        raise ConfigurationError("The store URL is empty; set MODELYARD_STORE to sqlite:///path/to/file.db.")
    if _is_redis(text):
        from modelyard.store.redis import DEFAULT_PREFIX

        parts = urlsplit(text)  # as `RedisStore` reads it
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = next((value for name, value in query if name == "prefix"), DEFAULT_PREFIX)
        where = redacted(urlunsplit(parts._replace(query="")))
        return (state_dir or spool.default_state_dir()) / spool.redis_spool_name(where, prefix)
    path = _sqlite_path(text)
    if not isinstance(path, Path):
        return None
    resolved = path.expanduser().resolve()
    return resolved.with_name(resolved.name + spool.SUFFIX)


def _is_redis(url: str) -> bool:
    """Whether the URL names a Redis store (`redis://` or `rediss://`)."""
    scheme = _SCHEME.match(url)
    return scheme is not None and scheme.group(1).lower() in ("redis", "rediss")


def _sqlite_path(url: str) -> str | Path:
    """The database path a store URL (or a plain path) names."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return MEMORY if url == MEMORY else Path(url)
    name = scheme.group(1).lower()
    if name != "sqlite":
        raise ConfigurationError(
            f"Unknown store URL scheme {name!r} in {redacted(url)}; use sqlite:///path/to/file.db or redis://host:port/0."
        )
    rest = url[len(_SQLITE_PREFIX) :].split("?", 1)[0]
    if rest.lstrip("/") == MEMORY:
        return MEMORY
    if not rest.startswith("/") or not rest.strip("/"):
        raise ConfigurationError(f"{url!r} names no database file; use sqlite:///path/to/file.db.")
    if rest.startswith("/~"):
        return Path(rest[1:])
    if _WINDOWS_DRIVE.match(rest):
        return Path(rest[1:])
    if not rest.startswith("//") and "/" not in rest[1:]:
        raise ConfigurationError(_at_the_root(url, rest[1:]))
    return Path("/" + rest.lstrip("/"))


def _at_the_root(url: str, name: str) -> str:
    """Why `sqlite:///name.db` is refused: it reads as SQLAlchemy's relative spelling, but here three slashes
    begin an absolute path, so it would put the ledger at the filesystem root."""
    return (
        f"{url!r} would open /{name} at the filesystem root (here sqlite:/// is followed by an absolute path). "
        f"For a file in the working directory set the plain path ({name}); otherwise write the whole "
        f"path, e.g. sqlite:///home/me/{name}, or sqlite:////{name} if the root is really meant."
    )


def redacted(url: str) -> str:
    """The URL without any password (store URLs may carry credentials): fit for logs and messages. The password
    runs to the authority's last `@`, as Redis's URL parser reads it (`redis://user:p@ss@host` is `p@ss`)."""
    return re.sub(r"://([^:/@]*):[^/?#]*@", r"://\1:***@", url)


def __getattr__(name: str) -> Any:
    # The SQLite backend (and `sqlite3`) loads when first named or opened, not with the package: the
    # server's tools import the store's row types to describe their results before any store opens.
    if name == "SQLiteStore":
        from modelyard.store.sqlite import SQLiteStore

        return SQLiteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
