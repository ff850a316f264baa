"""`modelyard ledger`: the ledger's rows as CSV or JSON lines, for an operator explaining a bill.

Reads the store directly (the same one the server writes), so it works beside a running server and
after it has stopped. Money is written as exact decimal text; an unknown cost stays empty (CSV) or
null (JSON), never 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, TextIO

from modelyard.routing.metrics import Window, window_start
from modelyard.settings import Settings
from modelyard.store.base import LedgerRow

__all__ = ["COLUMNS", "export", "ledger", "row_kind"]

COLUMNS: Final = (
    "time",
    "id",
    "kind",
    "status",
    "client",
    "purpose",
    "requested_model",
    "model",
    "provider",
    "generation_id",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost",
    "cost_source",
    "saved",
    "cache_hit",
    "latency_ms",
    "attempts",
    "streamed",
    "error",
    "detail",
)
"""The exported columns, in order (README, "The ledger", says what each holds)."""


def row_kind(row: LedgerRow) -> str:
    """`request` for a request's own row; `rejected_answer` or `abandoned_answer` for the row of one
    attempt's bill (money of the request that made it, not a request of its own)."""
    if row.detail.get("abandoned"):
        return "abandoned_answer"
    if "billed_attempt" in row.detail:
        return "rejected_answer"
    return "request"


def _record(row: LedgerRow) -> dict[str, Any]:
    generation = row.detail.get("generation_id")
    return {
        "time": datetime.fromtimestamp(row.ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "id": row.id,
        "kind": row_kind(row),
        "status": row.status,
        "client": _text(row.detail.get("client")),
        "purpose": _text(row.detail.get("purpose")) or "answer",
        "requested_model": row.requested_model,
        "model": row.model,
        "provider": row.provider,
        "generation_id": generation if isinstance(generation, str) else None,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cached_tokens": row.cached_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "cost": _money(row.cost),
        "cost_source": row.cost_source,
        "saved": _money(row.saved),
        "cache_hit": row.cache_hit,
        "latency_ms": row.latency_ms,
        "attempts": row.attempts,
        "streamed": row.streamed,
        "error": row.error,
        "detail": row.detail,
    }


_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_MONEY: Final = frozenset({"cost", "saved"})


def _cell(value: object) -> object:
    """A CSV cell: empty for None, and text a spreadsheet would run as a formula (a host may name itself
    `=HYPERLINK(...)`) quoted with a leading apostrophe, as OWASP advises. Money columns are left as they are."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"


def export(rows: Iterable[LedgerRow], out: TextIO, *, fmt: str) -> int:
    """Write `rows` to `out` as `csv` (a header, then a line per row) or `jsonl`; return how many."""
    count = 0
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(_record(row), ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
        return count
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record = _record(row)
        record["detail"] = json.dumps(record["detail"], ensure_ascii=False, separators=(",", ":"))
        writer.writerow({k: "" if v is None else v if k in _MONEY else _cell(v) for k, v in record.items()})
        count += 1
    return count


async def ledger(settings: Settings, args: argparse.Namespace) -> None:
    """Print the ledger's rows in the window, oldest first; a count on stderr."""
    from modelyard.store import open_store_async, redacted

    window: Window = args.window
    store = await open_store_async(settings.store)
    try:
        rows: Sequence[LedgerRow] = await store.rows(since=window_start(window, time.time()), limit=args.limit)
    finally:
        await store.aclose()
    count = export(rows, sys.stdout, fmt=args.fmt)
    print(f"{count} row(s) from {redacted(settings.store.split('?')[0])}", file=sys.stderr)
