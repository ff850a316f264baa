"""Keep-alive notes for long tool calls, all sent by one background task of the server.

Why: hosts drop a tool call that says nothing for 60 s, so a long call sends a progress note every
few seconds. A task per call to do that cost 0.1-0.25 ms on every call, and almost every call ends
long before its first note. Here a call registers (a dict insert) and the server's one task sends
the notes of the calls that fall due.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

__all__ = ["Keepalives"]

log = logging.getLogger(__name__)

Send = Callable[[], Awaitable[None]]


class _Call:
    __slots__ = ("due", "ended", "every_s", "send", "sending")

    def __init__(self, send: Send, every_s: float, due: float) -> None:
        self.send = send
        self.every_s = every_s
        self.due = due
        self.ended = False
        self.sending: anyio.CancelScope | None = None  # the note being sent, if any


class Keepalives:
    """Calls in progress and when each is next due a keep-alive note.

    Args:
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._calls: dict[int, _Call] = {}
        self._wake = anyio.Event()
        self._next_wake = math.inf

    @asynccontextmanager
    async def track(self, send: Send, every_s: float) -> AsyncIterator[None]:
        """Call `send()` every `every_s` seconds while the block runs (only once `run` is running).

        No note is sent after the block ends: one still being sent is cancelled, so ending the block
        (or cancelling it) never waits for a slow client.
        """
        call = _Call(send, every_s, self._clock() + every_s)
        self._calls[id(call)] = call
        if call.due < self._next_wake:
            self._wake.set()  # the runner sleeps past this call's first note: wake it to sleep less
        try:
            yield
        finally:
            del self._calls[id(call)]
            call.ended = True  # a note not yet begun is skipped
            if call.sending is not None:
                call.sending.cancel()

    async def run(self) -> None:
        """Send the notes as they fall due, until cancelled (the server's lifespan runs this)."""
        async with anyio.create_task_group() as group:
            while True:
                now = self._clock()
                for call in list(self._calls.values()):
                    if call.due <= now:
                        call.due = now + call.every_s
                        if call.sending is None:  # one note at a time per call; a slow one is not queued behind
                            group.start_soon(_send_unless_ended, call)
                self._next_wake = min((c.due for c in self._calls.values()), default=math.inf)
                with anyio.move_on_after(self._next_wake - now):
                    await self._wake.wait()
                if self._wake.is_set():
                    self._wake = anyio.Event()


async def _send_unless_ended(call: _Call) -> None:
    """Send one note; its failure is logged, never raised into the runner (which serves every call)."""
    if call.ended:
        return
    with anyio.CancelScope() as call.sending:
        try:
            await call.send()
        except Exception:
            log.exception("a keep-alive note could not be sent")
        finally:
            call.sending = None
