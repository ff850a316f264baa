"""The spend keys a ledger row's cost is added under: its UTC day and UTC month."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelyard.store.base import new_id
from modelyard.store.sqlite_writes import periods


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("ts", "day", "month"),
    [
        (_ts("2026-11-29T23:59:59") + 0.999, "day:2026-11-29", "month:2026-11"),
        (_ts("2026-11-30T00:00:00"), "day:2026-11-30", "month:2026-11"),
        (_ts("2026-11-30T23:59:59"), "day:2026-11-30", "month:2026-11"),
        (_ts("2026-12-01T00:00:00"), "day:2026-12-01", "month:2026-12"),
        (_ts("2024-02-29T12:00:00"), "day:2024-02-29", "month:2024-02"),
        (_ts("2026-12-31T23:59:59") + 0.5, "day:2026-12-31", "month:2026-12"),
        (_ts("2027-01-01T00:00:00"), "day:2027-01-01", "month:2027-01"),
    ],
)
def test_periods_change_exactly_at_utc_midnight_whatever_was_asked_before(ts: float, day: str, month: str) -> None:
    for earlier in (ts - 86_400, ts - 0.001, ts + 86_400):  # the days around it were asked for first
        periods(earlier)
    assert periods(ts) == (day, month)


def test_new_ids_are_32_hex_digits_and_do_not_repeat() -> None:
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
