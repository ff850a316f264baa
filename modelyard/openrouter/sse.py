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
    The work is linear in the stream's length, however many chunks a line arrives in (an image
    model's base64 `data:` line can be megabytes long).
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    # The line under way, as the pieces of it the chunks brought: only new text is searched for line
    # ends, and the pieces are joined once, when the line ends.
    pieces: list[str] = []
    # The last text ended with a CR, which ends the line in `pieces`; but an LF starting the next text
    # would be the second half of the same CRLF, so the line waits for that text to say.
    held = False
    async for chunk in chunks:
        text = decoder.decode(chunk)
        if not text:
            continue
        if held:
            held = False
            yield "".join(pieces)
            pieces.clear()
            if text[0] == "\n":
                text = text[1:]
        if text[-1:] == "\r":
            held = True
            text = text[:-1]
        if "\n" not in text and "\r" not in text:
            if text:
                pieces.append(text)  # the middle of a long line: no regex pass over it
            continue
        lines = _LINE_END.split(text)
        if pieces:
            pieces.append(lines[0])
            lines[0] = "".join(pieces)
            pieces.clear()
        if last := lines.pop():
            pieces.append(last)
        for line in lines:
            yield line
    # Only the replacement for a character cut off by the end can be left, never a line end.
    if tail := decoder.decode(b"", final=True):
        if held:
            held = False
            yield "".join(pieces)
            pieces.clear()
        pieces.append(tail)
    if held or pieces:
        yield "".join(pieces)


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
