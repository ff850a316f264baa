"""A router wired to a real sandbox over loopback, with a SQLite store and a fake sleep."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from modelyard.openrouter import OpenRouterClient
from modelyard.routing.router import Router, RouterClock
from modelyard.sandbox import Sandbox
from modelyard.settings import Settings
from modelyard.store import SQLiteStore

KEY = "sk-or-v1-sandbox"


@dataclass
class FakeSleep:
    """Records every wait instead of sleeping."""

    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class Rig:
    sandbox: Sandbox
    router: Router
    store: SQLiteStore
    client: OpenRouterClient
    sleep: FakeSleep

    def ask(self, text: str = "Say hi", **fields: Any) -> Any:
        from modelyard.routing.request import RouteRequest

        return RouteRequest(messages=[{"role": "user", "content": text}], **fields)

    def billed(self) -> Decimal:
        return self.sandbox.state.billed_total()

    def received(self) -> int:
        return len(self.sandbox.state.ledger)


RigFactory = Callable[..., Any]


@pytest.fixture
async def rig_factory(tmp_path: Path) -> AsyncIterator[RigFactory]:
    """Builds rigs (several may share one store path); closes everything at the end."""
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:

        async def make(
            *, sandbox: Sandbox | None = None, db: Path | None = None, sleep: FakeSleep | None = None, **overrides: Any
        ) -> Rig:
            if sandbox is None:
                sandbox = await stack.enter_async_context(Sandbox.running(api_key=KEY))
            settings = Settings(
                openrouter_api_key=KEY,
                openrouter_base_url=sandbox.base_url,
                store=f"sqlite:///{db or tmp_path / 'ledger.db'}",
                **overrides,
            )
            client = await stack.enter_async_context(
                OpenRouterClient(KEY, base_url=sandbox.base_url, timeout=settings.request_timeout_s)
            )
            store = SQLiteStore(db or tmp_path / "ledger.db")
            stack.push_async_callback(store.aclose)
            sleep = sleep or FakeSleep()
            router = Router(client, store, settings, clock=RouterClock(sleep=sleep, random=lambda: 0.5))
            return Rig(sandbox, router, store, client, sleep)

        yield make


@pytest.fixture
async def rig(rig_factory: RigFactory) -> Rig:
    rig: Rig = await rig_factory()
    return rig
