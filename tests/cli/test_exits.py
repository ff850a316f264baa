"""How a `modelyard` process ends when it is cut short: its reader goes away (141), or Ctrl-C (130).

Each runs the console entry point in a child process, as a shell pipeline or a terminal would.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from modelyard.sandbox import Sandbox
from tests.cli.support import child_env, modelyard_command


@contextmanager
def started(command: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """A child with its stdout and stderr piped to this process; killed at the end if it is still running."""
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("command", [["metrics"], ["budget"], ["models", "--limit", "500"]], ids=lambda c: c[0])
def test_a_reader_that_closes_early_ends_the_command_quietly_with_status_141(
    command: list[str], buffered: bool, sandbox: Sandbox, tmp_path: Path
) -> None:
    """`modelyard metrics | head -5` ended in a BrokenPipeError traceback: now nothing is printed, and the
    status is a shell's for a process that SIGPIPE ended (128 + 13), as `set -o pipefail` expects."""
    env = child_env(tmp_path, OPENROUTER_BASE_URL=sandbox.base_url)
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    with started(modelyard_command(tmp_path, *command), env, tmp_path) as process:
        assert process.stdout is not None
        process.stdout.close()  # the reader is gone before the first line is written
        _, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (141, "")


def test_ctrl_c_while_run_waits_on_the_upstream_exits_130(sandbox: Sandbox, tmp_path: Path) -> None:
    """SIGINT while the answer is delayed: it printed nothing and exited 0, which a script takes for success."""
    sandbox.state.faults.add(model="openai/gpt-4o-mini", kind="latency", latency_ms=60_000, count=1)
    before = sandbox.state.request_count
    env = child_env(tmp_path, OPENROUTER_BASE_URL=sandbox.base_url)
    command = modelyard_command(tmp_path, "run", "Hello", "--model", "openai/gpt-4o-mini")
    with started(command, env, tmp_path) as process:
        wait_until(lambda: sandbox.state.request_count > before)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert (process.returncode, out, err) == (130, "", "modelyard: interrupted\n")


@pytest.mark.parametrize("command", [["models"], ["doctor"]], ids=lambda c: c[0])
def test_ctrl_c_while_another_command_waits_on_the_upstream_exits_130(command: list[str], tmp_path: Path) -> None:
    """The other one-shot commands share the path: an upstream that accepts the connection and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        env = child_env(tmp_path, OPENROUTER_BASE_URL=f"http://127.0.0.1:{silent.getsockname()[1]}/api/v1")
        with started(modelyard_command(tmp_path, *command), env, tmp_path) as process:
            silent.settimeout(30)
            connection, _ = silent.accept()  # the child is waiting for an answer now
            with connection:
                process.send_signal(signal.SIGINT)
                _, err = process.communicate(timeout=30)
    assert (process.returncode, err.splitlines()[-1]) == (130, "modelyard: interrupted")
