"""Fixtures for the sandbox tests: a running sandbox and an authenticated client on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from modelyard.sandbox import Sandbox, SandboxConfig

KEY = "sk-or-v1-sandbox"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """A sandbox on a free loopback port with the packaged catalog and caching from 0 tokens."""
    async with Sandbox.running(config=SandboxConfig(cache_threshold=0)) as sb:
        yield sb


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[httpx2.AsyncClient]:
    """An httpx2 client for the sandbox's `/api/v1`, with the right bearer key."""
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx2.AsyncClient(base_url=sandbox.base_url, headers=headers, timeout=5) as http:
        yield http


def chat(model: str = "openai/gpt-4o-mini", text: str = "Say hi in Portuguese", **extra: Any) -> dict[str, Any]:
    """A chat request body with a system prompt and one user message."""
    messages = [{"role": "system", "content": "You are a helpful assistant"}, {"role": "user", "content": text}]
    return {"model": model, "messages": messages, **extra}


def sse_blocks(raw: bytes) -> list[str]:
    """The blocks of an event stream, split on blank lines (comments included)."""
    return [block for block in raw.decode("utf-8").split("\n\n") if block]


def sse_data(raw: bytes) -> list[dict[str, Any]]:
    """The JSON payloads of an event stream's `data:` lines, `[DONE]` left out."""
    blocks = [block[len("data: ") :] for block in sse_blocks(raw) if block.startswith("data: ")]
    return [json.loads(block) for block in blocks if block != "[DONE]"]
