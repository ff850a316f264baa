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


async def test_ending_a_call_cancels_its_note_in_flight_and_none_follows(keepalives: Keepalives) -> None:
    notes = Notes(delay_s=0.1)
    with anyio.fail_after(1):
        began = anyio.current_time()
        async with keepalives.track(notes.send, 0.02):
            await anyio.sleep(0.05)  # a note has begun and would take 0.1 s
        ended_after = anyio.current_time() - began
    await anyio.sleep(0.2)
    assert notes.sent == 0 and ended_after < 0.09


async def test_a_cancelled_call_does_not_wait_for_a_slow_client(keepalives: Keepalives) -> None:
    notes = Notes(delay_s=3)
    began = anyio.current_time()
    with anyio.move_on_after(0.1):
        async with keepalives.track(notes.send, 0.02):
            await anyio.sleep(10)
    assert anyio.current_time() - began < 1


async def test_a_slow_note_is_not_queued_behind_by_the_next(keepalives: Keepalives) -> None:
    started = 0

    async def slow() -> None:
        nonlocal started
        started += 1
        await anyio.sleep(0.3)

    async with keepalives.track(slow, 0.02):
        await anyio.sleep(0.25)
    assert started == 1


async def test_a_note_that_fails_is_logged_and_the_runner_serves_the_other_calls(
    keepalives: Keepalives, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("the client went away oddly")

    notes = Notes()
    async with keepalives.track(broken, 0.03), keepalives.track(notes.send, 0.05):
        await anyio.sleep(0.3)
    assert notes.sent >= 3
    assert "keep-alive note could not be sent" in caplog.text


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
