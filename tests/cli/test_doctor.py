"""`modelyard doctor`: one ✓/✗ line per check, every check run whatever failed before it, exit 1 on any ✗."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from modelyard.sandbox import Sandbox
from tests.cli.support import cli, exit_code, free_port

LABELS = ("upstream", "key", "round trip", "credit", "catalog", "store", "budget")


def marks(out: str) -> dict[str, str]:
    """Each check's label -> its mark (✓ or ✗)."""
    return {m.group(2).strip(): m.group(1) for m in re.finditer(r"^  ([✓✗]) (.{11}) ", out, re.MULTILINE)}


@pytest.fixture
def ordinary_key(sandbox: Sandbox) -> Iterator[None]:
    """The sandbox's key as an ordinary one of 2026: `/credits` answers it 403 (management keys only)."""
    sandbox.state.config.credits_need_management_key = True
    yield
    sandbox.state.config.credits_need_management_key = False


@pytest.fixture
def no_credit_bought(sandbox: Sandbox) -> Iterator[None]:
    """An account that bought no credit: `/credits` says $0 of $0."""
    sandbox.state.config.total_credits = Decimal(0)
    yield
    sandbox.state.config.total_credits = Decimal(100)


@pytest.fixture
def key_limit(sandbox: Sandbox) -> Iterator[None]:
    """A $1 limit on the sandbox's key, removed after the test (the sandbox is shared by the module)."""
    sandbox.state.set_key_limit(Decimal(1))
    yield
    sandbox.state.set_key_limit(None)


def test_doctor_passes_against_the_sandbox(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`doctor` against the sandbox: every line is a ✓ and the verdict is good."""
    cli(env, "doctor")
    out = capsys.readouterr().out
    assert marks(out) == dict.fromkeys(LABELS, "✓")
    assert "All checks passed." in out


def test_doctor_with_an_upstream_that_does_not_answer_says_so_on_the_upstream_line(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upstream line is a real check: it was ✓ for any URL, with /key and /models failing below it."""
    url = f"http://127.0.0.1:{free_port()}/api/v1"
    monkeypatch.setenv("OPENROUTER_BASE_URL", url)
    assert exit_code(env, "doctor") == 1
    out = capsys.readouterr().out
    assert re.search(rf"^  ✗ upstream +{re.escape(url)} \(sandbox / local\) does not answer: ", out, re.MULTILINE)
    assert marks(out) == {"upstream": "✗", "key": "✗", "catalog": "✗", "store": "✓", "budget": "✓"}
    assert "3 problem(s) found." in out


def test_doctor_with_a_store_that_does_not_answer_still_runs_every_other_check(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis store that is down was a one-line error after the upstream line; the key, catalog and budget
    checks never ran."""
    monkeypatch.setenv("MODELYARD_STORE", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("MODELYARD_BUDGET__DAILY", "5")
    assert exit_code(env, "doctor") == 1
    out = capsys.readouterr().out
    assert marks(out) == {**dict.fromkeys(LABELS, "✓"), "store": "✗", "budget": "✗"}
    assert re.search(r"✗ store +The Redis store at redis://127\.0\.0\.1:\d+/0 does not answer", out)
    configured = r"daily \$5, monthly no limit, per request no limit \(as configured\)"
    assert re.search(rf"✗ budget +{configured}; spend and run-time tightenings unknown", out)
    assert "2 problem(s) found." in out


def test_doctor_fails_the_budget_when_a_limit_set_at_run_time_leaves_no_paid_model_able_to_answer(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """per_request 1e-30, set by an agent: doctor said "✓ budget ... per request $0" and "All checks passed" while
    every paid request was refused."""
    cli(env, "budget", "--per-request", "1e-30")
    capsys.readouterr()
    assert exit_code(env, "doctor") == 1
    out = capsys.readouterr().out
    assert marks(out) == {**dict.fromkeys(LABELS, "✓"), "budget": "✗"}
    line = next(line for line in out.splitlines() if "✗ budget" in line)
    assert re.search(r"per request \$0\.0{29}1 \(set at run time on [^;]+; configured no limit\)", line)
    assert "The per_request limit is $0.000000000000000000000000000001, below $" in line
    assert "every request to a paid model is refused" in line and "`modelyard budget --reset`" in line
    assert re.search(r"Free models named explicitly \(\S+:free", line)  # a $0 limit may be meant for them
    assert "1 problem(s) found." in out


def test_doctor_shows_a_configured_limit_as_configured(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_BUDGET__DAILY", "5")
    cli(env, "doctor")
    assert re.search(
        r"✓ budget +daily \$5 \(configured\), monthly no limit, per request no limit; spent", capsys.readouterr().out
    )


def test_doctor_with_no_per_key_limit_says_so_rather_than_unlimited_credit(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key without a limit of its own still spends the account's credit: "credit unlimited" was wrong."""
    cli(env, "doctor")
    out = capsys.readouterr().out
    assert "unlimited" not in out
    assert re.search(r"✓ key +present and valid \(sk-or-v1-san\.\.\.box\); no per-key limit \(spent \$[0-9.]+", out)


def test_doctor_with_a_per_key_limit_shows_what_is_left_of_it(
    env: Path, key_limit: None, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(env, "doctor")
    assert re.search(r"✓ key +present and valid \(.*\); per-key limit \$1, \$1 left", capsys.readouterr().out)


def test_doctor_shows_the_accounts_credit_left_of_what_was_bought(
    env: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no per-key limit the account's credit is what bounds the key: doctor says how much is left."""
    cli(env, "doctor")
    left = Decimal(100) - sandbox.state.billed_total()
    line = rf"^  ✓ credit +account credit {re.escape(f'${left:f}')} left of \$100$"
    assert re.search(line, capsys.readouterr().out, re.MULTILINE)


def test_doctor_leaves_the_credit_line_out_when_the_key_may_not_read_it(
    env: Path, ordinary_key: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`/credits` answers an ordinary key 403 since 2026: that is no problem of the setup, and no ✗."""
    cli(env, "doctor")
    out = capsys.readouterr().out
    assert marks(out) == {label: "✓" for label in LABELS if label != "credit"}
    assert "All checks passed." in out


def test_doctor_with_no_account_credit_left_says_to_add_some(
    env: Path, no_credit_bought: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(env, "doctor") == 1
    out = capsys.readouterr().out
    add = "add credit at https://openrouter.ai/settings/credits"
    assert re.search(rf"^  ✗ credit +account credit \$0 left of \$0: {re.escape(add)}$", out, re.MULTILINE)
    assert "1 problem(s) found." in out


def test_doctor_warns_of_billed_answers_waiting_in_the_spool(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis went down with answers paid for: doctor says how many rows wait in the spool, and where."""
    import anyio

    from modelyard.store import spool_location
    from modelyard.store.base import LedgerRow
    from modelyard.store.spool import Spool

    url = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("MODELYARD_STORE", url)
    path = spool_location(url)
    assert path is not None
    row = LedgerRow(id="paid", ts=0.0, requested_model="auto", cost=Decimal("0.25"))
    anyio.run(Spool(path).keep, None, row)
    assert exit_code(env, "doctor") == 1
    out = capsys.readouterr().out
    assert re.search(rf"^  ! spool +1 ledger row\(s\) .*{re.escape(str(path))}", out, re.MULTILINE), out
    assert marks(out)["store"] == "✗"


def test_doctor_does_not_say_free_models_answer_under_a_zero_daily_limit_already_spent_past(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A daily limit of $0 set after a paid answer today refuses a free model's $0 hold too (spent + 0 > 0):
    doctor said "Free models named explicitly (...) still answer" all the same."""
    cli(env, "run", "Say hi", "--model", "gpt-4o-mini", "--max-tokens", "5")
    cli(env, "budget", "--daily", "0")
    capsys.readouterr()
    assert exit_code(env, "doctor") == 1
    line = next(line for line in capsys.readouterr().out.splitlines() if "✗ budget" in line)
    assert "every request to a paid model is refused" in line
    assert "Free models named explicitly" not in line
    assert exit_code(env, "run", "Say hi", "--model", "openai/gpt-oss-20b:free", "--max-tokens", "5") != 0
    assert "daily" in capsys.readouterr().err  # the free model is refused by the daily budget indeed
