"""One task sends every long call's keep-alive notes; short calls cost a dict insert and get none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

from modelyard.server.keepalive import Keepalives

pytestmark = pytest.mark.anyio


class Notes:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.sent = 0
        self.delay_s = delay_s

    async def send(self) -> None:
        await anyio.sleep(self.delay_s)
        self.sent += 1


@pytest.fixture
async def keepalives() -> AsyncIterator[Keepalives]:
    keepalives = Keepalives()
    async with anyio.create_task_group() as group:
        group.start_soon(keepalives.run)
        yield keepalives
        group.cancel_scope.cancel()


async def test_a_long_call_gets_a_note_every_interval(keepalives: Keepalives) -> None:
    notes = Notes()
    async with keepalives.track(notes.send, 0.05):
        await anyio.sleep(0.28)
    assert 3 <= notes.sent <= 6


async def test_a_call_that_ends_before_its_first_note_gets_none(keepalives: Keepalives) -> None:
    notes = Notes()
    for _ in range(20):
        async with keepalives.track(notes.send, 0.2):
            await anyio.lowlevel.checkpoint()
    await anyio.sleep(0.3)
    assert notes.sent == 0


async def test_no_note_follows_the_end_of_a_call_and_one_in_flight_finishes_first(keepalives: Keepalives) -> None:
    notes = Notes(delay_s=0.1)
    async with keepalives.track(notes.send, 0.02):
        await anyio.sleep(0.05)  # a note has begun and takes 0.1 s
    assert notes.sent == 1  # the block's end waited for it
    await anyio.sleep(0.2)
    assert notes.sent == 1


async def test_a_short_interval_wakes_a_runner_asleep_for_a_longer_one(keepalives: Keepalives) -> None:
    slow, fast = Notes(), Notes()
    async with keepalives.track(slow.send, 60):
        await anyio.sleep(0.01)  # the runner now sleeps toward the 60 s note
        async with keepalives.track(fast.send, 0.05):
            await anyio.sleep(0.2)
    assert fast.sent >= 2 and slow.sent == 0


async def test_notes_wait_for_the_runner() -> None:
    notes = Notes()
    async with Keepalives().track(notes.send, 0.01):
        await anyio.sleep(0.05)
    assert notes.sent == 0
