"""Opening the SQLite store's file: its two connections, their pragmas, WAL mode and the schema.

Run in a worker thread by `SQLiteStore.open`: opening may wait (up to the busy timeout) for another
process's write lock.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from modelyard.errors import ConfigurationError
from modelyard.store import sqlite_writes as writes
from modelyard.store.base import MEMORY

__all__ = ["Opened", "immediate", "open_connections", "resolved_path"]

_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = (
    """CREATE TABLE ledger (
        id TEXT NOT NULL UNIQUE, ts REAL NOT NULL, requested_model TEXT NOT NULL, model TEXT,
        provider TEXT, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL, cost TEXT, cost_source TEXT,
        latency_ms REAL, attempts INTEGER NOT NULL, cache_hit INTEGER NOT NULL, saved TEXT,
        status TEXT NOT NULL, error TEXT, streamed INTEGER NOT NULL, detail TEXT NOT NULL)""",
    "CREATE INDEX ledger_ts ON ledger (ts)",
    "CREATE TABLE spend (period TEXT PRIMARY KEY, total TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE reservations (id TEXT PRIMARY KEY, amount TEXT NOT NULL, expires_at REAL NOT NULL)
        WITHOUT ROWID""",
    "CREATE INDEX reservations_expiry ON reservations (expires_at)",
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    f"PRAGMA user_version = {_SCHEMA_VERSION}",
)


def resolved_path(path: str | Path) -> str | Path:
    """The absolute file a path names (`~` expanded), or `MEMORY`."""
    return path if str(path) == MEMORY else Path(path).expanduser().resolve()


Opened = tuple[str | Path, sqlite3.Connection, sqlite3.Connection]
"""The path, the connection that waits for other processes' locks, and the inline one."""


def open_connections(path: str | Path, busy_timeout_s: float) -> Opened:
    """The path and the store's two connections: the one that waits for locks, and the inline one."""
    try:
        conn = _connect(path, busy_timeout_s)
    except (sqlite3.Error, OSError) as exc:
        raise ConfigurationError(f"Cannot open the SQLite store at {path}: {exc}") from exc
    try:
        # An in-memory database is private to its one connection (and no other process waits on it).
        inline = _connect_inline(path) if isinstance(path, Path) else conn
    except (sqlite3.Error, OSError) as exc:
        conn.close()
        raise ConfigurationError(f"Cannot open the SQLite store at {path}: {exc}") from exc
    return path, conn, inline


def _connect(path: str | Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Open the database with the pragmas this store relies on and make sure the schema exists."""
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions, every BEGIN here is explicit.
    # timeout= is SQLite's busy_timeout: wait for another process's lock instead of failing at once.
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        _use_wal(conn, deadline=time.monotonic() + busy_timeout_s)
        # With WAL, NORMAL syncs the WAL at checkpoints rather than on every commit. A committed
        # transaction survives the process being killed (it is in the WAL, in the OS cache); only a
        # power loss or OS crash may undo the last few commits, and it never corrupts the file.
        # That is the right trade for a ledger written on every request.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.create_function("dec_add", 2, writes.dec_add, deterministic=True)
        conn.create_function("dec_less", 2, writes.dec_less, deterministic=True)
        _ensure_schema(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_inline(path: Path) -> sqlite3.Connection:
    """The connection group commits run on, on the event loop: it never waits for another process's
    lock (busy timeout 0: the batch goes to the waiting connection instead) and never checkpoints
    (a checkpoint fsyncs; the waiting connection runs them in a worker thread)."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.create_function("dec_add", 2, writes.dec_add, deterministic=True)
        conn.create_function("dec_less", 2, writes.dec_less, deterministic=True)
    except BaseException:
        conn.close()
        raise
    return conn


def _use_wal(conn: sqlite3.Connection, *, deadline: float) -> None:
    """Switch the file to WAL (a persistent setting), retrying while another opener holds it.

    Changing the journal mode needs an exclusive lock, and SQLite reports "database is locked" at
    once rather than calling the busy handler, so processes opening a new file together retry.
    """
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    while mode not in ("wal", "memory"):  # an in-memory database keeps its "memory" journal
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
            continue
        if mode not in ("wal", "memory"):
            raise ConfigurationError(f"SQLite cannot use WAL mode for this file (journal mode {mode!r}).")


def _ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables once per file (the version lives in `PRAGMA user_version`)."""
    with immediate(conn):
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > _SCHEMA_VERSION:
            raise ConfigurationError(
                f"The store was written by a newer modelyard (schema {version} > {_SCHEMA_VERSION})."
            )
        if version == 0:
            for statement in _SCHEMA:
                conn.execute(statement)


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that holds SQLite's write lock from its first statement."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
