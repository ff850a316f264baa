"""`GET /health` for load balancers: 200 `ok` while this instance can serve, 503 naming what does not answer.

Besides the process itself, an instance needs its store: the budget and the ledger live there (a fleet's Redis).
So the check asks the store (`Store.healthy()`: a PING, or `SELECT 1`), opening the app context first when no
call has yet (as the first call would, so a balancer's first probe also readies the instance). The answer is
bounded (`STORE_TIMEOUT_S`, `OPEN_TIMEOUT_S`) and kept for `CACHE_S`, with one check in flight at a time, so a
balancer polling often costs the store at most one check per instance per second.

The route needs no token (a balancer sends none) and its body names the failing dependency, never the store's
URL (which may carry a password); the log line for a change of verdict names it, redacted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import anyio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from modelyard.errors import ModelyardError
from modelyard.server.context import AppContext, AppContextOnDemand

__all__ = ["CACHE_S", "OPEN_TIMEOUT_S", "STORE_TIMEOUT_S", "Health"]

log = logging.getLogger(__name__)

STORE_TIMEOUT_S = 2.0
"""The longest the store may take to answer before the instance is reported unavailable."""
OPEN_TIMEOUT_S = 5.0
"""The longest the first check waits for the app context to open (imports, then the store's own open)."""
CACHE_S = 1.0
"""How long a verdict is reused."""


class Health:
    """The `/health` endpoint of one server: `respond` is the Starlette route handler.

    Args:
        cache_s: how long a verdict is reused.
        store_timeout_s, open_timeout_s: the bounds of one check (see the module's docstring).
        monotonic: the clock of the reuse.
    """

    def __init__(
        self,
        *,
        cache_s: float = CACHE_S,
        store_timeout_s: float = STORE_TIMEOUT_S,
        open_timeout_s: float = OPEN_TIMEOUT_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.context: AppContextOnDemand | None = None
        """The server's lifespan context, set by the lifespan while it runs (None before: not serving yet)."""
        self._cache_s, self._monotonic = cache_s, monotonic
        self._store_timeout_s, self._open_timeout_s = store_timeout_s, open_timeout_s
        self._problem: str | None = None
        self._expires_at = -math.inf
        self._lock: anyio.Lock | None = None

    async def respond(self, request: Request) -> Response:
        """200 `ok`, or 503 `unavailable: <what>` (plain text; never cached by a proxy)."""
        problem = await self.problem()
        headers = {"Cache-Control": "no-store"}
        if problem is None:
            return PlainTextResponse("ok", headers=headers)
        return PlainTextResponse(f"unavailable: {problem}", status_code=503, headers=headers)

    async def problem(self) -> str | None:
        """What keeps this instance from serving (None: nothing), as last checked within `cache_s`."""
        if self._monotonic() < self._expires_at:
            return self._problem
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:  # the probes that arrive meanwhile take this check's verdict
            if self._monotonic() < self._expires_at:
                return self._problem
            problem = await self._check()
            if problem != self._problem:
                self._log_change(problem)
            self._problem, self._expires_at = problem, self._monotonic() + self._cache_s
        return problem

    async def _check(self) -> str | None:
        context = self.context
        if context is None or context.shutting_down:
            return "the server is not running (starting or shutting down)"
        app: AppContext | None = None
        with anyio.move_on_after(self._open_timeout_s):
            try:
                app = await context.get()
            except ModelyardError:  # the context logged why; the store is what fails to open in practice
                return "shutting down" if context.shutting_down else "store could not be opened (see the log)"
        if app is None:
            return f"store not opened within {self._open_timeout_s:g} s"
        with anyio.move_on_after(self._store_timeout_s):
            return None if await app.store.healthy() else "store does not answer"
        return f"store did not answer within {self._store_timeout_s:g} s"

    def _log_change(self, problem: str | None) -> None:
        from modelyard.store import redacted  # here: the store package stays out of the server's cold start

        where = redacted(self.context.settings.store.split("?")[0]) if self.context is not None else "-"
        if problem is None:
            log.info("/health answers 200 again: the store %s answers", where)
        else:
            log.warning("/health answers 503: %s (store %s)", problem, where)
