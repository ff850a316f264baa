"""The subprocess entry points: `python -m modelyard.sandbox` and `serve()`."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import httpx2
import pytest

pytestmark = pytest.mark.anyio


@contextmanager
def spawned(*args: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def first_line(stream: IO[str] | None, timeout: float = 10) -> str:
    """The next line the child writes, failing (not hanging) if none comes in time."""
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "the sandbox process printed nothing"
    return stream.readline().strip()


async def test_the_module_entry_point_prints_the_url_once_listening() -> None:
    """`python -m modelyard.sandbox --port 0` prints SANDBOX_URL=... on stdout and then serves it."""
    with spawned("-m", "modelyard.sandbox", "--port", "0") as process:
        line = first_line(process.stdout)
        assert line.startswith("SANDBOX_URL=http://127.0.0.1:") and line.endswith("/api/v1")
        url = line.removeprefix("SANDBOX_URL=")
        headers = {"Authorization": "Bearer sk-or-v1-sandbox"}
        async with httpx2.AsyncClient(base_url=url, headers=headers) as client:
            models = await client.get("/models")
            answer = await client.post(
                "/chat/completions",
                json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            )
        assert models.status_code == answer.status_code == 200
        assert "sk-or-v1-sandbox (the default)" in first_line(process.stderr)


async def test_a_custom_key_is_accepted_and_only_shown_masked() -> None:
    """`--key` sets the accepted key; the stderr line shows it masked."""
    key = "sk-or-v1-custom-test-key"
    with spawned("-m", "modelyard.sandbox", "--port", "0", "--key", key) as process:
        url = first_line(process.stdout).removeprefix("SANDBOX_URL=")
        async with httpx2.AsyncClient(base_url=url) as client:
            denied = await client.get("/key", headers={"Authorization": "Bearer sk-or-v1-sandbox"})
            allowed = await client.get("/key", headers={"Authorization": f"Bearer {key}"})
        note = first_line(process.stderr)
    assert (denied.status_code, allowed.status_code) == (401, 200)
    assert key not in note and "sk-or-v1-cus...key" in note


def test_serve_prints_one_line_with_the_url_and_the_default_key() -> None:
    """`serve()` (used by `modelyard sandbox`) announces the URL and the default key on stderr."""
    code = "from modelyard.sandbox import serve; serve(host='127.0.0.1', port=0, catalog_path=None, api_key=None)"
    with spawned("-c", code) as process:
        line = first_line(process.stderr)
    assert line.startswith("modelyard sandbox on http://127.0.0.1:")
    assert "/api/v1" in line and "API key sk-or-v1-sandbox (the default)" in line


ENTRY_POINTS = pytest.mark.parametrize(
    "command", [["-m", "modelyard.sandbox"], ["-m", "modelyard", "sandbox"]], ids=["module", "modelyard-sandbox"]
)


@ENTRY_POINTS
def test_a_port_in_use_is_one_line_naming_it_and_suggesting_port_0(command: list[str]) -> None:
    """It was a 42-line traceback ending in `OSError: [Errno 98] Address already in use`."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, *command, "--port", str(port)], capture_output=True, text=True, timeout=30
        )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.count("\n") == 1
    assert f"127.0.0.1:{port} is already in use" in done.stderr and "--port 0" in done.stderr


@ENTRY_POINTS
def test_a_host_that_is_not_this_machines_is_one_line_naming_it(command: list[str]) -> None:
    """`--host 192.0.2.1`, no address of this machine (EADDRNOTAVAIL), ended in a traceback, as a busy port did."""
    done = subprocess.run(
        [sys.executable, *command, "--host", "192.0.2.1", "--port", "0"], capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout, done.stderr.count("\n")) == (1, "", 1)
    assert "192.0.2.1 is not an address of this machine" in done.stderr
