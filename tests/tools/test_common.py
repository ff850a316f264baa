"""The tools' shared pieces: progress notes for streamed text and keep-alives."""

from __future__ import annotations

from typing import Any, cast

import pytest

from modelyard.routing.events import Restart, TextDelta
from modelyard.tools.common import Progress

pytestmark = pytest.mark.anyio


class _Context:
    """What `Progress` uses of the MCP context: it records each note."""

    def __init__(self) -> None:
        self.notes: list[tuple[float, str | None]] = []

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        self.notes.append((progress, message))


async def test_after_a_restart_the_keepalive_counts_only_the_new_answers_text() -> None:
    ctx = _Context()
    progress = Progress(cast(Any, ctx))
    await progress.on_event(TextDelta("m1", "broken answer"))
    await progress.on_event(Restart("m1", "stream broke"))
    await progress.on_event(TextDelta("m2", "new"))
    await progress.note()
    assert ctx.notes[-1] == (4, "working… (3 characters so far)")
    assert [n for n, _ in ctx.notes] == [1, 2, 3, 4]
