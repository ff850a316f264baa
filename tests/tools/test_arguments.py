"""Arguments a tool does not declare: refused by name with the closest real one, never dropped unread."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from mcp import Client

from modelyard.sandbox import Sandbox
from modelyard.tools import TOOL_NAMES
from tests.tools.calls import answer, refusal

pytestmark = pytest.mark.anyio

_VALID: dict[str, dict[str, Any]] = {
    "execute": {"prompt": "hi"},
    "plan_route": {"prompt": "hi"},
    "compare_models": {"prompt": "hi", "models": ["gpt-4o-mini", "meta-llama/llama-3.1-8b-instruct"]},
    "execute_batch": {"tasks": [{"prompt": "hi"}]},
    "set_budget": {"daily": 1},
}


async def test_a_misspelt_cost_cap_is_refused_naming_the_real_one_before_anything_is_spent(
    client: Client, sandbox: Sandbox
) -> None:
    """`max_cost_usd` was dropped unread and the request ran uncapped on gpt-5.5 ($0.00082)."""
    message = await refusal(client, "execute", prompt="q", model="gpt-5.5", max_cost_usd=0.00001)
    assert message == "Error executing tool execute: unknown argument 'max_cost_usd'; did you mean 'max_cost'?"
    assert sandbox.state.request_count == 0


@pytest.mark.parametrize("tool", TOOL_NAMES)
async def test_every_tool_refuses_an_argument_it_does_not_declare(client: Client, sandbox: Sandbox, tool: str) -> None:
    """Each of the nine tools, given its valid arguments and one more, says which one it does not know."""
    message = await refusal(client, tool, **_VALID.get(tool, {}), colour="blue")
    assert f"Error executing tool {tool}: unknown argument 'colour'" in message
    assert sandbox.state.request_count == 0


async def test_an_unknown_argument_with_no_close_name_lists_the_tools_arguments(client: Client) -> None:
    """Nothing like `fallbacks`: the message lists what execute takes; a tool that takes none says so."""
    message = await refusal(client, "execute", prompt="q", fallbacks=["gpt-4o"])
    assert "unknown argument 'fallbacks'; the arguments are prompt, messages, system, model, models," in message
    message = await refusal(client, "test_connection", verbose=True)
    assert message.endswith("unknown argument 'verbose'; this tool takes no arguments.")


async def test_every_unknown_argument_is_named_not_only_the_first(client: Client) -> None:
    message = await refusal(client, "execute", prompt="q", maxTokens=10, temprature=0)
    assert "unknown argument 'maxTokens'; did you mean 'max_tokens'?" in message
    assert "unknown argument 'temprature'; did you mean 'temperature'?" in message


async def test_a_batch_tasks_unknown_field_refuses_the_batch_naming_the_task_before_anything_runs(
    client: Client, sandbox: Sandbox
) -> None:
    """A task's misspelt cap would have run the task uncapped: the batch is refused, naming it (0-based)."""
    tasks = [{"prompt": "a"}, {"prompt": "b", "model": "gpt-4o-mini", "max_cost_usd": 1e-06}]
    message = await refusal(client, "execute_batch", tasks=tasks)
    assert message.endswith("unknown argument 'tasks.1.max_cost_usd'; did you mean 'tasks.1.max_cost'?")
    assert sandbox.state.request_count == 0


async def test_a_batch_sent_as_json_text_is_checked_as_well(client: Client, sandbox: Sandbox) -> None:
    """Some hosts send a list argument as JSON text, which the SDK parses: its tasks are held to the same rule."""
    tasks = json.dumps([{"prompt": "a", "max_tokns": 5}])
    message = await refusal(client, "execute_batch", tasks=tasks)
    assert message.endswith("unknown argument 'tasks.0.max_tokns'; did you mean 'tasks.0.max_tokens'?")
    assert sandbox.state.request_count == 0


async def test_open_objects_keep_their_keys(client: Client) -> None:
    """Chat messages, JSON schemas and tool definitions are the caller's to shape: their keys are not checked."""
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    out = await answer(
        client,
        "execute_batch",
        tasks=[
            {
                "messages": [{"role": "user", "content": "A colour", "name": "ann"}],
                "model": "gpt-4o-mini",
                "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
            }
        ],
    )
    assert out["succeeded"] == 1, out["results"]


async def test_every_input_schema_says_it_takes_no_other_argument(client: Client) -> None:
    """A client that validates before calling refuses the unknown names itself (`additionalProperties: false`)."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert all(tool.input_schema["additionalProperties"] is False for tool in tools.values())
    execute, batch = tools["execute"].input_schema, tools["execute_batch"].input_schema
    jsonschema.validate({"prompt": "q", "max_cost": 0.1}, execute)
    with pytest.raises(jsonschema.ValidationError, match="max_cost_usd"):
        jsonschema.validate({"prompt": "q", "max_cost_usd": 0.1}, execute)
    with pytest.raises(jsonschema.ValidationError, match="max_cost_usd"):
        jsonschema.validate({"tasks": [{"prompt": "q", "max_cost_usd": 0.1}]}, batch)
