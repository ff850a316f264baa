"""What a streamed request tells its caller as it goes: text as it arrives, and restarts on a fallback.

A module of its own (no wire models, no client) because the server's tools import it to describe
progress before anything is opened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["EventSink", "Restart", "StreamEvent", "TextDelta"]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Text as it arrives from `model` (a preview: a later fallback may replace it)."""

    model: str
    text: str


@dataclass(frozen=True, slots=True)
class Restart:
    """The streamed attempt on `failed_model` broke; the answer restarts on the next candidate."""

    failed_model: str
    reason: str


StreamEvent = TextDelta | Restart
EventSink = Callable[[StreamEvent], Awaitable[None]]
