"""The client's connections, against the sandbox over loopback with the default transport.

Against OpenRouter a new connection is a new TLS handshake, tens of milliseconds before the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from modelyard.openrouter import ChatRequest, OpenRouterClient
from modelyard.sandbox import Sandbox, SandboxConfig

pytestmark = pytest.mark.anyio
KEY = "sk-or-v1-sandbox"
REQUEST = ChatRequest(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Tell me a story"}])


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    # Events a few ms apart, as a real model sends them.
    async with Sandbox.running(api_key=KEY, config=SandboxConfig(stream_chunk_delay_ms=3)) as sb:
        yield sb


async def test_plain_answers_in_a_row_share_one_connection(sandbox: Sandbox) -> None:
    """Five non-streamed answers: the sandbox accepts one connection."""
    async with OpenRouterClient(KEY, base_url=sandbox.base_url) as client:
        for _ in range(5):
            await client.chat(REQUEST)
    assert sandbox.state.connections == 1


async def test_a_stream_abandoned_midway_closes_its_connection_so_the_upstream_stops(sandbox: Sandbox) -> None:
    """Leaving a stream after its first chunk closes the connection; the next request opens another."""
    async with OpenRouterClient(KEY, base_url=sandbox.base_url) as client:
        await client.chat(REQUEST)
        stream = client.stream_chat(REQUEST)
        async for _ in stream:
            break
        await stream.aclose()
        await client.chat(REQUEST)
    assert sandbox.state.connections == 2
