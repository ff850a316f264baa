"""The tools' shared pieces: progress notes for streamed text and keep-alives, and who made a call."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from mcp.types import Implementation, InitializeRequestParams

from modelyard.routing.events import Restart, TextDelta
from modelyard.tools.common import Progress, caller_of

pytestmark = pytest.mark.anyio


class _Context:
    """What `Progress` uses of the MCP context: it records each note."""

    def __init__(self) -> None:
        self.notes: list[tuple[float, str | None]] = []

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        self.notes.append((progress, message))


async def test_after_a_restart_the_keepalive_counts_only_the_new_answers_text() -> None:
    ctx = _Context()
    progress = Progress(cast(Any, ctx))
    await progress.on_event(TextDelta("m1", "broken answer"))
    await progress.on_event(Restart("m1", "stream broke"))
    await progress.on_event(TextDelta("m2", "new"))
    await progress.note()
    assert ctx.notes[-1] == (4, "working… (3 characters so far)")
    assert [n for n, _ in ctx.notes] == [1, 2, 3, 4]


def _call_context(client: Implementation | None, request: Any = None) -> Any:
    """What `caller_of` reads of an MCP context: the session's client info, and the HTTP request if any."""
    params = (
        None
        if client is None
        else InitializeRequestParams(protocol_version="2025-11-25", capabilities={}, client_info=client)
    )
    session = SimpleNamespace(client_params=params)
    return SimpleNamespace(
        request_context=SimpleNamespace(session=session, request=request),
        headers=None if request is None else request.headers,
    )


def test_the_caller_over_http_is_its_client_address_and_session_never_its_token() -> None:
    """set_budget's log line says who lowered the budget; a bearer token must never reach the log."""
    request = SimpleNamespace(
        client=SimpleNamespace(host="10.1.2.3"),
        headers={
            "mcp-session-id": "0123456789abcdef",
            "authorization": "Bearer tok-secret",
            "x-forwarded-for": "1.2.3.4",
        },
    )
    who = caller_of(_call_context(Implementation(name="claude-code", version="2.1"), request))
    assert who == "MCP client 'claude-code' 2.1 from 10.1.2.3 forwarded for 1.2.3.4 session 01234567…"
    assert "tok-secret" not in who


def test_a_caller_that_says_nothing_of_itself_is_an_mcp_client_and_its_name_cannot_break_the_log_line() -> None:
    assert caller_of(_call_context(None)) == "an MCP client"
    who = caller_of(_call_context(Implementation(name="evil\nWARNING forged", version="1")))
    assert "\n" not in who and who.startswith("MCP client 'evil?WARNING forged'")
