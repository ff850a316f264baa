"""More ways a `modelyard` process is cut short: `demo` whose reader leaves, and `run --models A B` with no prompt."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from modelyard.cli import main
from modelyard.sandbox import Sandbox
from tests.cli.support import child_env, modelyard_command


def test_demo_whose_reader_closes_early_ends_quietly_with_status_141(tmp_path: Path) -> None:
    """`modelyard demo | head -2` said "the MCP session with `modelyard serve` failed: BrokenPipeError" and
    exited 1: the demo's own print broke, not the session."""
    process = subprocess.Popen(
        modelyard_command(tmp_path, "demo"),
        env=child_env(tmp_path),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for _ in range(2):  # as `head -2`: the title and the sandbox's line, then the reader is gone
        process.stdout.readline()
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert (process.returncode, err) == (141, "")


@pytest.mark.parametrize(
    "chain",
    [
        ["openai/gpt-4o-mini", "openai/gpt-4.1-nano"],
        ["openai/gpt-4o-mini", "openai/gpt-4.1-nano,meta-llama/llama-3.1-8b-instruct"],
    ],
    ids=["two-ids", "id-and-list"],
)
def test_run_models_without_a_prompt_is_a_usage_error_not_a_paid_question(
    chain: list[str], env: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --models A B` (the prompt forgotten) sent "B" to A as the question, billed, and exited 0."""
    before = sandbox.state.request_count
    with pytest.raises(SystemExit) as stopped:
        main(["--config", str(env), "run", "--models", *chain])
    assert stopped.value.code == 2 and "prompt" in capsys.readouterr().err
    assert sandbox.state.request_count == before


def test_doctor_against_an_upstream_that_never_answers_ends_in_seconds_not_minutes(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upstream that accepts and never answers held `doctor` for request_timeout_s (120 s) per request:
    /key (or /models without a key), then the catalog's /models again, four minutes before any verdict."""
    import socket
    import threading

    import modelyard.doctor

    monkeypatch.setattr(modelyard.doctor, "REQUEST_TIMEOUT_S", 1.0, raising=False)
    monkeypatch.delenv("OPENROUTER_API_KEY")
    codes: list[object] = []

    def doctor() -> None:
        try:
            main(["--config", str(env), "doctor"])
        except SystemExit as stopped:
            codes.append(stopped.code)

    with socket.create_server(("127.0.0.1", 0)) as silent:
        monkeypatch.setenv("OPENROUTER_BASE_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/api/v1")
        worker = threading.Thread(target=doctor, daemon=True)
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "doctor was still waiting on the upstream after 30 s"
    assert codes == [1] and "✗ upstream" in capsys.readouterr().out
