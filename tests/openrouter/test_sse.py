"""Splitting an event stream into lines and events, wherever its chunks happen to end."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from modelyard.openrouter.sse import iter_lines, iter_sse_data


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _lines(*parts: bytes) -> list[str]:
    return [line async for line in iter_lines(_chunks(*parts))]


@pytest.mark.anyio
@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
async def test_each_line_end_sse_allows_splits_lines(end: bytes) -> None:
    assert await _lines(b"data: a" + end + end + b"data: b" + end) == ["data: a", "", "data: b"]


@pytest.mark.anyio
async def test_a_crlf_split_between_two_chunks_is_one_line_end() -> None:
    assert await _lines(b"data: a\r", b"\ndata: b\r", b"\r\n") == ["data: a", "data: b", ""]


@pytest.mark.anyio
async def test_a_character_split_between_two_chunks_is_decoded_whole() -> None:
    encoded = "data: Olá 🌍\n".encode()
    assert await _lines(*(encoded[i : i + 1] for i in range(len(encoded)))) == ["data: Olá 🌍"]


# Chunks cut where the splitter must hold something back, and the lines they must give, exactly.
CUT_STREAMS: dict[str, tuple[tuple[bytes, ...], list[str]]] = {
    "a line in many chunks": ((b"da", b"ta: ", b"abc", b"\n"), ["data: abc"]),
    "CR | LF after a line in many chunks": ((b"data: a", b"bc\r", b"\ndata: d\r"), ["data: abc", "data: d"]),
    "CR | empty chunk | LF": ((b"data: a\r", b"", b"\ndata: b\n"), ["data: a", "data: b"]),
    "CR | half a character | its rest": ((b"data: a\r", b"\xc3", b"\xa9\n"), ["data: a", "é"]),
    "CR | CR": ((b"data: a\r", b"\r", b"data: b"), ["data: a", "", "data: b"]),
    "a character split 1 | 3 in a line split at its CRLF": (
        (b"data: \xf0", b"\x9f\x8c\x8d x\r", b"\n"),
        ["data: \U0001f30d x"],
    ),
    "a character cut off by the end of a line": ((b"data: a", b"\xf0\x9f"), ["data: a\ufffd"]),
    "a character cut off by the end after a CR": ((b"data: a\r\xc3",), ["data: a", "\ufffd"]),
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", CUT_STREAMS)
async def test_lines_cut_anywhere_between_chunks_come_out_exactly_as_sent(name: str) -> None:
    chunks, expected = CUT_STREAMS[name]
    assert await _lines(*chunks) == expected


@pytest.mark.anyio
async def test_a_two_megabyte_line_is_split_in_linear_time() -> None:
    """An image model's base64 line, 16 KiB at a time: each chunk is searched once, not the whole line again."""
    line = b"data: " + b"A" * (2 * 1024 * 1024)
    chunks = [line[i : i + 16 * 1024] for i in range(0, len(line), 16 * 1024)] + [b"\n\n"]
    started = time.process_time()
    lines = await _lines(*chunks)
    spent = time.process_time() - started
    assert lines == [line.decode(), ""]
    assert spent < 0.3, f"{spent:.3f} s of CPU for one 2 MiB line"


@pytest.mark.anyio
async def test_the_last_line_without_an_end_is_kept() -> None:
    assert await _lines(b"data: a\n", b"data: b") == ["data: a", "data: b"]
    assert await _lines(b"data: a\r") == ["data: a"]


@pytest.mark.anyio
async def test_unicode_line_separators_inside_data_do_not_split_it() -> None:
    assert await _lines("data: a\u2028b\x0cc\n".encode()) == ["data: a\u2028b\x0cc"]


@pytest.mark.anyio
async def test_events_join_data_lines_and_skip_comments() -> None:
    lines = iter_lines(_chunks(b": OPENROUTER PROCESSING\n\ndata: one\ndata: two\n\ndata:three\n\n"))
    assert [data async for data in iter_sse_data(lines)] == ["one\ntwo", "three"]
