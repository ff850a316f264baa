"""The shared state the server's lifespan holds and every tool uses.

`AppContext` is the opened client, store and router. The server's lifespan holds an
`AppContextOnDemand`, which opens it in the background once the host has listed the tools (or at the
first tool call, if that comes first) rather than at start: opening imports the HTTP stack, the
routing engine and the store's backend, and an MCP host waits for all of that before its first
`tools/list` is answered if it happens at start.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio
import anyio.to_thread

from modelyard.errors import ConfigurationError, ModelyardError
from modelyard.server.keepalive import Keepalives
from modelyard.settings import Settings

if TYPE_CHECKING:
    from modelyard.openrouter.client import OpenRouterClient
    from modelyard.routing.router import Router
    from modelyard.store import Store

__all__ = ["AppContext", "AppContextOnDemand", "open_app_context"]

log = logging.getLogger(__name__)
_WARM_UP_AFTER_S = 0.05
# What opening the context imports, and then what its first upstream request does: imported in a worker
# thread, since on the event loop they would stop everything else for a while (aiohttp, for instance, builds
# its TLS contexts as it loads: a few hundred ms here).
_OPENING: Final = ("modelyard.openrouter.client", "modelyard.routing.router", "modelyard.store.sqlite")
_REQUESTING: Final = ("aiohttp",)


@dataclass(frozen=True, slots=True)
class AppContext:
    """The opened client, store and router, with what tools share (tools reach it through `app_of(ctx)`)."""

    settings: Settings
    client: OpenRouterClient
    store: Store
    router: Router
    started_at: float
    keepalives: Keepalives  # its notes go out while the server's lifespan runs `keepalives.run()`


@asynccontextmanager
async def open_app_context(settings: Settings, keepalives: Keepalives | None = None) -> AsyncIterator[AppContext]:
    """Open the HTTP client, store and router; close them in reverse order on exit."""
    from modelyard.openrouter.client import OpenRouterClient
    from modelyard.routing.router import Router
    from modelyard.store import open_store_async, redacted

    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            OpenRouterClient(
                settings.api_key,
                base_url=settings.openrouter_base_url,
                timeout=settings.request_timeout_s,
                connect_timeout=settings.connect_timeout_s,
            )
        )
        store = await open_store_async(settings.store)
        stack.push_async_callback(store.aclose)
        router = Router(client, store, settings)
        # Rows a stopped process spooled count before the first request here; what the store still refuses
        # waits for the background replay (and refuses reservations until then).
        await router.budgets.replay_spooled()
        log.info(
            "modelyard ready: upstream %s, store %s, key %s",
            settings.openrouter_base_url,  # never with credentials: the settings refuse them
            redacted(settings.store.split("?")[0]),
            "set" if settings.api_key else "MISSING",
        )
        yield AppContext(
            settings=settings,
            client=client,
            store=store,
            router=router,
            started_at=time.time(),
            keepalives=keepalives or Keepalives(),
        )


class AppContextOnDemand:
    """The server's lifespan context: opens the `AppContext` once (warm-up or first use) and closes it at the end.

    The lifespan runs `run()` in a background task (where the context is opened and later closed, so
    both happen in one task) and calls `close()` as it ends. A failed open (a store that cannot be
    opened, or is locked by another process just then) is logged and answers the calls that waited
    for it with a `ConfigurationError` saying why; the next call tries again.

    `warm_up()` (the server calls it once it has listed its tools) opens the context in the background
    without waiting for a call, and then fetches the model catalog, so that the first call finds both
    ready instead of paying for them.

    Args:
        settings: what the context is opened with.
        keepalives: the server's keep-alive notes (the lifespan runs them), handed to the context.
        open_context: opens the context (`open_app_context`; tests give a fake).
    """

    def __init__(
        self,
        settings: Settings,
        keepalives: Keepalives | None = None,
        *,
        open_context: Callable[[Settings, Keepalives], AbstractAsyncContextManager[AppContext]] = open_app_context,
    ) -> None:
        self.settings = settings
        self.keepalives = keepalives or Keepalives()
        self._open_context = open_context
        self._app: AppContext | None = None
        self._wanted = anyio.Event()  # a call waits for an open
        self._warm = anyio.Event()  # open in the background, without a call waiting
        self._attempt = _Attempt()  # the open the next call waits for (a failed one is replaced)
        self._closing = anyio.Event()
        self._closed = anyio.Event()

    async def get(self) -> AppContext:
        """The opened context, opening it first if it is not open.

        Raises:
            ConfigurationError: it could not be opened (the message says why), or the server is shutting down.
        """
        if self._app is not None:
            return self._app
        attempt = self._attempt
        self._wanted.set()
        await attempt.done.wait()
        if self._closing.is_set():
            raise ConfigurationError("The server is shutting down.")
        if self._app is None:
            raise ConfigurationError(attempt.failure or "The server is shutting down.")
        return self._app

    @property
    def shutting_down(self) -> bool:
        """True once `close()` was called: calls are told the server is shutting down."""
        return self._closing.is_set()

    def warm_up(self) -> None:
        """Open the context soon, in the background, and fetch the model catalog (nothing if it is open)."""
        self._warm.set()

    async def run(self) -> None:
        """Open the context when a call wants it or a warm-up asks (again after a failed open) and hold it
        until `close()`."""
        # Shielded, and ended by `close()`: a cancelled shutdown still closes the store (its last writes,
        # the lease it gives back) instead of abandoning it half-closed.
        with anyio.CancelScope(shield=True):
            try:
                while True:
                    warming = await self._until_wanted()
                    attempt = self._attempt
                    if self._closing.is_set() or await self._open_and_hold(attempt, warming=warming):
                        return
                    if self._closing.is_set():  # closed during the failed open: no call will want another
                        return
                    # A failed open is tried again by the next call, not by the warm-up that asked.
                    self._attempt, self._wanted, self._warm = _Attempt(), anyio.Event(), anyio.Event()
                    attempt.done.set()
            finally:
                self._app = None
                self._attempt.done.set()
                self._closed.set()

    async def _until_wanted(self) -> bool:
        """Wait until a call wants the context (False) or a warm-up asked for it a moment ago (True)."""
        warming = False
        async with anyio.create_task_group() as group:

            async def after_warm_up() -> None:
                nonlocal warming
                await self._warm.wait()
                # The answer that asked goes out first: opening holds the event loop while it imports.
                await anyio.sleep(_WARM_UP_AFTER_S)
                warming = True
                group.cancel_scope.cancel()

            group.start_soon(after_warm_up)
            await self._wanted.wait()
            group.cancel_scope.cancel()
        return warming and not self._wanted.is_set()

    async def _open_and_hold(self, attempt: _Attempt, *, warming: bool = False) -> bool:
        """Open the context, hold it until `close()` and close it: True; False (`attempt.failure` says why)
        when it could not be opened."""
        opened = False
        try:
            await anyio.to_thread.run_sync(_import, _OPENING)
            async with self._open_context(self.settings, self.keepalives) as app:
                opened = True
                await self._serve(app, attempt, warming=warming)
        except Exception as exc:
            if opened:
                log.exception("closing the client and store failed")
                return True
            attempt.failure = _failure_message(exc)
            return False
        return True

    async def _serve(self, app: AppContext, attempt: _Attempt, *, warming: bool) -> None:
        """Hand `app` to the calls, with its background work, until `close()`: the router's reconciler
        (abandoned answers' costs), the renewal of the budget holds of requests in flight, the replay of
        spooled ledger rows and, after a warm-up, the first fetch of the model catalog."""
        async with anyio.create_task_group() as background:
            await background.start(app.router.reconciler.run)
            await background.start(app.router.budgets.renewal.run)
            await background.start(app.router.budgets.run_replays)
            if not self._closing.is_set():  # else it is closed at once, and no call gets it
                self._app = app
            attempt.done.set()
            if warming:
                background.start_soon(_fetch_catalog, app)
            await self._closing.wait()
            background.cancel_scope.cancel()

    async def close(self) -> None:
        """Close the context if it was opened (and wait for that, even if cancelled meanwhile)."""
        self._closing.set()
        self._app = None  # from now on a call is told the server is shutting down
        self._wanted.set()
        with anyio.CancelScope(shield=True):
            await self._closed.wait()


async def _fetch_catalog(app: AppContext) -> None:
    """Load the model catalog ahead of the first call (a failure is the first call's to report)."""
    try:
        await anyio.to_thread.run_sync(_import, _REQUESTING)
        await app.router.catalogs.current()
    except ModelyardError as exc:  # the catalog service has logged why
        log.debug("no model catalog yet (the first call tries again): %s", exc)
    except Exception:  # a warm-up must never end the context the calls need
        log.warning("fetching the model catalog ahead of the first call failed", exc_info=True)


def _import(names: tuple[str, ...]) -> None:
    for name in names:
        importlib.import_module(name)


class _Attempt:
    """One open of the context: done when it has succeeded or failed, and why it failed."""

    __slots__ = ("done", "failure")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.failure: str | None = None


def _failure_message(exc: Exception) -> str:
    """What a call is told when the context could not be opened (logged here, once per failed open)."""
    if isinstance(exc, ModelyardError):
        message = f"modelyard could not start its client and store: {exc} (the next call tries again)"
        log.error("%s", message)
        return message
    log.exception("opening the client and store failed")
    return (
        f"modelyard could not start its client and store ({type(exc).__name__}; see its log); the next call tries again"
    )
