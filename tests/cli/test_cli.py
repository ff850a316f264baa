"""The `modelyard` terminal commands, run in-process through `cli.main` against a sandbox (see conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelyard.cli import main
from modelyard.sandbox import Sandbox
from tests.cli.support import cli, exit_code, free_port, modelyard_process


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


def test_models_with_a_base_url_without_api_v1_and_nothing_stored_says_to_check_it_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A fresh HOME and the sandbox's bare origin: the client's 404 message says to check
    OPENROUTER_BASE_URL, and the catalog's error quoted it and said so again (a warning line repeated both)."""
    origin = sandbox.base_url.removesuffix("/api/v1")
    done = modelyard_process(tmp_path, "models", OPENROUTER_BASE_URL=origin)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("modelyard: No model catalog: OpenRouter's /models could not be fetched (")
    assert f"404 Not Found at {origin}/models" in done.stderr
    assert done.stderr.count("OPENROUTER_BASE_URL") == 1, done.stderr


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
    assert re.search(
        r"Refused: --daily \$2 would raise the daily limit, which is \$1 \(set at run time on .+; configured \$5\)\.",
        err,
    )
    assert "`modelyard budget --reset` drops the limits set at run time" in err and "MODELYARD_BUDGET__DAILY: $5" in err
    cli(env, "budget", "--reset")
    out = capsys.readouterr().out
    assert re.search(r"daily +\$5 ", out) and re.search(r"per request +no limit", out)


def test_budget_says_which_limits_were_set_at_run_time_and_what_the_config_says(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent set daily 0.5 and per_request 1e-30, then the operator set MODELYARD_BUDGET__DAILY=10: `budget`
    showed $0.5 and `$0` (a limit that is not zero) with no hint why."""
    cli(env, "budget", "--daily", "0.5", "--per-request", "1e-30")
    monkeypatch.setenv("MODELYARD_BUDGET__DAILY", "10")
    capsys.readouterr()
    cli(env, "budget")
    out = capsys.readouterr().out
    when = r"set at run time on \d{4}-\d\d-\d\d \d\d:\d\d UTC"
    assert re.search(rf"daily +\$0\.5 \(spent today \$0, remaining \$0\.5\), {when}; configured \$10$", out, re.M)
    assert re.search(rf"per request +\$0\.0{{29}}1, {when}; configured no limit$", out, re.M)
    assert re.search(r"monthly +no limit \(spent this month \$0, remaining no limit\)$", out, re.M)
    assert "hold until `modelyard budget --reset`" in out
    cli(env, "budget", "--reset")
    assert re.search(r"daily +\$10 \(spent today \$0, remaining \$10\), configured$", capsys.readouterr().out, re.M)


def test_metrics_reports_requests_spend_and_per_model_rows(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After one answered prompt, `metrics` counts it, shows its spend and a row for its model."""
    cli(env, "run", "Hello", "--model", "openai/gpt-4.1-nano", "--no-stream")
    cost = re.search(r"^cost +(\$[0-9.]+)", capsys.readouterr().err, re.MULTILINE)
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
