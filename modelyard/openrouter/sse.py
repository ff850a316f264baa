"""Server-sent events, as OpenRouter sends them on `/chat/completions` with `stream: true`.

Only `data:` fields are used; `: OPENROUTER PROCESSING` comment lines are keep-alives (§5.1).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterable, AsyncIterator

__all__ = ["DONE", "iter_lines", "iter_sse_data"]

DONE = "[DONE]"
_LINE_END = re.compile(r"\r\n|\r|\n")


async def iter_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """The UTF-8 lines of a byte stream, split at CRLF, CR or LF (the three line ends SSE allows).

    A chunk may end anywhere, even inside a character or between the CR and LF of one line end.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    async for chunk in chunks:
        text = pending + decoder.decode(chunk)
        # A CR at the end may be the first half of a CRLF: keep it until the next chunk says.
        held = text.endswith("\r")
        lines = _LINE_END.split(text[:-1] if held else text)
        pending = lines.pop() + ("\r" if held else "")
        for line in lines:
            yield line
    lines = _LINE_END.split(pending + decoder.decode(b"", final=True))
    if lines[-1] == "":
        lines.pop()
    for line in lines:
        yield line


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
