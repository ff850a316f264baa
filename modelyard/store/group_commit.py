"""Group commit for the SQLite store: the writes that arrive together share one transaction, run on
the event loop, and each caller gets its own outcome before its call returns.

Why: a write is ~10 µs of SQLite work, but its own `BEGIN IMMEDIATE … COMMIT` costs ~100 µs (WAL
frames) and a hop to a worker thread ~100 µs more. Under load a batch of N writes pays one commit
and no hop; alone, a write pays one commit and no hop.

How: the first writer to arrive leads. When other writes are likely on their way (`busy()`: the
store knows how many requests hold money) it yields once, so writers already running join the
batch; then it runs the whole batch inline in one `BEGIN IMMEDIATE … COMMIT` on a connection that never waits
for a lock (busy timeout 0). The commit is synchronous, as before: every caller's row is in the WAL
when its call returns. When another process holds the write lock (or a statement fails), the batch
is rolled back whole and each write is redone in its own transaction in a worker thread on the
waiting connection, where it gets exactly the outcome (or error) it would have had alone. The
inline connection never checkpoints (that fsyncs); a passive checkpoint runs in the worker thread
every `checkpoint_every` inline writes.

Writes in one batch came from different tasks that were running at the same time, so any order
among them is one they could have had anyway: writes submitted with `first=True` (those that free
or settle money) run before the others, and each transaction gives its writes a scratch dict (`memo`)
for what they read, so later writes need not read it again. On the inline connection that dict
outlives the transaction: `begin(conn, memo)` runs first in each transaction, inside the write lock,
and clears what another connection may have changed since (SQLite's `PRAGMA data_version` tells);
a rollback, or any write redone in the worker thread, clears it too. A write can leave callables
under `AFTER_COMMIT` in the dict: they run once its transaction has committed, never after a
rollback.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, TypeVar

import anyio
import anyio.lowlevel

__all__ = ["AFTER_COMMIT", "GroupCommit", "Work"]

T = TypeVar("T")
AFTER_COMMIT: Final = "after_commit"
"""The scratch-dict key of the list of callables to run once the transaction has committed."""
Work = Callable[[sqlite3.Connection, dict[str, Any]], T]
"""The statements of one write, run inside a transaction someone else opens and commits; the dict
is that transaction's scratch space (empty when it begins)."""


class _Write(Generic[T]):
    __slots__ = ("done", "error", "first", "value", "work")

    def __init__(self, work: Work[T], first: bool) -> None:
        self.work = work
        self.first = first
        self.done: anyio.Event | None = None  # made only for a write that waits for another's batch
        self.value: T | None = None
        self.error: BaseException | None = None

    def finish(self) -> None:
        if self.done is not None:
            self.done.set()

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # set by the batch that ran it


class GroupCommit:
    """Runs writes in shared inline transactions, falling back to one transaction each in a thread.

    Args:
        inline: the connection used on the event loop; opened with a busy timeout of 0 and
            `wal_autocheckpoint = 0`.
        in_thread: runs a blocking call on the waiting connection in a worker thread (the store's
            serialised `_run`); given the connection-taking function to call.
        waiting: the connection `in_thread` uses (busy timeout set).
        lock: held around inline use when `inline` is `waiting` (an in-memory database has one
            connection, which the worker thread also uses).
        checkpoint_every: inline writes between passive WAL checkpoints (0: never).
        busy: whether other writes are likely to arrive at once (then a leader yields once to take
            them along; alone, the yield would only add a loop turn).
        begin: run at the start of every inline transaction with the scratch dict (see above).
    """

    def __init__(
        self,
        *,
        inline: sqlite3.Connection,
        waiting: sqlite3.Connection,
        in_thread: Callable[[Callable[[], Any]], Awaitable[Any]],
        lock: anyio.Lock | None,
        checkpoint_every: int = 500,
        busy: Callable[[], bool] = lambda: True,
        begin: Callable[[sqlite3.Connection, dict[str, Any]], None] | None = None,
    ) -> None:
        self._inline = inline
        self._waiting = waiting
        self._in_thread = in_thread
        self._lock = lock
        self._checkpoint_every = checkpoint_every
        self._busy = busy
        self._begin = begin
        self._memo: dict[str, Any] = {}
        self._queue: list[_Write[Any]] = []
        self._leading = False
        self._followed: anyio.Event | None = None  # set when the current leader's batch is done
        self._since_checkpoint = 0
        self._checkpointing = False

    async def submit(self, work: Work[T], *, first: bool = False) -> T:
        """Run `work` in a write transaction and return its result (or raise its error).

        `first`: a write that frees or settles money (a commit, a release). It runs before the writes
        without the flag that share its transaction, and it is never dropped: a caller cancelled while
        it waits still has it written, and gets the cancellation at its next checkpoint.
        """
        write: _Write[T] = _Write(work, first)
        self._queue.append(write)
        if self._leading:
            # One event for all the writes that follow this leader: they are all in the batch it takes.
            if self._followed is None:
                self._followed = anyio.Event()
            write.done = self._followed
            await self._follow(write, write.done)
            return write.outcome()
        self._leading = True
        batch: list[_Write[Any]] = []
        try:
            if self._busy():
                # Not cancellable (like the thread hop it replaces): writers queued behind us rely on it.
                await anyio.lowlevel.cancel_shielded_checkpoint()
            await self._hold_connection()
            try:
                # Taken once the connection is held: no await between here and the end of leading, so
                # every write queued while we led is in this batch (none is left waiting for a leader).
                batch, self._queue, self._followed = self._queue, [], None
                ran = self._run_inline(batch)
            finally:
                if self._lock is not None:
                    self._lock.release()
        except BaseException as exc:  # unexpected: every write of the batch reports it
            for each in batch:
                each.error = each.error or exc
                each.finish()
            raise
        finally:
            self._leading = False
        try:
            if not ran:
                self._memo.clear()
                with anyio.CancelScope(shield=True):
                    await self._in_thread(lambda: _run_each(self._waiting, batch))
        except BaseException as exc:  # the worker thread could not run: every write of the batch reports it
            for each in batch:
                each.error = each.error or exc
            raise
        finally:
            for each in batch:  # followers wait for this, shielded: it must happen on every path
                each.finish()
        if ran:
            await self._maybe_checkpoint(len(batch))
        return write.outcome()

    async def submit_statement(
        self, sql: str, params: tuple[object, ...], work: Work[None], *, first: bool = False
    ) -> None:
        """Run a write that is the one statement `sql` and touches nothing a transaction's scratch dict
        holds (no money moved: a cache hit's ledger row); `work` is the same write as a `Work`.

        Alone (no batch running or queued, none likely on its way, a connection of its own), the
        statement runs on the inline connection as its own transaction (autocommit): committed, as
        with `submit`, before this returns, without the BEGIN, data_version and COMMIT round trips.
        Otherwise, or when it fails (another process holds the write lock), it goes to `submit`.
        """
        if not self._leading and not self._queue and self._lock is None and not self._busy():
            try:
                self._inline.execute(sql, params)
            except sqlite3.Error:
                pass  # nothing was written (one statement is atomic): the usual path decides where it runs
            else:
                await self._maybe_checkpoint(1)
                return
        await self.submit(work, first=first)

    async def _hold_connection(self) -> None:
        """Take the lock around inline use when the connection is shared with the store's reads."""
        if self._lock is not None:
            with anyio.CancelScope(shield=True):
                await self._lock.acquire()

    async def _follow(self, write: _Write[Any], done: anyio.Event) -> None:
        """Wait for the leader to run `write`.

        A caller cancelled before its write was taken drops it, unless the write is `first` (money
        already spent or freed must reach the ledger). One cancelled after gets its outcome all the
        same, as from a thread hop (anyio's `run_sync`): the write happened, so the caller must see it
        (a reservation it can release); anyio delivers the cancellation again at the caller's next
        checkpoint.
        """
        try:
            await done.wait()
        except anyio.get_cancelled_exc_class():
            if not write.first and any(queued is write for queued in self._queue):
                self._queue.remove(write)
                raise
            with anyio.CancelScope(shield=True):
                await done.wait()

    def _run_inline(self, batch: list[_Write[Any]]) -> bool:
        """One transaction for the whole batch; False (and nothing written) when it could not run."""
        conn = self._inline
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:  # another process holds the write lock: never wait for it on the loop
            return False
        memo = self._memo
        try:
            if self._begin is not None:
                self._begin(conn, memo)
            for write in sorted(batch, key=_later):
                write.value = write.work(conn, memo)
            conn.execute("COMMIT")
        except Exception:
            memo.clear()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for write in batch:
                write.value = None
            return False
        except BaseException:
            memo.clear()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        _committed(memo)  # outside the try: a raising hook must not make a committed batch run again
        return True

    async def _maybe_checkpoint(self, writes: int) -> None:
        if not self._checkpoint_every:
            return
        self._since_checkpoint += writes
        if self._since_checkpoint < self._checkpoint_every or self._checkpointing:
            return
        self._since_checkpoint, self._checkpointing = 0, True
        try:
            # Shielded: the caller's write has committed, and a cancellation here would hide its outcome.
            with anyio.CancelScope(shield=True):
                await self._in_thread(lambda: self._waiting.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())
        except sqlite3.Error:
            pass  # a busy or failed checkpoint is retried after the next `checkpoint_every` writes
        finally:
            self._checkpointing = False


def _later(write: _Write[Any]) -> bool:
    return not write.first


def _committed(memo: dict[str, Any]) -> None:
    for hook in memo.pop(AFTER_COMMIT, ()):
        hook()


def _run_each(conn: sqlite3.Connection, batch: list[_Write[Any]]) -> None:
    """Each write in its own `BEGIN IMMEDIATE` transaction (waiting for the lock), errors kept per write,
    in the order the batch would have run them inline."""
    for write in sorted(batch, key=_later):
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                memo: dict[str, Any] = {}
                write.value = write.work(conn, memo)
                conn.execute("COMMIT")
                _committed(memo)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:
            write.error = exc
