"""Every real recorded OpenRouter exchange goes through the client and parses."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from modelyard.openrouter import ChatRequest, OpenRouterClient
from tests.conftest import FIXTURES, shared_fixture

RECORDINGS = sorted((FIXTURES / "recordings").glob("*.yaml")) if FIXTURES.exists() else []


def _interactions(path: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load(path.read_text())["interactions"])


def _replaying(interaction: dict[str, Any]) -> httpx2.MockTransport:
    response = interaction["response"]
    headers = {name: values[0] for name, values in (response.get("headers") or {}).items()}

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(response["code"], headers=headers, content=response["body"].encode())

    return httpx2.MockTransport(handler)


def test_the_recordings_folder_is_present_or_the_suite_says_why() -> None:
    """The recordings are found beside the checkout (or the test skips with the reason)."""
    folder = shared_fixture("recordings")
    assert len(list(folder.glob("*.yaml"))) >= 18


@pytest.mark.anyio
@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
async def test_every_recorded_answer_parses_through_the_client(path: Path) -> None:
    """Each recorded request body is a valid ChatRequest and each answer parses, with its usage and cost."""
    for interaction in _interactions(path):
        body = json.loads(interaction["request"]["body"])
        request = ChatRequest.model_validate(body)
        async with OpenRouterClient(
            "sk-or-v1-test", base_url="https://openrouter.test/api/v1", transport=_replaying(interaction)
        ) as client:
            if body.get("stream"):
                chunks = [chunk async for chunk in client.stream_chat(request)]
                usage = next(c.usage for c in reversed(chunks) if c.usage is not None)
                assert any(c.finish_reason for c in chunks)
            else:
                answer = await client.chat(request)
                usage = answer.usage
                assert answer.model and answer.provider and answer.id.startswith("gen-")
                assert answer.choices[0].finish_reason in {"stop", "tool_calls", "length"}
        assert usage is not None and usage.cost is not None and usage.cost > Decimal(0)
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.anyio
@pytest.mark.parametrize("path", [p for p in RECORDINGS if "tool" in p.stem], ids=lambda p: p.stem)
async def test_recorded_tool_calls_reassemble_into_valid_json_arguments(path: Path) -> None:
    """Tool-call fragments (streamed or whole) join into arguments that are JSON objects."""
    interaction = _interactions(path)[0]
    body = json.loads(interaction["request"]["body"])
    async with OpenRouterClient("sk-or-v1-test", transport=_replaying(interaction)) as client:
        if body.get("stream"):
            arguments: dict[int, str] = {}
            async for chunk in client.stream_chat(ChatRequest.model_validate(body)):
                for choice in chunk.choices:
                    for call in choice.delta.tool_calls or []:
                        key = call.index or 0
                        arguments[key] = arguments.get(key, "") + call.function.arguments
            texts = list(arguments.values())
        else:
            answer = await client.chat(ChatRequest.model_validate(body))
            texts = [call.function.arguments for call in answer.choices[0].message.tool_calls or []]
    assert texts and all(isinstance(json.loads(text), dict) for text in texts)
