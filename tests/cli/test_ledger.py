"""`modelyard ledger`: the ledger's rows exported for an operator, each row's money exact and its kind named."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from modelyard.ledger_export import COLUMNS, export
from modelyard.store import SQLiteStore
from modelyard.store.base import LedgerRow
from tests.cli.support import cli, exit_code

MODEL = "openai/gpt-4.1-nano"


def test_ledger_exports_every_request_as_csv_with_the_exact_cost_the_run_reported(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After an answered prompt and a refused one, the CSV has a header and a row each: the answer's cost
    to the last digit, the refusal's $0, and the generation id that ties the answer to OpenRouter's bill."""
    cli(env, "run", "Hello", "--model", MODEL, "--no-stream")
    capsys.readouterr()
    assert exit_code(env, "run", "Hello", "--model", MODEL, "--max-cost", "0.000000001", "--no-stream") == 1
    capsys.readouterr()
    cli(env, "ledger")
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert [r["status"] for r in rows] == ["ok", "refused"]
    answered, refused = rows
    assert Decimal(answered["cost"]) > 0 and answered["cost_source"] == "upstream"
    assert answered["generation_id"].startswith("gen-") and answered["kind"] == "request"
    assert refused["cost"] == "0"
    assert "2 row(s) from sqlite:" in captured.err


def test_ledger_as_json_lines_keeps_an_unknown_cost_null_and_names_an_abandoned_answer(
    env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A row whose bill is still unknown exports as null (never 0), and an abandoned answer's row says it
    is one attempt's bill, not a request of its own."""

    abandoned = LedgerRow(
        id="a",
        ts=1_800_000_000.0,
        requested_model="auto",
        cost=None,
        status="error",
        detail={"abandoned": True, "billed_attempt": "unknown"},
    )

    async def write() -> None:
        async with await SQLiteStore.open(tmp_path / "cli.db") as store:
            await store.commit(None, abandoned)

    anyio.run(write)
    cli(env, "ledger", "--format", "jsonl")
    (line,) = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert (record["cost"], record["kind"], record["time"]) == (None, "abandoned_answer", "2027-01-15T08:00:00.000Z")


def test_export_writes_the_header_then_the_rows_in_the_order_given() -> None:
    """The columns README documents, in order, then one line per row."""
    rows = [LedgerRow(id=str(i), ts=1_800_000_000.0 + i, requested_model="auto", cost=Decimal("0.1")) for i in range(3)]
    out = io.StringIO()
    assert export(rows[-2:], out, fmt="csv") == 2
    lines = out.getvalue().splitlines()
    assert lines[0].split(",") == list(COLUMNS)
    assert [line.split(",")[1] for line in lines[1:]] == ["1", "2"]


def test_ledger_refuses_a_limit_below_one(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A usage error, not an empty export."""
    assert exit_code(env, "ledger", "--limit", "0") == 2
    assert "expected a whole number of 1 or more" in capsys.readouterr().err


def test_text_a_spreadsheet_would_run_as_a_formula_is_quoted_in_csv_but_kept_in_json_lines() -> None:
    """The `client` name comes from the remote host: `=HYPERLINK(...)` must not become a live formula."""
    row = LedgerRow(
        id="x", ts=1_800_000_000.0, requested_model="auto", cost=Decimal("0"), detail={"client": "=HYPERLINK(1)"}
    )
    out = io.StringIO()
    export([row], out, fmt="csv")
    (record,) = csv.DictReader(io.StringIO(out.getvalue()))
    assert record["client"] == "'=HYPERLINK(1)"
    lines = io.StringIO()
    export([row], lines, fmt="jsonl")
    assert json.loads(lines.getvalue())["client"] == "=HYPERLINK(1)"
