"""Streaming as progress notifications, keep-alives while the upstream is silent, and cancellation that
reaches the upstream connection (over real stdio, through `notifications/cancelled`)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from modelyard.sandbox import Sandbox
from modelyard.server import build_server
from modelyard.settings import Settings
from modelyard.tools import common
from tests.server.conftest import KEY, server_env, stdio_params, structured

pytestmark = pytest.mark.anyio

MODEL = "openai/gpt-4o-mini"
BACKUP = "mistralai/mistral-small-3.2-24b-instruct"
KEEPALIVE = re.compile(r"working… \(\d+ characters so far\)")
RESTART = re.compile(r"\n\[.+ failed \(.*\); restarting on the next model\]\n", re.DOTALL)


class Notes:
    """Collects progress notifications as (progress, message, monotonic time)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, float]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, message or "", time.monotonic()))

    @property
    def messages(self) -> list[str]:
        return [message for _, message, _ in self.seen]

    def text(self) -> str:
        """The streamed text after the last restart, keep-alive notes left out."""
        kept: list[str] = []
        for message in self.messages:
            if RESTART.fullmatch(message):
                kept.clear()
            elif not KEEPALIVE.fullmatch(message):
                kept.append(message)
        return "".join(kept)


def in_memory(sandbox: Sandbox, tmp_path: Path, **overrides: Any) -> Client:
    """A client of the server in process, on the sandbox, with settings `overrides`."""
    settings = Settings(
        openrouter_api_key=KEY,
        openrouter_base_url=sandbox.base_url,
        store=f"sqlite:///{tmp_path / 'p.db'}",
        **overrides,
    )
    return Client(build_server(settings))


@pytest.fixture
async def client(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Client]:
    """The server in process, on the sandbox, default settings."""
    async with in_memory(sandbox, tmp_path) as c:
        yield c


async def test_streamed_text_arrives_as_ordered_progress_that_adds_up_to_the_answer(
    client: Client, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stream=true: progress values rise 1, 2, 3…; the text notes, keep-alives left out, concatenate to the
    result's content, and every one arrived before the result."""
    monkeypatch.setattr(common, "KEEPALIVE_S", 0.05)  # interleave keep-alives with the text
    sandbox.state.config.stream_chunk_delay_ms = 30
    notes = Notes()
    with anyio.fail_after(20):
        result = await client.call_tool(
            "execute", {"prompt": "Tell me a story", "model": "gpt-4o-mini", "stream": True}, progress_callback=notes
        )
        returned = time.monotonic()
    out = structured(result)
    assert [progress for progress, _, _ in notes.seen] == list(range(1, len(notes.seen) + 1))
    assert any(KEEPALIVE.fullmatch(m) for m in notes.messages), "the keep-alive interval was not honoured"
    texts = [m for m in notes.messages if not KEEPALIVE.fullmatch(m)]
    assert len(texts) >= 3 and notes.text() == out["content"]
    assert all(at <= returned for _, _, at in notes.seen)
    assert sandbox.state.ledger[-1].stream is True


async def test_a_stream_that_breaks_midway_restarts_on_the_next_model_and_says_so_in_progress(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A mid-stream error after two chunks (no same-model retries): a restart note follows the partial text,
    and the text after it is exactly the backup model's answer."""
    sandbox.state.faults.add(model=MODEL, kind="mid_stream_error", after_chunks=2, count=1)
    notes = Notes()
    arguments = {"prompt": "Tell me a story", "model": MODEL, "models": [BACKUP], "stream": True}
    with anyio.fail_after(20):
        async with in_memory(sandbox, tmp_path, max_retries=0) as client:
            result = await client.call_tool("execute", arguments, progress_callback=notes)
    out = structured(result)
    restarts = [m for m in notes.messages if RESTART.fullmatch(m)]
    assert len(restarts) == 1 and MODEL in restarts[0]
    assert notes.messages.index(restarts[0]) == 2  # the two chunks streamed before the break came first
    assert out["resolved_model"] == BACKUP and out["model"].startswith(BACKUP)  # the upstream names a version
    assert notes.text() == out["content"]
    assert [(a["model"], a["outcome"]) for a in out["attempts"]] == [(MODEL, "error"), (BACKUP, "ok")]


async def test_a_same_model_retry_after_streamed_text_is_announced_in_progress(
    client: Client, sandbox: Sandbox
) -> None:
    """A mid-stream error retried on the same model: the text after the last restart note is the answer."""
    sandbox.state.faults.add(model=MODEL, kind="mid_stream_error", after_chunks=2, count=1)
    notes = Notes()
    with anyio.fail_after(20):
        result = await client.call_tool(
            "execute", {"prompt": "Tell me a story", "model": MODEL, "stream": True}, progress_callback=notes
        )
    out = structured(result)
    assert [a["model"] for a in out["attempts"]] == [MODEL, MODEL]
    assert notes.text() == out["content"]


async def test_a_silent_upstream_gets_keep_alive_progress_before_the_answer(
    client: Client, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the upstream taking 1.5 s and KEEPALIVE_S patched to 0.3 s, a non-streamed execute sends
    'working…' progress notes while it waits, all before the result."""
    monkeypatch.setattr(common, "KEEPALIVE_S", 0.3)
    sandbox.state.faults.add(model=MODEL, kind="latency", latency_ms=1500, count=None)
    notes = Notes()
    with anyio.fail_after(20):
        began = time.monotonic()
        result = await client.call_tool("execute", {"prompt": "hi", "model": MODEL}, progress_callback=notes)
        returned = time.monotonic()
    assert structured(result)["content"] and returned - began >= 1.5
    assert notes.seen, "no keep-alive progress arrived"
    assert all(KEEPALIVE.fullmatch(m) for m in notes.messages)
    first_at = notes.seen[0][2]
    assert first_at - began < 1.0 and first_at < returned
    assert 2 <= len(notes.seen) <= 8


async def test_a_slow_supervisors_review_gets_keep_alive_progress_too(
    client: Client, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer comes at once and the supervisor takes 1.5 s: keep-alive notes go out during the review as
    during the answer (the review ran without them, and a host's timeout could fire while it ran)."""
    monkeypatch.setattr(common, "KEEPALIVE_S", 0.3)
    reviewer = "openai/gpt-4.1-nano"
    sandbox.state.faults.add(model=reviewer, kind="latency", latency_ms=1500, count=None)
    notes = Notes()
    with anyio.fail_after(20):
        began = time.monotonic()
        arguments = {"prompt": "hi", "model": MODEL, "supervisor": reviewer, "cache": "off"}
        result = await client.call_tool("execute", arguments, progress_callback=notes)
        returned = time.monotonic()
    out = structured(result)
    assert out["supervision"] is not None and returned - began >= 1.5, out.get("supervision_error")
    assert notes.seen and all(KEEPALIVE.fullmatch(m) for m in notes.messages)
    assert 2 <= len(notes.seen) <= 8


async def test_over_stdio_streamed_progress_is_complete_and_in_order_once_the_racing_notes_land(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Over a real pipe, progress notifications race the result: after a short settle every note is there,
    numbered 1..n in arrival order, and the text notes concatenate to the answer."""
    sandbox.state.config.stream_chunk_delay_ms = 5
    notes = Notes()
    with anyio.fail_after(30):
        async with Client(stdio_params(server_env(tmp_path, sandbox.base_url), tmp_path)) as client:
            result = await client.call_tool(
                "execute",
                {"prompt": "Tell me a story", "model": "gpt-4o-mini", "stream": True},
                progress_callback=notes,
            )
            out = structured(result)
            for _ in range(40):
                if notes.text() == out["content"]:
                    break
                await anyio.sleep(0.025)
    assert notes.text() == out["content"] and len(notes.seen) >= 3
    assert [progress for progress, _, _ in notes.seen] == list(range(1, len(notes.seen) + 1))


async def test_cancelling_execute_over_stdio_closes_the_upstream_stream_and_bills_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A client that gives up (move_on_after) sends notifications/cancelled; the server drops the upstream
    request, the sandbox sees the connection closed mid-stream, nothing is billed, and the session keeps
    working."""
    sandbox.state.config.stream_chunk_delay_ms = 500  # the whole answer would take about 5 s
    notes = Notes()
    with anyio.fail_after(40):
        async with Client(stdio_params(server_env(tmp_path, sandbox.base_url), tmp_path)) as client:
            with anyio.move_on_after(1.5) as scope:
                await client.call_tool(
                    "execute",
                    {"prompt": "Tell me a long story", "model": "gpt-4o-mini", "stream": True},
                    progress_callback=notes,
                )
            assert scope.cancelled_caught, "execute finished before it could be cancelled"
            for _ in range(60):
                if sandbox.state.ledger and sandbox.state.ledger[-1].client_disconnected:
                    break
                await anyio.sleep(0.05)
            entry = sandbox.state.ledger[-1]
            budget = structured(await client.call_tool("get_budget", {}))
            again = structured(await client.call_tool("list_models", {"limit": 1}))
    assert entry.stream and entry.client_disconnected, "the sandbox never saw the client go away"
    assert entry.finish_reason is None and sandbox.state.billed_total() == 0
    assert notes.seen, "the stream had started before the cancellation"
    assert Decimal(str(budget["spent_today"])) == 0 and again["models"]


async def test_a_cancelled_execute_keeps_its_hold_until_openrouters_record_says_what_it_cost(
    client: Client, sandbox: Sandbox
) -> None:
    """A client cancels execute mid-stream, after the answer began: it may be billed, so its hold stays
    until the server has read the generation's record (billed nothing here); then nothing is reserved."""
    sandbox.state.config.stream_chunk_delay_ms = 300
    with anyio.fail_after(20):
        with anyio.move_on_after(0.6):
            await client.call_tool("execute", {"prompt": "A long story", "model": MODEL, "stream": True})
        await anyio.sleep(0.2)
        held = Decimal(str(structured(await client.call_tool("get_budget", {}))["reserved"]))
        for _ in range(100):
            budget = structured(await client.call_tool("get_budget", {}))
            if Decimal(str(budget["reserved"])) == 0:
                break
            await anyio.sleep(0.1)
    assert sandbox.state.ledger[-1].client_disconnected
    assert held > 0 and Decimal(str(budget["reserved"])) == 0
    assert Decimal(str(budget["spent_today"])) == sandbox.state.billed_total()
