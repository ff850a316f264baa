"""Ways to run the CLI in the tests: in this process through `cli.main`, or as a child process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelyard.cli import main

ROOT = Path(__file__).resolve().parents[2]


def cli(config: Path, *args: str) -> None:
    """`modelyard --config CONFIG ARGS...` in this process."""
    main(["--config", str(config), *args])


def exit_code(config: Path, *args: str) -> int | str | None:
    """Run the CLI where it must exit, and return its exit code."""
    with pytest.raises(SystemExit) as stopped:
        cli(config, *args)
    return stopped.value.code


def free_port() -> int:
    """A loopback port nothing listens on (just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """A child's environment: a key, a fresh store and HOME, and an upstream that is down unless overridden."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "MODELYARD_STORE": f"sqlite:///{tmp_path / 'cli.db'}",
        "OPENROUTER_API_KEY": "sk-or-v1-sandbox",
        "OPENROUTER_BASE_URL": f"http://127.0.0.1:{free_port()}/api/v1",
        **overrides,
    }


def modelyard_command(tmp_path: Path, *args: str) -> list[str]:
    """`python -m modelyard --config EMPTY ARGS...`."""
    config = tmp_path / "empty.toml"
    config.write_text("")
    return [sys.executable, "-m", "modelyard", "--config", str(config), *args]


def modelyard_process(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m modelyard --config EMPTY ARGS...` run to its end in a child process (see `child_env`)."""
    options: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 60, "stdin": subprocess.DEVNULL}
    return subprocess.run(modelyard_command(tmp_path, *args), env=child_env(tmp_path, **env), cwd=tmp_path, **options)
