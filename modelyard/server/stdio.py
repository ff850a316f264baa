"""stdio for `modelyard serve` without a worker-thread hop per line.

The MCP SDK's stdio transport reads and writes through `anyio.wrap_file`: every message in and out
is a hop to a worker thread (a line read, a write, a flush), about 0.3 ms of CPU per tool call and
up to 1 ms of its latency on a 2-core machine. When stdin and stdout are pipes or sockets (as an MCP
host starts a server) on a POSIX system, this module serves the same protocol on non-blocking file
descriptors that the event loop watches (`anyio.wait_readable`/`wait_writable`), through the SDK's
own `stdio_server` given these streams. Anything else (a terminal, a file, Windows) takes the SDK's
transport unchanged.

Here a SIGTERM, which is how many hosts stop their servers (and how the Python SDK's client does when
a server has not exited 2 s after its stdin closed), ends the server as closing stdin does: in-flight
calls are cancelled, the store is closed (its last ledger rows written, its lease given back). Without
this, the signal's default action killed the process on the spot (as it still does on the SDK's
transport, whose reader thread a cancellation cannot stop). A host that closes its end of stdout (the
next write fails with EPIPE, or a socket is reset) ends the server the same way, and exits 0.

Like the SDK, it claims the wire: it serves it from private duplicates of fds 0 and 1, points fd 0
at the null device and fd 1 at stderr while serving (a child process or a stray `print` cannot reach
the protocol), and puts both back, blocking again, when the server stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

import anyio
import anyio.lowlevel
from mcp.server import MCPServer
from mcp.server.stdio import stdio_server

__all__ = ["FdLines", "FdWriter", "run_stdio", "wire_is_pollable"]

log = logging.getLogger(__name__)
_READ_SIZE: Final = 1 << 16


async def run_stdio(server: MCPServer[Any]) -> None:
    """Serve `server` over this process's stdin and stdout until stdin closes (or the host closes stdout, or
    a SIGTERM arrives: see the module's docstring)."""
    lowlevel = getattr(server, "_lowlevel_server", None)
    if lowlevel is None or not wire_is_pollable():
        log.debug("stdio: the SDK's transport (threads)")
        # Its reader thread cannot be cancelled mid-line: SIGTERM keeps its default action here (ends it at once).
        await server.run_stdio_async()
        return
    await _until_sigterm(_serve_on_fds(lowlevel))


async def _serve_on_fds(lowlevel: Any) -> None:
    sys.stdout.flush()  # what was printed before goes out ahead of the protocol, not into it
    with (
        _claimed(0, _open_null) as wire_in,
        _claimed(1, _open_stderr) as wire_out,
        anyio.CancelScope() as serving,
    ):

        def hung_up() -> None:  # nobody reads the answers any more: stop as when stdin closes
            log.info("stdout closed by the host: shutting down")
            serving.cancel()

        wire = FdWriter(wire_out, on_closed=hung_up)
        async with stdio_server(stdin=FdLines(wire_in), stdout=wire) as (read, write):  # type: ignore[arg-type]
            await lowlevel.run(read, write, lowlevel.create_initialization_options())


async def _until_sigterm(serving: Awaitable[None]) -> None:
    """Await `serving` (the transport too: its reader must stop); the first SIGTERM cancels it, a graceful
    stop as when stdin closes."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        await serving
        return
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_on_sigterm, group.cancel_scope)
            await serving
            group.cancel_scope.cancel()
    except BaseExceptionGroup as failed:
        if len(failed.exceptions) == 1:  # the server's own error, raised as itself, as without the watcher
            raise failed.exceptions[0] from None
        raise


async def _cancel_on_sigterm(scope: anyio.CancelScope) -> None:
    """Cancel `scope` at the first SIGTERM; once it has (the handler gone), SIGTERM ends the process at once."""
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            log.info("SIGTERM: shutting down")
            scope.cancel()
            return


def wire_is_pollable() -> bool:
    """Whether fds 0 and 1 are pipes or sockets the event loop can watch, on a POSIX system."""
    if sys.platform == "win32":
        return False
    try:
        modes = [os.fstat(fd).st_mode for fd in (0, 1)]
    except OSError:
        return False
    return all(stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) for mode in modes)


class FdLines:
    """The lines of a file descriptor, as UTF-8 text (undecodable bytes replaced), read without blocking.

    The last line is returned even without its newline; the iteration ends at end of file (or when the
    peer of a socket resets it).
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer known to hold no newline

    def __aiter__(self) -> FdLines:
        return self

    async def __anext__(self) -> str:
        while (end := self._buffer.find(b"\n", self._scanned)) < 0:
            self._scanned = len(self._buffer)
            chunk = await self._read()
            if not chunk:
                if not self._buffer:
                    raise StopAsyncIteration
                end = len(self._buffer) - 1
                break
            self._buffer += chunk
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        self._scanned = 0
        return line.decode("utf-8", errors="replace")

    async def _read(self) -> bytes:
        while True:
            try:
                return os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
            except ConnectionResetError:  # the peer is gone: the end of the wire, as an end of file
                return b""


class FdWriter:
    """Text written whole to a file descriptor, waiting (not blocking) while the pipe is full.

    Args:
        fd: A non-blocking file descriptor.
        on_closed: Called once, the first time a write finds that nobody reads the descriptor any more
            (a pipe whose read end is closed, a reset socket): the end of the wire. That text, and any
            written afterwards, is dropped instead of raising.
    """

    def __init__(self, fd: int, *, on_closed: Callable[[], None] | None = None) -> None:
        self._fd = fd
        self._on_closed = on_closed
        self._closed = False

    async def write(self, text: str) -> None:
        """Write `text` whole, waiting while the descriptor is full (dropped once the wire is closed)."""
        data = memoryview(text.encode("utf-8"))
        while data and not self._closed:
            try:
                data = data[os.write(self._fd, data) :]
            except BlockingIOError:
                await anyio.wait_writable(self._fd)
            except (BrokenPipeError, ConnectionResetError):
                self._closed = True
                if self._on_closed is not None:
                    self._on_closed()
                await anyio.lowlevel.checkpoint()  # where a cancellation `on_closed` asked for takes effect

    async def flush(self) -> None:
        """Nothing is buffered here."""


@contextlib.contextmanager
def _claimed(fd: int, open_diversion: Callable[[], int]) -> Iterator[int]:
    """A private, non-blocking duplicate of `fd`, which meanwhile points at a harmless diversion."""
    import fcntl

    private = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    diversion = open_diversion()
    try:
        os.dup2(diversion, fd)
    finally:
        os.close(diversion)
    os.set_blocking(private, False)
    try:
        yield private
    finally:
        os.set_blocking(private, True)  # the wire's open file is shared with whoever gave it to us
        os.dup2(private, fd)
        os.close(private)


def _open_null() -> int:
    return os.open(os.devnull, os.O_RDONLY)


def _open_stderr() -> int:
    return os.dup(2)
