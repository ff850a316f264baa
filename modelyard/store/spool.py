"""The spool: ledger rows the store could not take, kept on local disk until it can.

An answer OpenRouter has billed must reach the ledger even when the store cannot take its row just then
(another process holds the SQLite write lock past the busy timeout; Redis is down). The budget's `settle`
then `keep`s the row, with the reservation it settles, here: one JSON object per line (money as exact
Decimal strings), flushed and fsynced before `keep` returns. `replay` commits the kept rows into the store
and removes a line only once its commit has succeeded, by rewriting the file to a temporary one moved over it
(`os.replace`). Committing a row whose id is in the ledger adds nothing, so a row replayed twice (two
processes replaying one file at once, a crash between a commit and the rewrite) counts once.

Several processes may share a spool (those of one SQLite file): every append and every rewrite holds an
exclusive `flock` on a lock file beside it (never on the spool itself, which a rewrite replaces), so no line
appended during a replay is lost and no two rewrites interleave. The commits run outside the lock.

Where it lives (`spool_for`): beside a SQLite file (`<db>.pending.jsonl`); for Redis, in the user's state
dir (`$XDG_STATE_HOME/modelyard/`, else `~/.local/state/modelyard/`), named by a hash of the Redis URL
without its password and of the key prefix, so two fleets never replay into each other. A private in-memory
database, or any other store, keeps its spool in memory: its ledger lives as long as the process, and no
other process could replay a file into it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, Final

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from modelyard.errors import StoreUnavailableError
from modelyard.store.base import LedgerRow, Store

__all__ = ["SUFFIX", "Kept", "Spool", "default_state_dir", "is_store_failure", "redis_spool_name", "spool_for"]

log = logging.getLogger(__name__)

SUFFIX: Final = ".pending.jsonl"
"""What a spool file's name ends in (a SQLite store's is its file's name and this)."""
_APP: Final = "modelyard"


@dataclass(frozen=True, slots=True)
class Kept:
    """One row the store could not take, and the reservation its commit settles (None: none)."""

    reservation_id: str | None
    row: LedgerRow


def is_store_failure(exc: BaseException) -> bool:
    """Whether `exc` says the store could not take a write just then (locked, down, unreachable, a disk
    error), rather than that the write itself is wrong (a cost that is not finite)."""
    if isinstance(exc, StoreUnavailableError | OSError | TimeoutError):
        return True
    # Looked up, not imported: a store whose driver is not loaded raised none of its errors.
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(exc, sqlite3.Error):
        return True
    redis_errors = sys.modules.get("redis.exceptions")
    return redis_errors is not None and isinstance(exc, redis_errors.RedisError)


def default_state_dir() -> Path:
    """The user's state dir for modelyard: `$XDG_STATE_HOME/modelyard` or `~/.local/state/modelyard` on Linux."""
    import platformdirs

    return Path(platformdirs.user_state_dir(_APP))


def redis_spool_name(where: str, prefix: str) -> str:
    """The spool file name of a Redis fleet: `where` is its URL with the password masked and no query."""
    digest = hashlib.sha256(f"{where}\n{prefix}".encode()).hexdigest()[:16]
    return f"redis-{digest}{SUFFIX}"


def spool_for(store: Store, *, state_dir: Path | None = None) -> Spool:
    """The spool of `store` (see the module docstring for where it lives); `state_dir` replaces the user's."""
    from modelyard.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return Spool(store.path.with_name(store.path.name + SUFFIX) if isinstance(store.path, Path) else None)
    if "modelyard.store.redis" in sys.modules:  # else `store` cannot be a RedisStore
        from modelyard.store.redis import RedisStore

        if isinstance(store, RedisStore):
            return Spool((state_dir or default_state_dir()) / redis_spool_name(store.where, store.prefix))
    return Spool(None)


class Spool:
    """Rows kept until the store takes them (`path` None: in memory only).

    `waiting` is the cheap check for the hot path: True while rows kept here (or found in the file when this
    spool was made) may not be in the store yet. Rows another process appends later are found by `run`, which
    looks at the file every `poll_s`.

    Args:
        path: the spool file, or None for a spool in memory.
        sleep: the back-off's wait (tests pass a fake).
        first_backoff_s, max_backoff_s: `run` waits this long after a failed replay, doubling up to the most.
        poll_s: how often `run` looks for rows another process left in the file.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        first_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        poll_s: float = 30.0,
    ) -> None:
        self.path = path
        self._sleep = sleep
        self._first_backoff_s, self._max_backoff_s, self._poll_s = first_backoff_s, max_backoff_s, poll_s
        self._memory: list[Kept] = []  # kept without a file, or when writing it failed
        self._kept = 0
        self._replays = 0
        self._replaying = anyio.Lock()
        self._wake = anyio.Event()
        self.last_error: BaseException | None = None
        """Why the last replay stopped short (None: it committed every row it found)."""
        self.waiting = self._file_has_rows()

    @property
    def rejected_path(self) -> Path | None:
        """Where lines that can never be committed (unreadable, or refused for a reason of their own) go."""
        return None if self.path is None else self.path.with_name(self.path.name + ".rejected")

    async def keep(self, reservation_id: str | None, row: LedgerRow) -> None:
        """Append the row (and the reservation its commit settles) to the spool, fsynced before this returns.

        A spool file that cannot be written keeps the row in memory (replayed while this process lives) and
        logs it whole at ERROR, so that it can be recovered from the log if the process stops first.

        Raises:
            ValueError: the row's cost or saving is not finite.
        """
        kept = Kept(reservation_id, row)
        line = _line(kept)
        with anyio.CancelScope(shield=True):  # the money was spent: the row is written whatever the caller does
            try:
                if self.path is None:
                    self._memory.append(kept)
                else:
                    await anyio.to_thread.run_sync(self._append, self.path, line)
            except OSError as exc:
                self._memory.append(kept)
                log.error("could not write the spool %s (%s); the row is kept in memory: %s", self.path, exc, line)
        self._kept += 1
        self.waiting = True
        self._wake.set()

    async def count(self) -> int:
        """Rows kept and not yet known to be in the store (this process's and, in the file, every process's)."""
        if self.path is None or not self.path.exists():
            return len(self._memory)
        try:
            lines = await anyio.to_thread.run_sync(self._read_lines, self.path)
        except OSError as exc:  # unreadable: its rows are not counted, and the replay says why (`last_error`)
            log.warning("could not read the spool %s: %s", self.path, exc)
            return len(self._memory)
        return len(self._memory) + len(lines)

    async def catch_up(self, store: Store) -> None:
        """Replay the kept rows unless a replay ran while this call waited for it (its outcome stands, unless
        it succeeded and rows were kept since)."""
        seen = self._replays
        async with self._replaying:
            if self._replays != seen and (self.last_error is not None or not self.waiting):
                return
            await self._replay(store)

    async def replay(self, store: Store) -> int:
        """Commit every kept row into `store` (one replay at a time here); how many were committed.

        Stops at the first row the store cannot take (`last_error` says why; the rest stay kept). A row
        refused for a reason of its own is set aside (`rejected_path`), logged, so it never blocks the others.
        """
        async with self._replaying:
            return await self._replay(store)

    async def run(self, store: Store, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Replay in the background until cancelled: as soon as a row is kept, every `poll_s` when the file
        has rows (another process's), and after a failed replay again with back-off."""
        task_status.started()
        backoff = self._first_backoff_s
        try:
            while True:
                with anyio.move_on_after(self._poll_s):
                    await self._wake.wait()
                self._wake = anyio.Event()
                while self._memory or self._file_has_rows():
                    try:
                        await self.replay(store)
                    except Exception as exc:  # never let a replay end the server: back off and try again
                        log.exception("replaying the spool %s failed", self.path)
                        self.last_error = exc
                    if self.last_error is None:
                        backoff = self._first_backoff_s
                        break
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff_s)
        finally:
            if self._memory:
                lost = "\n".join(_line(kept) for kept in self._memory)
                log.error(
                    "stopping with %d ledger row(s) the store never took; they were:\n%s", len(self._memory), lost
                )

    async def _replay(self, store: Store) -> int:
        self._replays += 1
        kept_before = self._kept
        self.last_error = None
        entries = [(_line(kept), kept) for kept in self._memory] + await self._file_entries()
        done: set[str] = set()  # the ids of the rows committed
        rejected: list[str] = []  # the lines that never can be
        for line, kept in entries:
            if kept is None:
                rejected.append(line)
            elif kept.row.id not in done:
                try:
                    with anyio.CancelScope(shield=True):
                        await store.commit(kept.reservation_id, kept.row)
                except Exception as exc:
                    if is_store_failure(exc):
                        self.last_error = exc
                        break
                    log.error("the store refused a spooled ledger row (%s); it is set aside: %s", exc, line)
                    rejected.append(line)
                    continue
                done.add(kept.row.id)
        await self._forget(done, rejected)
        self.waiting = self.last_error is not None or bool(self._memory) or self._kept != kept_before
        if done:
            log.info("replayed %d spooled ledger row(s) into the store", len(done))
        return len(done)

    async def _file_entries(self) -> list[tuple[str, Kept | None]]:
        """The file's lines and their rows (None: unreadable); none when it cannot be read (`last_error`)."""
        if self.path is None or not self.path.exists():
            return []
        try:
            lines = await anyio.to_thread.run_sync(self._read_lines, self.path)
        except OSError as exc:
            self.last_error = exc
            log.warning("could not read the spool %s: %s", self.path, exc)
            return []
        return [(line, _read(line)) for line in lines]

    async def _forget(self, done: set[str], rejected: list[str]) -> None:
        """Drop the committed rows, and set the rejected lines aside, from memory and the file."""
        self._memory = [kept for kept in self._memory if kept.row.id not in done and _line(kept) not in rejected]
        if self.path is None or not (done or rejected):
            return
        try:
            await anyio.to_thread.run_sync(self._rewrite, self.path, done, rejected)
        except OSError as exc:
            # The rows are in the store, so nothing waits (no reservation is refused): the lines stay, and the
            # next replay (`run` looks every `poll_s`) commits them again, adding nothing, and retries.
            log.warning("could not rewrite the spool %s: %s", self.path, exc)

    def _file_has_rows(self) -> bool:
        try:
            return self.path is not None and self.path.stat().st_size > 0
        except OSError:
            return False

    # ------------------------------------------------------------------ file work (worker threads)

    @staticmethod
    def _append(path: Path, line: str) -> None:
        with _locked(path):
            created = not path.exists()
            with open(path, "ab+", opener=_private) as file:
                # A line cut short (a crash or a full disk mid-append) is ended first: glued to it, this row
                # would be unreadable too, and set aside with it.
                start = b"" if _ends_a_line(file) else b"\n"
                file.write(start + line.encode("utf-8", "surrogateescape") + b"\n")
                file.flush()
                os.fsync(file.fileno())
            if created:
                _sync_dir(path.parent)

    @staticmethod
    def _read_lines(path: Path) -> list[str]:
        with _locked(path):
            try:
                text = path.read_text(encoding="utf-8", errors="surrogateescape")
            except FileNotFoundError:
                return []
        return [line for line in text.splitlines() if line.strip()]

    def _rewrite(self, path: Path, done: set[str], rejected: list[str]) -> None:
        with _locked(path):
            try:
                lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
            except FileNotFoundError:
                lines = []
            aside = set(rejected)
            if aside and self.rejected_path is not None:
                with open(self.rejected_path, "a", encoding="utf-8", errors="surrogateescape", opener=_private) as file:
                    file.write("".join(line + "\n" for line in rejected))
                    file.flush()
                    os.fsync(file.fileno())
            keep = [line for line in lines if line.strip() and line not in aside and _row_id(line) not in done]
            if not keep:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                temporary = path.with_name(path.name + ".tmp")
                with open(temporary, "w", encoding="utf-8", errors="surrogateescape", opener=_private) as file:
                    file.write("".join(line + "\n" for line in keep))
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, path)
            _sync_dir(path.parent)


def _line(kept: Kept) -> str:
    """The JSON line of a kept row: the row as the stores encode it (money as exact Decimal strings)."""
    data: dict[str, Any] = dataclasses.asdict(kept.row)
    for name in ("cost", "saved"):
        value: Decimal | None = data[name]
        if value is not None:
            if not value.is_finite():
                raise ValueError(f"a ledger amount must be finite, not {value}")
            data[name] = str(value)
    return json.dumps({"reservation_id": kept.reservation_id, "row": data}, default=str, separators=(",", ":"))


def _read(line: str) -> Kept | None:
    """The row a spool line holds, or None (logged) when it cannot be read (a line cut short by a crash)."""
    try:
        data = json.loads(line)
        row: dict[str, Any] = data["row"]
        for name in ("cost", "saved"):
            if row[name] is not None:
                row[name] = Decimal(row[name])
        return Kept(data["reservation_id"], LedgerRow(**row))
    except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
        log.error("a spool line cannot be read (%s); it is set aside: %s", exc, line)
        return None


def _ends_a_line(file: BinaryIO) -> bool:
    """Whether the file is empty or its last byte ends a line."""
    size = file.seek(0, os.SEEK_END)
    if size == 0:
        return True
    file.seek(size - 1)
    return file.read(1) == b"\n"


def _row_id(line: str) -> str | None:
    try:
        found = json.loads(line)["row"]["id"]
    except (ValueError, TypeError, KeyError):
        return None
    return found if isinstance(found, str) else None


def _private(name: str, flags: int) -> int:
    """Open as `open` does, but a file created is the user's own (mode 0600): ledger rows are not for others."""
    return os.open(name, flags, 0o600)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the spool's lock file (`<spool>.lock`, never replaced) exclusively: every process's appends and
    rewrites of the spool take turns."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _flock(fd, exclusive=True)
        try:
            yield
        finally:
            _flock(fd, exclusive=False)
    finally:
        os.close(fd)


if sys.platform == "win32":  # pragma: no cover

    def _flock(fd: int, *, exclusive: bool) -> None:
        """No `flock` on Windows: one process per spool there."""

    def _sync_dir(folder: Path) -> None:
        """Windows cannot fsync a folder; its metadata is journaled."""

else:
    import fcntl

    def _flock(fd: int, *, exclusive: bool) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_UN)

    def _sync_dir(folder: Path) -> None:
        """Make a created, replaced or removed file's name durable too."""
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
