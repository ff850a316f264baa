"""Every tool through the in-memory MCP Client, against a sandbox over loopback."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from mcp import Client

from modelyard.errors import ModelyardError
from modelyard.sandbox import Sandbox
from modelyard.server import build_server
from modelyard.server.context import AppContext
from modelyard.settings import Settings
from modelyard.tools import TOOL_NAMES
from modelyard.tools.account import _connection
from tests.tools.calls import answer, refusal
from tests.tools.conftest import KEY

pytestmark = pytest.mark.anyio


def _settings(sandbox: Sandbox, tmp_path: Path, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "openrouter_api_key": KEY,
        "openrouter_base_url": sandbox.base_url,
        "store": f"sqlite:///{tmp_path / 'tools.db'}",
        **overrides,
    }
    return Settings(**fields)


_call, _error = answer, refusal


async def test_the_nine_tools_are_listed_with_schemas_and_read_only_hints(client: Client) -> None:
    """tools/list names exactly the DESIGN §2 tools; read tools carry readOnlyHint."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == set(TOOL_NAMES)
    for name in ("list_models", "get_metrics", "get_budget", "plan_route", "test_connection"):
        assert tools[name].annotations is not None and tools[name].annotations.read_only_hint
    assert all(t.output_schema for t in tools.values())
    assert "model" in tools["execute"].input_schema["properties"]


async def test_every_parameter_of_every_tool_is_described_for_the_agent(client: Client) -> None:
    """An agent reads only the schema: `temperature`, `seed` and six of `plan_route`'s parameters had no
    description, and `plan_route`'s shared ones must say what `execute`'s say."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    undescribed = [
        f"{tool.name}.{name}"
        for tool in tools.values()
        for name, schema in tool.input_schema.get("properties", {}).items()
        if not schema.get("description")
    ]
    assert undescribed == []
    execute, plan = (tools[name].input_schema["properties"] for name in ("execute", "plan_route"))
    assert all(plan[name]["description"] == execute[name]["description"] for name in plan)


async def test_plan_route_takes_executes_arguments_as_they_are(client: Client) -> None:
    """A refusal says "plan_route with the same arguments lists the models and why": since unknown arguments
    are refused, plan_route must take every argument execute takes (it refused `cache` and `temperature`)."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    execute, plan = (set(tools[name].input_schema["properties"]) for name in ("execute", "plan_route"))
    assert execute <= plan
    arguments = {"prompt": "hi", "model": "gpt-4o-mini", "temperature": 0, "top_p": 0.9, "stop": ["\n"],
                 "seed": 1, "stream": True, "cache": "off", "timeout_s": 30, "supervisor": "economy"}  # fmt: skip
    out = await _call(client, "plan_route", **arguments)
    assert [c["model"] for c in out["candidates"]] == ["openai/gpt-4o-mini"]


async def test_plan_route_refuses_an_unknown_supervisor_as_execute_does(client: Client) -> None:
    """It takes execute's arguments to show what execute would do: execute refuses this supervisor."""
    for tool in ("plan_route", "execute"):
        assert "'nonexistent-model-xyz' is not a known model" in await refusal(
            client, tool, prompt="hi", supervisor="nonexistent-model-xyz"
        )


async def test_output_schemas_are_inline_and_the_real_results_fit_them(client: Client) -> None:
    """No `$ref` for a validating client to chase, and what execute and plan_route return still validates."""
    import jsonschema

    tools = {t.name: t for t in (await client.list_tools()).tools}
    for tool in tools.values():
        assert "$ref" not in json.dumps(tool.output_schema), tool.name
    for name, arguments in (("execute", {"prompt": "hi", "model": "gpt-4o-mini"}), ("plan_route", {"prompt": "hi"})):
        jsonschema.validate(await _call(client, name, **arguments), tools[name].output_schema or {})


async def test_execute_hands_back_reasoning_details_that_fit_its_output_schema(client: Client) -> None:
    """A reasoning answer's `reasoning_details` come back (to be sent back on the next assistant turn),
    published in the output schema and valid against it, streamed or not."""
    import jsonschema

    tools = {t.name: t for t in (await client.list_tools()).tools}
    schema = tools["execute"].output_schema or {}
    assert "send back unchanged" in schema["properties"]["reasoning_details"]["description"]
    for stream in (False, True):
        arguments = {"model": "claude-haiku-4.5", "reasoning": {"effort": "low"}, "stream": stream, "cache": "off"}
        out = await _call(client, "execute", prompt="Why is the sky blue?", **arguments)
        jsonschema.validate(out, schema)
        assert out["reasoning_details"] and out["reasoning_details"][0]["type"] == "reasoning.text"
        assert out["reasoning_details"][0]["text"] == out["reasoning"]


async def test_execute_answers_with_model_usage_exact_cost_and_attempts(client: Client, sandbox: Sandbox) -> None:
    """execute returns the DESIGN §2 fields; cost equals what the sandbox billed."""
    out = await _call(client, "execute", prompt="Say hi", model="gpt-4o-mini")
    for field in (
        "content",
        "tool_calls",
        "model",
        "requested_model",
        "provider",
        "finish_reason",
        "usage",
        "cost",
        "cost_source",
        "cached",
        "latency_ms",
        "attempts",
        "selection",
    ):
        assert field in out
    assert Decimal(str(out["cost"])) == sandbox.state.ledger[-1].cost
    assert out["requested_model"] == "gpt-4o-mini" and out["attempts"][0]["outcome"] == "ok"


async def test_execute_with_messages_system_and_an_image_url(client: Client) -> None:
    """Images imply vision: the chosen model can see."""
    out = await _call(
        client,
        "execute",
        messages=[{"role": "user", "content": "Describe"}],
        system="Be brief",
        images=["https://example.com/cat.png"],
    )
    plan = await _call(client, "plan_route", prompt="Describe", images=["https://example.com/cat.png"])
    assert plan["required_capabilities"] == ["vision"] and out["resolved_model"] in [
        c["model"] for c in plan["candidates"]
    ]


async def test_a_local_image_is_read_only_under_an_allowed_directory(client: Client, tmp_path: Path) -> None:
    """A file under the allowed dir becomes a data URI; a path elsewhere is refused with what to do."""
    picture = tmp_path / "dot.png"
    picture.write_bytes(
        base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
        )
    )
    assert (await _call(client, "execute", prompt="What is it?", images=[str(picture)]))["content"]
    message = await _error(client, "execute", prompt="x", images=["/etc/passwd"])
    assert "outside the allowed directories" in message


async def test_mistakes_come_back_as_tool_errors_that_say_what_to_change(client: Client) -> None:
    """Unknown model, no prompt, bad capability: each is_error with an actionable message."""
    assert "did you mean" in await _error(client, "execute", prompt="x", model="gpt-4o-mnii")
    assert "Give either 'prompt'" in await _error(client, "execute")
    assert "capabilities" in await _error(client, "execute", prompt="x", capabilities=["telepathy"])
    assert "max_cost_per_1k" in await _error(client, "execute", prompt="x", max_cost_per_1k=-1)


async def test_legacy_functions_are_translated_to_tools(client: Client) -> None:
    """functions + function_call work like tools + tool_choice."""
    functions = [
        {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}
    ]
    out = await _call(client, "execute", prompt="find cats", functions=functions, function_call={"name": "lookup"})
    assert out["tool_calls"][0]["function"]["name"] == "lookup"


async def test_plan_route_ranks_and_explains_without_spending(client: Client, sandbox: Sandbox) -> None:
    """plan_route lists candidates with worst-case cost and exclusions with reasons; nothing is sent."""
    plan = await _call(client, "plan_route", prompt="x", capabilities=["tools"], max_cost_per_1k=0.001)
    assert plan["candidates"] and plan["excluded_total"] > 0 and plan["estimated_cost"] is not None
    assert plan["no_candidates_reason"] is None
    assert sandbox.state.ledger == []


async def test_plan_route_with_no_model_left_returns_the_empty_plan_and_why_not_an_error(
    client: Client, sandbox: Sandbox
) -> None:
    """An agent asks plan_route why a request would fail: it gets the plan, not the error execute gives."""
    arguments = {"prompt": "Say hi", "max_cost": "0.0005", "model": "premium"}
    plan = await _call(client, "plan_route", **arguments)
    assert plan["candidates"] == [] and plan["excluded"] and plan["estimated_cost"] is None
    assert "above the per-request cap $0.0005 (the request's max_cost)" in plan["no_candidates_reason"]
    refused = await _error(client, "execute", **arguments)
    assert "No model meets the constraints" in refused and "raise max_cost to at least $" in refused
    assert sandbox.state.ledger == []


async def test_compare_models_answers_on_each_model_and_a_judge_picks_one(client: Client) -> None:
    """Two models answer in parallel; the judge names one of them."""
    out = await _call(
        client,
        "compare_models",
        prompt="Name a colour",
        models=["gpt-4o-mini", "meta-llama/llama-3.1-8b-instruct"],
        judge="economy",
    )
    assert [a["label"] for a in out["answers"]] == ["gpt-4o-mini", "meta-llama/llama-3.1-8b-instruct"]
    assert all(a["result"]["content"] for a in out["answers"]) and out["total_cost"] is not None
    assert out["judge"] is not None


async def test_compare_models_with_perspectives_is_a_swarm_of_system_prompts(client: Client) -> None:
    """One model, three perspectives: three answers."""
    out = await _call(
        client,
        "compare_models",
        prompt="Plan a trip",
        models=["gpt-4o-mini"],
        perspectives=["a cautious planner", "a thrill seeker", "an accountant"],
    )
    assert len(out["answers"]) == 3


async def test_execute_batch_runs_independent_tasks_and_reports_each(client: Client, sandbox: Sandbox) -> None:
    """A bad task fails alone; the others answer."""
    out = await _call(
        client,
        "execute_batch",
        tasks=[{"prompt": "one", "model": "gpt-4o-mini"}, {"prompt": "two"}, {"prompt": "three", "model": "nope/nope"}],
    )
    assert (out["succeeded"], out["failed"]) == (2, 1) and "nope/nope" in out["results"][2]["error"]


async def test_list_models_filters_sorts_and_shows_prices_per_million(client: Client) -> None:
    """Filters by capability and price; prices are per 1M tokens."""
    out = await _call(client, "list_models", capabilities=["vision", "tools"], max_cost_per_1k=0.001, sort="price")
    ids = [m["id"] for m in out["models"]]
    assert ids and out["total"] == len(ids)
    mini = next(m for m in out["models"] if m["id"] == "openai/gpt-4o-mini")
    assert Decimal(str(mini["prompt_per_1m"])) == Decimal("0.15")
    prices = [Decimal(str(m["prompt_per_1m"])) + Decimal(str(m["completion_per_1m"])) for m in out["models"]]
    assert prices == sorted(prices)


async def test_budget_can_be_tightened_but_never_raised(client: Client) -> None:
    """set_budget lowers a limit; raising it afterwards is refused."""
    assert (await _call(client, "get_budget"))["daily"] is None
    out = await _call(client, "set_budget", daily=1.5)
    assert Decimal(str(out["daily"])) == Decimal("1.5")
    assert "only tighten" in await _error(client, "set_budget", daily=10)
    assert "at least one" in await _error(client, "set_budget")


async def test_a_limit_too_large_for_the_budget_arithmetic_is_refused_and_breaks_nothing(client: Client) -> None:
    """`1e9999999` used to be stored, after which every budget check and every execute crashed, in every
    later session on that store, until the operator reset it."""
    assert "less than or equal to 1000000000" in await _error(client, "set_budget", daily="1e9999999")
    assert (await _call(client, "get_budget"))["daily"] is None
    await _call(client, "execute", prompt="hi", model="gpt-4o-mini")


async def test_a_budget_refusal_says_what_is_left_and_the_estimate(client: Client, sandbox: Sandbox) -> None:
    """With a tiny daily budget, execute is refused before anything is sent."""
    await _call(client, "set_budget", daily=0.000001)
    message = await _error(client, "execute", prompt="hello", model="gpt-4o-mini")
    assert "daily" in message and "left" in message and sandbox.state.ledger == []


async def test_get_metrics_reports_requests_spend_and_models(client: Client) -> None:
    """After one execute, metrics count it with its cost."""
    done = await _call(client, "execute", prompt="hi", model="gpt-4o-mini")
    metrics = await _call(client, "get_metrics", window="today")
    assert metrics["total_requests"] == 1 and Decimal(str(metrics["total_cost"])) == Decimal(str(done["cost"]))
    assert metrics["by_model"][0]["calls"] == 1 and metrics["budget"] is not None


async def test_test_connection_reports_sandbox_key_catalog_and_store(client: Client) -> None:
    """The sandbox is recognised, the key is valid, and the catalog and store are healthy."""
    out = await _call(client, "test_connection")
    assert out["sandbox"] and out["key_valid"] and out["store_healthy"] and out["catalog_models"] >= 25
    assert out["problems"] == []


async def test_test_connection_reports_the_accounts_credit_beside_the_keys_own_limit(
    client: Client, sandbox: Sandbox
) -> None:
    """The sandbox's key has no limit of its own (`credit_remaining` null): the account's credit bounds it."""
    out = await _call(client, "test_connection")
    assert out["credit_remaining"] is None
    assert Decimal(str(out["account_credit_remaining"])) == Decimal(100) - sandbox.state.billed_total()


async def test_test_connection_leaves_the_accounts_credit_null_when_the_key_may_not_read_it(
    client: Client, sandbox: Sandbox
) -> None:
    """`/credits` answers an ordinary key 403 since 2026: unknown, and no problem of the setup."""
    sandbox.state.config.credits_need_management_key = True
    out = await _call(client, "test_connection")
    assert out["account_credit_remaining"] is None and out["key_valid"] and out["problems"] == []


async def test_test_connection_names_the_store_without_its_password() -> None:
    """A store URL may carry Redis's password: the report's problem names the store without it. (A base URL
    with credentials is refused when the settings load.)"""
    settings = Settings(store="redis://:hunter3@127.0.0.1:9/0")

    async def no_catalog() -> None:
        raise ModelyardError("no catalog")

    async def unhealthy() -> bool:
        return False

    app = SimpleNamespace(
        settings=settings,
        client=SimpleNamespace(has_key=False),
        store=SimpleNamespace(healthy=unhealthy),
        router=SimpleNamespace(catalogs=SimpleNamespace(current=no_catalog)),
    )
    report = await _connection(cast(AppContext, app))
    assert "store redis://:***@127.0.0.1:9/0 does not answer" in report.problems
    assert "hunter" not in report.model_dump_json()


async def test_without_a_key_list_models_works_and_execute_says_how_to_set_one(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """No key: the catalog still answers; execute explains OPENROUTER_API_KEY and the sandbox."""
    settings = _settings(sandbox, tmp_path, openrouter_api_key=None)
    async with Client(build_server(settings)) as client:
        assert (await _call(client, "list_models"))["total"] > 0
        message = await _error(client, "execute", prompt="hi", model="gpt-4o-mini")
    assert "OPENROUTER_API_KEY" in message and "sandbox" in message


async def test_a_rejected_key_is_a_tool_error_that_points_at_the_key_and_test_connection_says_it_is_invalid(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A key the upstream does not know: execute refuses naming OPENROUTER_API_KEY (never the key itself),
    and test_connection reports it invalid with the same words."""
    wrong = "sk-or-v1-not-the-sandboxs-key-0123456789"
    settings = _settings(sandbox, tmp_path, openrouter_api_key=wrong)
    async with Client(build_server(settings)) as client:
        message = await _error(client, "execute", prompt="hi", model="gpt-4o-mini")
        report = await _call(client, "test_connection")
    said = "OpenRouter rejected the API key (401 User not found.): check OPENROUTER_API_KEY"
    assert message == f"Error executing tool execute: {said}" and wrong not in message
    assert report["key_valid"] is False and report["problems"] == [f"/key: {said}"]


async def test_a_base_url_without_api_v1_is_reported_by_test_connection_as_the_base_url_not_the_key(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Every path under the sandbox's bare origin is a 404 that is not OpenRouter's: /key and the catalog
    both say to check OPENROUTER_BASE_URL, and the key is not called invalid (it was never checked)."""
    origin = sandbox.base_url.removesuffix("/api/v1")
    settings = _settings(sandbox, tmp_path, openrouter_base_url=origin)
    async with Client(build_server(settings)) as client:
        report = await _call(client, "test_connection")
    assert report["key_valid"] is None
    assert report["problems"][0] == (
        f"/key: The upstream answered 404 Not Found at {origin}/key, which is not an OpenRouter API path: "
        "check OPENROUTER_BASE_URL (it should end in /api/v1, e.g. https://openrouter.ai/api/v1)"
    )
    assert "check OPENROUTER_BASE_URL" in report["problems"][1]


async def test_supervisor_reviews_the_answer_and_both_calls_are_billed(client: Client, sandbox: Sandbox) -> None:
    """A supervisor call follows the primary; supervision shows its verdict and the total cost."""
    out = await _call(client, "execute", prompt="2+2?", model="economy", supervisor="premium")
    review = out["supervision"]
    assert review["model"] and len(sandbox.state.ledger) == 2
    assert Decimal(str(review["total_cost"])) == sandbox.state.billed_total()
