"""The `modelyard` terminal commands, run in-process through `cli.main` against a sandbox.

The sandbox runs on its own event loop in a background thread (an anyio blocking portal), so each
test can call the synchronous `main([...])`, which starts its own loop, as the console script does.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from modelyard.cli import main
from modelyard.sandbox import Sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """One sandbox for the module, served from a background thread."""
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(Sandbox.running(port=0)) as sb:
        yield sb


@pytest.fixture
def env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point the CLI at the sandbox with a fresh store; returns an empty config file to pass as --config."""
    sandbox.state.faults.clear()
    monkeypatch.setenv("OPENROUTER_API_KEY", sandbox.api_key)
    monkeypatch.setenv("OPENROUTER_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("MODELYARD_STORE", f"sqlite:///{tmp_path / 'cli.db'}")
    config = tmp_path / "config.toml"
    config.write_text("")
    return config


def cli(config: Path, *args: str) -> None:
    """`modelyard --config CONFIG ARGS...` in this process."""
    main(["--config", str(config), *args])


def exit_code(config: Path, *args: str) -> int | str | None:
    """Run the CLI where it must exit, and return its exit code."""
    with pytest.raises(SystemExit) as stopped:
        cli(config, *args)
    return stopped.value.code


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` names every command."""
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "run", "models", "metrics", "budget", "doctor", "sandbox", "demo"):
        assert command in out


def test_models_prints_an_aligned_table_with_prices_per_million(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`models` filters by capability, sorts by price and marks estimated quality with ~."""
    cli(env, "models", "--capability", "vision", "--tier", "economy", "--sort", "price", "--limit", "3")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "tier", "quality", "$/1M", "in", "$/1M", "out", "context", "capabilities"]
    first = lines[2].split()
    assert first[:2] == ["google/gemma-3-4b-it", "economy"]
    assert first[2].startswith("~") and first[3:5] == ["0.05", "0.1"]
    assert "vision" in first[-1]
    assert lines[2].index("economy") == lines[0].index("tier")  # columns line up
    assert re.search(r"^3 of \d+ matching models", "\n".join(lines), re.MULTILINE)


def test_models_works_offline_from_the_stored_catalog(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the upstream unreachable, `models` lists the catalog stored by an earlier run and says so."""
    cli(env, "models", "--limit", "1")
    capsys.readouterr()
    monkeypatch.setenv("OPENROUTER_BASE_URL", f"http://127.0.0.1:{free_port()}/api/v1")
    monkeypatch.setenv("MODELYARD_CATALOG_TTL_S", "0")
    cli(env, "models", "--search", "gpt-4o-mini")
    out = capsys.readouterr().out
    assert "openai/gpt-4o-mini" in out
    assert "offline: showing the stored catalog" in out


def test_run_streams_the_answer_and_prints_model_tokens_and_exact_cost(
    env: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` prints the answer, then the model, the tokens and the cost the sandbox billed."""
    before = sandbox.state.billed_total()
    cli(env, "run", "Say hi in Portuguese", "--model", "gpt-4o-mini", "--max-tokens", "50")
    out = capsys.readouterr().out
    answer, _, footer = out.partition("-" * 60)
    assert answer.strip()
    assert re.search(r"^model +openai/gpt-4o-mini", footer, re.MULTILINE)
    assert re.search(r"^tokens +prompt \d+, completion \d+, cached 0, reasoning 0", footer, re.MULTILINE)
    cost = re.search(r"^cost +\$([0-9.]+) \(upstream\)", footer, re.MULTILINE)
    assert cost is not None
    assert Decimal(cost.group(1)) == sandbox.state.billed_total() - before


def test_run_reads_stdin_and_prints_at_the_end_with_no_stream(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run -` reads the prompt from stdin; `--no-stream` prints the whole answer at the end."""
    monkeypatch.setattr("sys.stdin", io.StringIO("Name a colour"))
    cli(env, "run", "-", "--no-stream", "--model", "economy", "--system", "Be brief.", "--temperature", "0")
    out = capsys.readouterr().out
    assert out.split("\n", 1)[0].strip()
    assert "selected  tier:economy" in out


def test_run_lists_each_fallback_attempt_with_its_error(
    env: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the first model fails, the footer shows that attempt and its error, then who answered."""
    monkeypatch.setenv("MODELYARD_MAX_RETRIES", "0")
    sandbox.state.faults.add(model="openai/gpt-4o-mini", kind="server_error", count=1)
    cli(env, "run", "Hello", "--model", "openai/gpt-4o-mini", "--models", "openai/gpt-4.1-nano")
    out = capsys.readouterr().out
    assert "fallback  openai/gpt-4o-mini: error: 500 Internal Server Error" in out
    assert re.search(r"^model +openai/gpt-4\.1-nano", out, re.MULTILINE)


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


def test_budget_shows_limits_spent_reserved_and_remaining(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`budget` shows the configured limits, spend, money held and what remains."""
    monkeypatch.setenv("MODELYARD_BUDGET__DAILY", "5")
    cli(env, "budget")
    out = capsys.readouterr().out
    assert re.search(r"daily +\$5 \(spent today \$0, remaining \$5\)", out)
    assert re.search(r"monthly +no limit", out)
    assert re.search(r"reserved +\$0 held by requests in flight", out)


def test_budget_tightens_refuses_to_raise_and_resets(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--daily` lowers the limit, a higher value is refused with what to do, `--reset` restores the config."""
    monkeypatch.setenv("MODELYARD_BUDGET__DAILY", "5")
    cli(env, "budget", "--daily", "1", "--per-request", "0.01")
    out = capsys.readouterr().out
    assert re.search(r"daily +\$1 ", out) and re.search(r"per request +\$0.01", out)
    assert exit_code(env, "budget", "--daily", "2") == 1
    err = capsys.readouterr().err
    assert "Refused: --daily $2 would raise the daily limit, which is $1." in err
    assert "MODELYARD_BUDGET__DAILY" in err and "modelyard budget --reset" in err
    cli(env, "budget", "--reset")
    out = capsys.readouterr().out
    assert re.search(r"daily +\$5 ", out) and re.search(r"per request +no limit", out)


def test_doctor_passes_against_the_sandbox(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`doctor` against the sandbox: every line is a ✓ and the verdict is good."""
    cli(env, "doctor")
    out = capsys.readouterr().out
    assert "✗" not in out
    for label in ("upstream", "key", "round trip", "catalog", "store", "budget"):
        assert re.search(rf"✓ {label}", out)
    assert "All checks passed." in out


def test_doctor_fails_with_a_wrong_base_url(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`doctor` with an upstream that does not answer: ✗ key and catalog, exit 1."""
    monkeypatch.setenv("OPENROUTER_BASE_URL", f"http://127.0.0.1:{free_port()}/api/v1")
    assert exit_code(env, "doctor") == 1
    out = capsys.readouterr().out
    assert "✗ key" in out and "✗ catalog" in out
    assert "2 problem(s) found." in out


def test_metrics_reports_requests_spend_and_per_model_rows(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After one answered prompt, `metrics` counts it, shows its spend and a row for its model."""
    cli(env, "run", "Hello", "--model", "openai/gpt-4.1-nano", "--no-stream")
    cost = re.search(r"^cost +(\$[0-9.]+)", capsys.readouterr().out, re.MULTILINE)
    assert cost is not None
    cli(env, "metrics", "--window", "all")
    out = capsys.readouterr().out
    assert re.search(r"requests +1 \(ok 1, failed 0, refused 0\)", out)
    assert f"spend         {cost.group(1)} total" in out
    assert re.search(r"^openai/gpt-4\.1-nano\S*\s+1\s", out, re.MULTILINE)


def test_budget_with_a_redis_store_that_is_down_says_so_without_a_traceback(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELYARD_STORE", "redis://:hunter2pass@127.0.0.1:1/0")
    assert exit_code(env, "budget") == 1
    err = capsys.readouterr().err
    assert "does not answer" in err and "MODELYARD_STORE" in err and "hunter2pass" not in err


def modelyard_process(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m modelyard --config EMPTY ARGS...` in a child process, with a key and an upstream that is down."""
    config = tmp_path / "empty.toml"
    config.write_text("")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "MODELYARD_STORE": f"sqlite:///{tmp_path / 'cli.db'}",
        "OPENROUTER_API_KEY": "sk-or-v1-sandbox",
        "OPENROUTER_BASE_URL": f"http://127.0.0.1:{free_port()}/api/v1",
    }
    command = [sys.executable, "-m", "modelyard", "--config", str(config), *args]
    return subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


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


@pytest.mark.parametrize(
    "args",
    [
        ["run", "Hello", "--max-cost", "-1"],
        ["run", "Hello", "--max-cost", "nan"],
        ["run", "Hello", "--max-cost-per-1k", "abc"],
        ["budget", "--daily", "abc"],
        ["budget", "--per-request", "inf"],
    ],
    ids=["negative", "nan", "not-a-number", "budget-not-a-number", "budget-infinite"],
)
def test_an_amount_of_usd_that_is_negative_or_no_number_is_a_usage_error_naming_the_option(
    args: list[str], env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`Decimal("abc")` raises what argparse does not catch: it was a traceback."""
    assert exit_code(env, *args) == 2
    option, value = args[-2:]
    assert f"argument {option}: expected an amount of USD of 0 or more, such as 0.05, not {value!r}" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("port", ["-1", "65536", "x"])
def test_the_sandbox_with_a_port_out_of_range_is_a_usage_error(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["sandbox", "--port", port])
    assert stopped.value.code == 2
    assert "argument --port: expected a port number from 0 to 65535" in capsys.readouterr().err


def test_a_setting_out_of_range_stops_the_cli_naming_its_variable(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A negative cache size was a ValueError traceback from the cache, once the router was built."""
    monkeypatch.setenv("MODELYARD_CACHE__MAX_ENTRIES", "-1")
    assert exit_code(env, "budget") == 1
    err = capsys.readouterr().err
    assert (
        "setting cache.max_entries from MODELYARD_CACHE__MAX_ENTRIES: Input should be greater than or equal to 0" in err
    )


def test_a_misspelt_key_in_the_config_file_stops_the_cli_saying_which_was_meant(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.write_text("[budget]\ndayly = 5\n")
    assert exit_code(env, "budget") == 1
    assert (
        capsys.readouterr().err.strip()
        == f"modelyard: unknown setting 'budget.dayly' in {env}; did you mean 'budget.daily'?"
    )


def test_bad_options_end_the_process_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    """Through the console entry point: a bad `run` value exits 1, a port out of range exits 2 with the usage."""
    run = modelyard_process(tmp_path, "run", "Hello", "--max-tokens", "0")
    assert (run.returncode, run.stderr) == (1, "modelyard: --max-tokens should be greater than or equal to 1 (got 0)\n")
    serve = modelyard_process(tmp_path, "serve", "--transport", "streamable-http", "--port", "70000")
    assert serve.returncode == 2 and "Traceback" not in serve.stderr
    assert serve.stderr.startswith("usage: modelyard serve")
    assert "error: argument --port: expected a port number from 0 to 65535, not 70000" in serve.stderr


def test_run_piped_after_a_mid_stream_fallback_prints_only_the_answer(
    env: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Piped, `run` prints the answer once it is whole: the failed attempt's text used to run into it."""
    monkeypatch.setenv("MODELYARD_MAX_RETRIES", "0")
    cli(env, "run", "Tell me a story", "--no-stream", "--model", "openai/gpt-4.1-nano")
    expected = capsys.readouterr().out.partition("-" * 60)[0].strip()
    sandbox.state.faults.add(model="openai/gpt-4o-mini", kind="mid_stream_error", after_chunks=2, count=1)
    cli(env, "run", "Tell me a story", "--model", "openai/gpt-4o-mini", "--models", "openai/gpt-4.1-nano")
    assert capsys.readouterr().out.partition("-" * 60)[0].strip() == expected


def test_run_on_a_terminal_streams_and_starts_the_fallbacks_answer_on_a_line_of_its_own(
    env: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_MAX_RETRIES", "0")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    sandbox.state.faults.add(model="openai/gpt-4o-mini", kind="mid_stream_error", after_chunks=2, count=1)
    cli(env, "run", "Tell me a story", "--model", "openai/gpt-4o-mini", "--models", "openai/gpt-4.1-nano")
    captured = capsys.readouterr()
    assert "restarting on the next model" in captured.err
    failed, _, answer = captured.out.partition("-" * 60)[0].partition("\n")
    assert failed.strip() and answer.strip()


@pytest.mark.parametrize(
    ("request_cost", "billed"),
    [("0.001", None), ("0.003", "$0.003"), (None, "unknown")],
    ids=["the answer alone", "a rejected answer too", "an abandoned answer too"],
)
def test_runs_footer_adds_what_the_request_was_billed_in_all_when_it_is_not_the_answers_cost(
    request_cost: str | None, billed: str | None
) -> None:
    from modelyard.commands import footer
    from modelyard.routing.result import RouteResult

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
