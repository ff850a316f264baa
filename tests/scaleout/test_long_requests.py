"""An answer that streams for longer than its budget hold's lifetime, on an instance sharing Redis: the hold
is renewed while the answer runs, so another instance cannot spend the money, and once the instance dies
its hold expires as it always did."""

from __future__ import annotations

import signal
import time
from decimal import Decimal
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from modelyard.store.redis import RedisStore
from tests.scaleout.fleet import Sandbox, fleet_instances, server_env, structured, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
ROOT = Path(__file__).resolve().parents[2]

DAILY = Decimal("0.0015")
LONG = {
    "prompt": "Explain the history of tea",
    "model": "openai/gpt-5.5",
    "max_tokens": 30,
    "reasoning": {"effort": "high"},
}  # a worst case of $0.001165: one fits the day, two do not


async def test_a_long_answer_keeps_another_instance_out_until_its_instance_is_killed(
    sandbox: Sandbox, store: str, tmp_path: Path
) -> None:
    """Holds live 1 s; the answer streams for ~9 s on instance A. At 2 s instance B refuses the same request
    (A's hold was renewed); A is then killed, its hold expires within a second or so, and B answers."""
    env = server_env(
        tmp_path,
        sandbox.base_url,
        store,
        MODELYARD_BUDGET__DAILY=str(DAILY),
        MODELYARD_REQUEST_TIMEOUT_S="1",
        MODELYARD_MAX_ATTEMPTS="1",
        MODELYARD_RESERVATION_MARGIN_S="0",
        PYTHONPATH=str(ROOT),  # the servers run this tree's modelyard, wherever the venv's install points
    )
    (await sandbox.http.post(f"{sandbox.control}/config", json={"stream_chunk_delay_ms": 300})).raise_for_status()
    with anyio.fail_after(90):
        async with fleet_instances(env, tmp_path) as (instances, (_, b)), RedisStore(store) as redis:
            victim = instances[0]
            started = anyio.Event()

            async def long_answer_on_a() -> None:
                """Through a client of its own: the instance's death tears it down (an exception group)."""
                try:
                    async with (
                        httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=60)) as http,
                        Client(streamable_http_client(victim.url, http_client=http)) as client,
                    ):
                        started.set()
                        await client.call_tool("execute", {**LONG, "stream": True})
                except Exception:
                    pass  # killed mid-answer, as meant

            async with anyio.create_task_group() as group:
                group.start_soon(long_answer_on_a)
                await started.wait()
                await anyio.sleep(2.0)  # twice the hold's lifetime
                assert (await redis.totals(now=time.time())).reserved > 0
                refused = await b.call_tool("execute", LONG)
                assert refused.is_error and "daily" in text_of(refused), text_of(refused)
                victim.process.send_signal(signal.SIGKILL)
                await victim.process.wait()
            killed_at = time.monotonic()
            with anyio.fail_after(5):
                while (await redis.totals(now=time.time())).reserved:  # noqa: ASYNC110 - polls Redis
                    await anyio.sleep(0.1)
            expired_within = time.monotonic() - killed_at
            answered = structured(await b.call_tool("execute", LONG))
            spent = Decimal(str(structured(await b.call_tool("get_budget", {}))["spent_today"]))
    assert expired_within < 2.5, f"the dead instance's hold took {expired_within:.1f} s to expire"
    assert answered["content"] and spent <= DAILY
