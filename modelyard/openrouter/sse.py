"""Server-sent events, as OpenRouter sends them on `/chat/completions` with `stream: true`.

Only `data:` fields are used; `: OPENROUTER PROCESSING` comment lines are keep-alives (§5.1).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

__all__ = ["DONE", "iter_sse_data"]

DONE = "[DONE]"


async def iter_sse_data(lines: AsyncIterable[str]) -> AsyncIterator[str]:
    """Yield the data of each event; multi-line data is joined with newlines, comments skipped."""
    buffer: list[str] = []
    async for line in lines:
        if not line:
            if buffer:
                yield "\n".join(buffer)
                buffer.clear()
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            buffer.append(value[1:] if value.startswith(" ") else value)
    if buffer:
        yield "\n".join(buffer)
