"""Splitting an event stream into lines and events, wherever its chunks happen to end."""

from __future__ import annotations

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
