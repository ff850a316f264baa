"""Ledger rows say who asked (the MCP host, by its `clientInfo`) and why (an answer, a judge, a review), so an
operator can split a bill by host and tell a judge's or reviewer's spend from the answers'."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from modelyard.routing.labels import current, labelled
from modelyard.store import SQLiteStore
from modelyard.store.base import LedgerRow
from tests.tools.calls import answer

pytestmark = pytest.mark.anyio
MODEL = "openai/gpt-4o-mini"


async def _rows(tmp_path: Path) -> list[LedgerRow]:
    async with await SQLiteStore.open(tmp_path / "tools.db") as store:
        return await store.rows()


async def test_an_answers_row_names_the_host_that_asked(client: Client, tmp_path: Path) -> None:
    """The SDK's client introduces itself as `mcp`; that name (and version) is on the row."""
    await answer(client, "execute", prompt="Say hi", model=MODEL)
    (row,) = await _rows(tmp_path)
    assert str(row.detail["client"]).startswith("mcp") and "purpose" not in row.detail


async def test_a_judges_row_says_it_was_the_judge_and_the_answers_rows_do_not(client: Client, tmp_path: Path) -> None:
    """compare_models: two answers and one judge, each a row; only the judge's is labelled `judge`."""
    await answer(client, "compare_models", prompt="Name a colour", models=[MODEL, "gpt-4.1-nano"], judge="economy")
    purposes = sorted(str(row.detail.get("purpose", "answer")) for row in await _rows(tmp_path))
    assert purposes == ["answer", "answer", "judge"]


async def test_a_supervisors_review_row_says_it_was_the_review(client: Client, tmp_path: Path) -> None:
    """execute with a supervisor: the answer's row and the review's, told apart."""
    await answer(client, "execute", prompt="Say hi", model=MODEL, supervisor="gpt-4.1-nano")
    purposes = sorted(str(row.detail.get("purpose", "answer")) for row in await _rows(tmp_path))
    assert purposes == ["answer", "review"]


def test_inner_labels_win_and_leave_the_outer_ones_as_they_were() -> None:
    """A judge's call inside a host's call carries both; after it, only the host's."""
    with labelled(client="host 1"):
        with labelled(purpose="judge", client=None):
            assert dict(current()) == {"client": "host 1", "purpose": "judge"}
        assert dict(current()) == {"client": "host 1"}
    assert dict(current()) == {}
