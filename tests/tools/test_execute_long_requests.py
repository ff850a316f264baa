"""`execute` that outlives its budget hold's lifetime: the hold is renewed while the request runs."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from modelyard.sandbox import Sandbox
from modelyard.server import build_server
from modelyard.settings import BudgetSettings, Settings
from tests.tools.calls import answer, refusal
from tests.tools.conftest import KEY

pytestmark = pytest.mark.anyio

DAILY = Decimal("0.0015")
LONG = {"prompt": "Explain the history of tea", "model": "openai/gpt-5.5", "max_tokens": 30}
LONG_REASONING = {**LONG, "reasoning": {"effort": "high"}}


def _short_lived_holds(sandbox: Sandbox, tmp_path: Path) -> Settings:
    """Holds that live 1 s (request_timeout_s x max_attempts + margin), under a budget that fits one request."""
    return Settings(
        openrouter_api_key=KEY,
        openrouter_base_url=sandbox.base_url,
        store=f"sqlite:///{tmp_path / 'tools.db'}",
        request_timeout_s=1,
        max_attempts=1,
        reservation_margin_s=0,
        budget=BudgetSettings(daily=DAILY),
    )


async def test_a_streamed_answer_longer_than_its_holds_lifetime_keeps_the_second_request_out(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A streams for ~3 s with a 1 s hold lifetime: B, which would overshoot the daily budget, is refused
    while A runs, `get_budget` shows A's hold all along, and the final spend stays within the limit."""
    sandbox.state.config.stream_chunk_delay_ms = 100  # the answer takes about 3 s
    outcome: dict[str, Any] = {}
    async with Client(build_server(_short_lived_holds(sandbox, tmp_path))) as client:

        async def first() -> None:
            outcome["a"] = await answer(client, "execute", **LONG_REASONING, stream=True)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(first)
                await anyio.sleep(1.8)  # past the hold's first lifetime
                budget = await answer(client, "get_budget")
                assert "a" not in outcome, "the answer was meant to outlive its hold's lifetime"
                assert Decimal(str(budget["reserved"])) > 0
                message = await refusal(client, "execute", **LONG_REASONING)
                assert "daily" in message
        spent = Decimal(str((await answer(client, "get_budget"))["spent_today"]))
    assert outcome["a"]["content"] and spent <= DAILY
    assert sandbox.state.billed_total() <= DAILY
