"""`modelyard run`: the answer alone on stdout, the summary on stderr, the prompt before or after a chain of
`--models`, and errors that name the options and the CLI's own commands."""

from __future__ import annotations

import io
import re
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from modelyard.sandbox import Sandbox
from tests.cli.support import cli, exit_code

RULE = "-" * 60


def test_run_streams_the_answer_and_prints_model_tokens_and_exact_cost(
    env: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` prints the answer, then (on stderr) the model, the tokens and the cost the sandbox billed."""
    before = sandbox.state.billed_total()
    cli(env, "run", "Say hi in Portuguese", "--model", "gpt-4o-mini", "--max-tokens", "50")
    captured = capsys.readouterr()
    assert captured.out.strip()
    footer = captured.err.partition(RULE)[2]
    assert re.search(r"^model +openai/gpt-4o-mini", footer, re.MULTILINE)
    assert re.search(r"^tokens +prompt \d+, completion \d+, cached 0, reasoning 0", footer, re.MULTILINE)
    cost = re.search(r"^cost +\$([0-9.]+) \(upstream\)", footer, re.MULTILINE)
    assert cost is not None
    assert Decimal(cost.group(1)) == sandbox.state.billed_total() - before


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_run_prints_only_the_answer_on_stdout_and_the_summary_on_stderr(
    terminal: bool, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`modelyard run ... > answer.txt` saves the answer alone: the rule and the summary go to stderr."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal)
    cli(env, "run", "Say hi", "--model", "gpt-4o-mini")
    captured = capsys.readouterr()
    assert captured.out.strip() and captured.out.endswith("\n")
    assert RULE not in captured.out and "model " not in captured.out and "cost " not in captured.out
    assert captured.err.startswith(RULE)
    labels = [line.split()[0] for line in captured.err.partition(RULE)[2].strip().splitlines()]
    assert labels == ["model", "tokens", "cost", "latency", "selected"]


def test_run_reads_stdin_and_prints_at_the_end_with_no_stream(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run -` reads the prompt from stdin; `--no-stream` prints the whole answer at the end."""
    monkeypatch.setattr("sys.stdin", io.StringIO("Name a colour"))
    cli(env, "run", "-", "--no-stream", "--model", "economy", "--system", "Be brief.", "--temperature", "0")
    captured = capsys.readouterr()
    assert captured.out.strip() and "\n" not in captured.out.strip()
    assert "selected  tier:economy" in captured.err


def test_run_lists_each_fallback_attempt_with_its_error(
    env: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the first model fails, the footer shows that attempt and its error, then who answered."""
    monkeypatch.setenv("MODELYARD_MAX_RETRIES", "0")
    sandbox.state.faults.add(model="openai/gpt-4o-mini", kind="server_error", count=1)
    cli(env, "run", "Hello", "--model", "openai/gpt-4o-mini", "--models", "openai/gpt-4.1-nano")
    err = capsys.readouterr().err
    assert "fallback  openai/gpt-4o-mini: error: 500 Internal Server Error" in err
    assert re.search(r"^model +openai/gpt-4\.1-nano", err, re.MULTILINE)


def answer_and_chain(capsys: pytest.CaptureFixture[str]) -> tuple[str, list[str]]:
    """The answer `run` printed, and the models its summary names (who answered, then each failed attempt)."""
    captured = capsys.readouterr()
    models = re.findall(r"^(?:model|fallback) +([\w./-]+)", captured.err, re.MULTILINE)
    return captured.out, models


@pytest.mark.parametrize(
    "args",
    [
        ["--models", "openai/gpt-4o-mini", "openai/gpt-4.1-nano", "hello there"],
        ["--models", "openai/gpt-4o-mini,openai/gpt-4.1-nano", "hello there"],
        ["--models", "openai/gpt-4o-mini", "--models", "openai/gpt-4.1-nano", "hello there"],
        ["--models", "openai/gpt-4o-mini", "openai/gpt-4.1-nano", "hello there", "--no-stream"],
    ],
    ids=["spaced", "comma-separated", "repeated", "options-after-the-prompt"],
)
def test_run_takes_the_prompt_after_a_models_chain(
    args: list[str], env: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --models A B "hello there"` is the documented `run "hello there" --models A B`: the last value is
    the prompt, not a third model (it was "the following arguments are required: prompt")."""
    monkeypatch.setenv("MODELYARD_MAX_RETRIES", "0")
    sandbox.state.faults.add(model="openai/gpt-4o-mini", kind="server_error", count=1)
    cli(env, "run", "hello there", "--models", "openai/gpt-4o-mini", "openai/gpt-4.1-nano")
    documented = answer_and_chain(capsys)
    sandbox.state.faults.add(model="openai/gpt-4o-mini", kind="server_error", count=1)
    cli(env, "run", *args)
    assert answer_and_chain(capsys) == documented
    answered, failed = documented[1]  # the answer names the model's canonical slug (a dated id)
    assert answered.startswith("openai/gpt-4.1-nano") and failed == "openai/gpt-4o-mini"


@pytest.mark.parametrize("args", [[], ["--models", "openai/gpt-4o-mini"]], ids=["nothing", "one-model"])
def test_run_without_a_prompt_is_a_usage_error(args: list[str], env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A lone `--models` value is not taken for the prompt: that would send a model id as the question."""
    assert exit_code(env, "run", *args) == 2
    assert "modelyard run: error: the following arguments are required: prompt" in capsys.readouterr().err


def test_an_unknown_model_names_the_cli_command_that_lists_the_ids(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The router's message names the MCP tool (list_models); on the command line it names `modelyard models`."""
    assert exit_code(env, "run", "Hello", "--model", "gpt-9") == 1
    err = capsys.readouterr().err
    assert "is not a known model" in err and "list_models" in err and "`modelyard models`" in err


def test_constraints_no_model_meets_name_the_cli_command_that_lists_the_models(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(env, "run", "Hello", "--capability", "vision", "--max-cost-per-1k", "0.0000001") == 1
    err = capsys.readouterr().err
    assert "No model meets the constraints" in err and "plan_route" in err and "`modelyard models`" in err


def test_run_without_a_key_exits_1_and_says_how_to_set_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key: exit 1 with a message naming OPENROUTER_API_KEY and the sandbox alternative."""
    monkeypatch.setenv("MODELYARD_STORE", f"sqlite:///{tmp_path / 'x.db'}")
    config = tmp_path / "empty.toml"
    config.write_text("")
    assert exit_code(config, "run", "Hello") == 1
    err = capsys.readouterr().err
    assert "OPENROUTER_API_KEY" in err and "modelyard sandbox" in err and "OPENROUTER_BASE_URL" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--max-tokens", "0"], "modelyard: --max-tokens should be greater than or equal to 1 (got 0)"),
        (["--temperature", "5"], "modelyard: --temperature should be less than or equal to 2 (got 5.0)"),
        (
            ["--max-tokens", "0", "--temperature", "-1"],
            "modelyard: --max-tokens should be greater than or equal to 1 (got 0); "
            "--temperature should be greater than or equal to 0 (got -1.0)",
        ),
    ],
    ids=["max-tokens-0", "temperature-5", "both"],
)
def test_run_with_an_option_out_of_range_names_the_option_and_exits_1_before_sending(
    args: list[str], expected: str, env: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """The request's own checks speak in the options' names, not RouteRequest's, and nothing is billed."""
    before = sandbox.state.billed_total()
    assert exit_code(env, "run", "Hello", *args) == 1
    assert capsys.readouterr().err.strip() == expected
    assert sandbox.state.billed_total() == before


def test_run_piped_after_a_mid_stream_fallback_prints_only_the_answer(
    env: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Piped, `run` prints the answer once it is whole: the failed attempt's text used to run into it."""
    monkeypatch.setenv("MODELYARD_MAX_RETRIES", "0")
    cli(env, "run", "Tell me a story", "--no-stream", "--model", "openai/gpt-4.1-nano")
    expected = capsys.readouterr().out
    sandbox.state.faults.add(model="openai/gpt-4o-mini", kind="mid_stream_error", after_chunks=2, count=1)
    cli(env, "run", "Tell me a story", "--model", "openai/gpt-4o-mini", "--models", "openai/gpt-4.1-nano")
    assert capsys.readouterr().out == expected


def test_run_on_a_terminal_streams_and_starts_the_fallbacks_answer_on_a_line_of_its_own(
    env: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_MAX_RETRIES", "0")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    sandbox.state.faults.add(model="openai/gpt-4o-mini", kind="mid_stream_error", after_chunks=2, count=1)
    cli(env, "run", "Tell me a story", "--model", "openai/gpt-4o-mini", "--models", "openai/gpt-4.1-nano")
    captured = capsys.readouterr()
    assert "restarting on the next model" in captured.err
    failed, _, answer = captured.out.partition("\n")
    assert failed.strip() and answer.strip()


@pytest.mark.parametrize(
    ("request_cost", "billed"),
    [("0.001", None), ("0.003", "$0.003"), (None, "unknown")],
    ids=["the answer alone", "a rejected answer too", "an abandoned answer too"],
)
def test_runs_footer_adds_what_the_request_was_billed_in_all_when_it_is_not_the_answers_cost(
    request_cost: str | None, billed: str | None
) -> None:
    from modelyard.routing.result import RouteResult
    from modelyard.run_command import footer

    result = RouteResult(
        content="hi",
        model="m/a",
        requested_model="auto",
        resolved_model="m/a",
        cost=Decimal("0.001"),
        request_cost=None if request_cost is None else Decimal(request_cost),
    )
    lines = [line for line in footer(result) if line.startswith("billed")]
    expected = f"billed    {billed} in all, with the attempts billed before the answer"
    assert lines == ([] if billed is None else [expected])
