"""The shared state the server's lifespan opens once and every tool uses."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from modelyard.openrouter.client import OpenRouterClient
from modelyard.routing.router import Router
from modelyard.server.keepalive import Keepalives
from modelyard.settings import Settings
from modelyard.store import Store, open_store

__all__ = ["AppContext", "open_app_context"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AppContext:
    """What tools reach through `ctx.request_context.lifespan_context`."""

    settings: Settings
    client: OpenRouterClient
    store: Store
    router: Router
    started_at: float
    keepalives: Keepalives  # its notes go out while the server's lifespan runs `keepalives.run()`


@asynccontextmanager
async def open_app_context(settings: Settings) -> AsyncIterator[AppContext]:
    """Open the HTTP client, store and router; close them in reverse order on exit."""
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
        keepalives = Keepalives()
        yield AppContext(
            settings=settings, client=client, store=store, router=router, started_at=time.time(), keepalives=keepalives
        )
