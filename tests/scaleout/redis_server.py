"""A Redis for the tests: `TEST_REDIS_URL` when set (CI's `.ci/run` starts one), else a private
`redis-server` on a free loopback port started once per test session, else the tests skip saying why.

The URL is read at import time: tests/conftest.py removes `MODELYARD_*` variables before each test,
so the legacy name `MODELYARD_TEST_REDIS_URL` is read here, at import, too.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

__all__ = ["REDIS_URL_ENV", "redis_url", "store_url", "wipe"]

REDIS_URL_ENV = "TEST_REDIS_URL"
_GIVEN = os.environ.get(REDIS_URL_ENV) or os.environ.get("MODELYARD_TEST_REDIS_URL")
_started: list[str] = []


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _start() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            f"no Redis: {REDIS_URL_ENV} is unset and redis-server is not on PATH (apt-get install redis-server)"
        )
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="modelyard-redis-")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [*command, "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    atexit.register(_stop, process, workdir)
    deadline = time.monotonic() + 10
    while not _answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"redis-server did not start on port {port} (exit code {process.poll()})")
        time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0"


def _stop(process: subprocess.Popen[bytes], workdir: str) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    shutil.rmtree(workdir, ignore_errors=True)


def redis_url() -> str:
    """The URL of the test Redis (starting a private one on first use), or skip the test."""
    if _GIVEN:
        return _GIVEN
    if not _started:
        _started.append(_start())
    return _started[0]


def store_url() -> str:
    """The test Redis URL with a fresh key prefix, so every test has a namespace of its own."""
    return f"{redis_url()}?prefix=test-{uuid.uuid4().hex[:12]}"


async def wipe(url: str) -> None:
    """Delete every key of the namespace that `url`'s prefix names."""
    import redis.asyncio as aioredis

    base, _, query = url.partition("?prefix=")
    client = aioredis.Redis.from_url(base)
    try:
        keys = [key async for key in client.scan_iter(match=f"{{{query}}}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    finally:
        await client.aclose()
