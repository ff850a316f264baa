"""The shared state the server's lifespan holds and every tool uses.

`AppContext` is the opened client, store and router. The server's lifespan holds an
`AppContextOnDemand`, which opens it at the first tool call rather than at start: opening imports
the HTTP stack, the routing engine and the store's backend, and an MCP host waits for all of that
before its first `tools/list` is answered if it happens at start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from modelyard.errors import ConfigurationError, ModelyardError
from modelyard.server.keepalive import Keepalives
from modelyard.settings import Settings

if TYPE_CHECKING:
    from modelyard.openrouter.client import OpenRouterClient
    from modelyard.routing.router import Router
    from modelyard.store import Store

__all__ = ["AppContext", "AppContextOnDemand", "open_app_context"]

log = logging.getLogger(__name__)


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
    from modelyard.store import open_store

    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            OpenRouterClient(
                settings.api_key,
                base_url=settings.openrouter_base_url,
                timeout=settings.request_timeout_s,
                connect_timeout=settings.connect_timeout_s,
            )
        )
        store = open_store(settings.store)
        stack.push_async_callback(store.aclose)
        router = Router(client, store, settings)
        log.info(
            "modelyard ready: upstream %s, store %s, key %s",
            settings.openrouter_base_url,
            settings.store.split("?")[0],
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
    """The server's lifespan context: opens the `AppContext` at its first use, once, and closes it at the end.

    The lifespan runs `run()` in a background task (where the context is opened and later closed, so
    both happen in one task) and calls `close()` as it ends. Opening failures (a store that cannot
    be opened) are logged once and answer every later `get()` as a `ConfigurationError`.
    """

    def __init__(self, settings: Settings, keepalives: Keepalives | None = None) -> None:
        self.settings = settings
        self.keepalives = keepalives or Keepalives()
        self._app: AppContext | None = None
        self._failure: str | None = None
        self._wanted = anyio.Event()
        self._ready = anyio.Event()
        self._closing = anyio.Event()
        self._closed = anyio.Event()

    async def get(self) -> AppContext:
        """The opened context, opening it first if no call has yet.

        Raises:
            ConfigurationError: it could not be opened, or the server is shutting down.
        """
        if self._app is not None:
            return self._app
        self._wanted.set()
        await self._ready.wait()
        if self._app is None:
            raise ConfigurationError(self._failure or "The server is shutting down.")
        return self._app

    async def run(self) -> None:
        """Open the context when it is first wanted and hold it until `close()`."""
        try:
            await self._wanted.wait()
            if self._closing.is_set():
                return
            async with open_app_context(self.settings, self.keepalives) as app:
                self._app = app
                self._ready.set()
                await self._closing.wait()
        except ModelyardError as exc:
            self._failure = f"modelyard could not start its client and store: {exc}"
            log.error("%s", self._failure)
        except Exception as exc:
            self._failure = f"modelyard could not start its client and store ({type(exc).__name__}); see its log."
            log.exception("opening the client and store failed")
        finally:
            self._app = None
            self._ready.set()
            self._closed.set()

    async def close(self) -> None:
        """Close the context if it was opened (and wait for that, even if cancelled meanwhile)."""
        self._closing.set()
        self._wanted.set()
        with anyio.CancelScope(shield=True):
            await self._closed.wait()
