"""modelyard's stdio transport: lines in and text out on non-blocking pipes, and the SDK's own
transport whenever the wire is not a pipe."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from modelyard.sandbox import Sandbox
from modelyard.server.stdio import FdLines, FdWriter
from tests.server.conftest import SERVE, server_env

pytestmark = pytest.mark.anyio


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    yield read, write
    for fd in (read, write):
        with contextlib.suppress(OSError):
            os.close(fd)


async def _lines(fd: int) -> list[str]:
    return [line async for line in FdLines(fd)]


async def test_lines_are_split_at_newlines_whatever_the_chunks_and_the_last_needs_none(
    pipe: tuple[int, int],
) -> None:
    """Chunks end mid-line and inside a UTF-8 character; the last line has no newline."""
    read, write = pipe
    encoded = 'a\nbé\n{"x": "ü"}\nlast'.encode()
    cut = encoded.index("é".encode()) + 1  # between the two bytes of é

    async def feed() -> None:
        for part in (encoded[:cut], encoded[cut:]):
            os.write(write, part)
            await anyio.sleep(0.01)
        os.close(write)

    async with anyio.create_task_group() as group:
        group.start_soon(feed)
        lines = await _lines(read)
    assert lines == ["a\n", "bé\n", '{"x": "ü"}\n', "last"]


async def test_a_line_of_several_megabytes_arrives_whole(pipe: tuple[int, int]) -> None:
    """A message carrying an image is one long line: it is neither cut nor refused."""
    read, write = pipe
    message = json.dumps({"image": "x" * (3 << 20)}) + "\n"
    got: list[str] = []

    async def consume() -> None:
        got.extend(await _lines(read))

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await FdWriter(write).write(message + message)  # far beyond the pipe's buffer: it waits, whole
        os.close(write)
    assert got == [message, message]


async def test_a_writer_waits_for_a_slow_reader_instead_of_failing(pipe: tuple[int, int]) -> None:
    read, write = pipe
    text = "0123456789abcdef" * (1 << 16)  # 1 MiB
    received = bytearray()

    async def drain_slowly() -> None:
        while len(received) < len(text):
            await anyio.sleep(0.001)
            with contextlib.suppress(BlockingIOError):
                received.extend(os.read(read, 1 << 14))

    async with anyio.create_task_group() as group:
        group.start_soon(drain_slowly)
        await FdWriter(write).write(text)
    assert received.decode() == text


async def test_a_writer_whose_reader_has_gone_reports_it_once_and_drops_the_text(pipe: tuple[int, int]) -> None:
    """The host closed its end: no BrokenPipeError, but one call of `on_closed`, the end of the wire."""
    read, write = pipe
    os.close(read)
    closed: list[str] = []
    writer = FdWriter(write, on_closed=lambda: closed.append("wire closed"))
    await writer.write("an answer nobody reads\n")
    await writer.write("and another\n")
    assert closed == ["wire closed"]


async def test_lines_from_a_socket_its_peer_reset_end_as_at_end_of_file() -> None:
    """A reset (the peer closed with our data unread) ends the lines like an end of file, without an error."""
    import socket

    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        theirs.sendall(b"last words\n")
        ours.sendall(b"never read")
        theirs.close()
        assert await _lines(ours.fileno()) == ["last words\n"]


def _line(message: dict[str, object]) -> bytes:
    return (json.dumps(message) + "\n").encode()


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


async def test_the_server_serves_a_pipe_with_its_own_transport(sandbox: Sandbox, tmp_path: Path) -> None:
    """A host's pipes: modelyard's transport answers (the SDK's is not used), and stdin's end stops it."""
    env = server_env(tmp_path, sandbox.base_url) | {"MODELYARD_DEBUG": "1"}
    with anyio.fail_after(60):
        async with await anyio.open_process([sys.executable, *SERVE], env=env) as process:
            assert process.stdin and process.stdout and process.stderr
            for message in (INITIALIZE, INITIALIZED, TOOLS_LIST):
                await process.stdin.send(_line(message))
            received = BufferedByteReceiveStream(process.stdout)
            answers = [json.loads(await received.receive_until(b"\n", 1 << 22)) for _ in range(2)]
            await process.stdin.aclose()  # the host leaves: the server exits on its own
            assert await process.wait() == 0
            logs = b"".join([chunk async for chunk in process.stderr]).decode()
    assert [answer["id"] for answer in answers] == [1, 2] and len(answers[1]["result"]["tools"]) == 9
    assert "the SDK's transport" not in logs


async def test_a_wire_that_is_a_file_is_served_by_the_sdks_transport(sandbox: Sandbox, tmp_path: Path) -> None:
    """stdin from a regular file cannot be polled: the SDK's threaded transport serves it."""
    env = server_env(tmp_path, sandbox.base_url) | {"MODELYARD_DEBUG": "1"}
    (tmp_path / "in.jsonl").write_bytes(_line(INITIALIZE))  # answered inline, before the end of the file
    with anyio.fail_after(60), (tmp_path / "in.jsonl").open("rb") as stdin:
        done = await anyio.run_process([sys.executable, *SERVE], stdin=stdin, env=env, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert json.loads(done.stdout)["result"]["serverInfo"]["name"] == "modelyard"
    assert "the SDK's transport" in done.stderr.decode()
