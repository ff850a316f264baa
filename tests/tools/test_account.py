"""`get_budget`, `set_budget`, `get_metrics` and `test_connection` (tools/account.py): where each limit comes
from, what a change is logged as, and a store that does not answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from mcp import Client

from modelyard.sandbox import Sandbox
from modelyard.server import build_server
from modelyard.settings import BudgetSettings, Settings
from modelyard.store.base import Store
from tests.tools.calls import answer, refusal
from tests.tools.conftest import KEY

pytestmark = pytest.mark.anyio

TINY = "0.000000000000000000000000000001"  # 1e-30, as every message writes it
_REDIS_DOWN = "redis://:hunter2pass@127.0.0.1:1/0"  # port 1: nothing listens there


@pytest.fixture
async def configured(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Client]:
    """A client of a server whose operator configured a daily limit of $10 (MODELYARD_BUDGET__DAILY=10)."""
    settings = Settings(
        openrouter_api_key=KEY,
        openrouter_base_url=sandbox.base_url,
        store=f"sqlite:///{tmp_path / 'account.db'}",
        budget=BudgetSettings(daily=Decimal(10)),
    )
    async with Client(build_server(settings)) as client:
        yield client


async def test_get_budget_says_a_limit_in_force_was_set_at_run_time_and_what_is_configured(configured: Client) -> None:
    """An agent set daily 0.5 over the operator's 10: the $0.5 came with no hint why."""
    await answer(configured, "set_budget", daily=0.5)
    out = await answer(configured, "get_budget")
    daily = out["sources"]["daily"]
    assert (out["daily"], daily["in_force"], daily["source"]) == (0.5, 0.5, "run-time")
    assert (daily["configured"], daily["tightened"]) == (10, 0.5) and daily["tightened_at"].endswith("Z")
    per_request = out["sources"]["per_request"]
    assert (per_request["source"], per_request["configured"], per_request["tightened"]) == ("none", None, None)


async def test_each_set_budget_is_logged_at_warning_with_the_change_and_the_client(
    configured: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="modelyard.routing.budget"):
        await answer(configured, "set_budget", daily=0.5)
    (record,) = [r for r in caplog.records if r.name == "modelyard.routing.budget"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("budget tightened at run time by MCP client '")
    assert record.getMessage().endswith(": daily $10 -> $0.5")


async def test_raising_a_limit_an_agent_lowered_is_refused_in_plain_digits_naming_the_reset(client: Client) -> None:
    """It said `$1E-30`, and to raise MODELYARD_BUDGET__PER_REQUEST, which no one had set."""
    await answer(client, "set_budget", per_request=1e-30)
    message = await refusal(client, "set_budget", per_request=1)
    assert f"per_request is ${TINY}, so $1 would raise it" in message and "E-30" not in message
    assert "`modelyard budget --reset`" in message and "MODELYARD_BUDGET__" not in message


async def test_execute_refused_by_a_per_request_limit_an_agent_set_names_the_reset(
    client: Client, sandbox: Sandbox
) -> None:
    """ "Only the operator can raise the per_request budget (MODELYARD_BUDGET__PER_REQUEST)" would not help:
    none was configured."""
    await answer(client, "set_budget", per_request=1e-30)
    message = await refusal(client, "execute", prompt="hi")
    assert f"above the per-request cap ${TINY} (the per_request budget)" in message
    assert "`modelyard budget --reset`" in message and "MODELYARD_BUDGET__PER_REQUEST" not in message
    assert sandbox.state.ledger == []


async def test_test_connection_reports_a_limit_no_paid_model_can_answer_under(client: Client) -> None:
    await answer(client, "set_budget", per_request=1e-30)
    problems = (await answer(client, "test_connection"))["problems"]
    (budget,) = [p for p in problems if p.startswith("Budget: ")]
    assert (
        f"the per_request limit is ${TINY}, below $" in budget and "every request to a paid model is refused" in budget
    )
    assert "`modelyard budget --reset`" in budget


async def test_with_the_store_down_the_account_tools_say_which_store_and_what_to_check(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis that went away after the server opened it: get_metrics, get_budget and set_budget answered a bare
    "Error executing tool get_metrics" where execute gave the reason."""
    from modelyard.store.redis import RedisStore

    async def opened_then_gone(url: str) -> Store:
        return RedisStore(_REDIS_DOWN)

    monkeypatch.setattr("modelyard.store.open_store_async", opened_then_gone)
    settings = Settings(openrouter_api_key=KEY, openrouter_base_url=sandbox.base_url, store=_REDIS_DOWN)
    async with Client(build_server(settings)) as client:
        for tool, arguments in (("get_metrics", {}), ("get_budget", {}), ("set_budget", {"daily": 1})):
            message = await refusal(client, tool, **arguments)
            assert "The Redis store at redis://:***@127.0.0.1:1/0 does not answer" in message, (tool, message)
            assert "MODELYARD_STORE" in message and "hunter2pass" not in message
