"""Another process's write lock, held for a while: what a store must wait for without stopping the loop."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio


@dataclass
class LockWait:
    """How often the event loop ran while the lock was held (`ticks`)."""

    ticks: int = 0


@asynccontextmanager
async def locked_for(path: Path, seconds: float = 0.3) -> AsyncIterator[LockWait]:
    """Hold `path`'s write lock from another connection, and release it from the event loop after
    `seconds`: code that blocked the loop while waiting for the lock would never see it released."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    wait = LockWait()

    async def tick() -> None:
        while True:
            await anyio.sleep(0.01)
            wait.ticks += 1

    async def release_later() -> None:
        await anyio.sleep(seconds)
        holder.execute("COMMIT")

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            group.start_soon(release_later)
            yield wait
            group.cancel_scope.cancel()
    finally:
        holder.close()
