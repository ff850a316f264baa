"""Soak: tens of thousands of requests through one server process: memory, file descriptors and the cache stay
bounded."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from modelyard.sandbox import Sandbox
from tests.reliability.harness import Figures, by_size, fd_targets, read_store, rss_kib, stdio_server, text_of
from tests.server.conftest import server_env

pytestmark = [pytest.mark.anyio, pytest.mark.reliability]

KEY = "sk-or-v1-soak"
MAX_ENTRIES = 200  # the cache's bound in this test (MODELYARD_CACHE__MAX_ENTRIES)
HOT = 50  # cacheable prompts asked again and again (hits), among ever new ones that keep the cache evicting
MODELS = ["openai/gpt-4o-mini", "mistralai/mistral-nemo", "meta-llama/llama-3.1-8b-instruct"]


@dataclass(frozen=True)
class Soak:
    requests: int
    concurrency: int = 16
    warmup_share: float = 0.2
    deadline_s: float = 900.0


def _arguments(index: int) -> dict[str, Any]:
    """Half not cacheable (sampled); half cacheable (temperature 0): 60% from a hot set, 40% never seen before."""
    if index % 2:
        model = MODELS[index % len(MODELS)]
        return {"prompt": f"Soak {index}: a haiku about rivers.", "model": model, "max_tokens": 40}
    turn = index // 2
    prompt = f"Hot {turn % HOT}" if turn % 10 < 6 else f"Cold {turn}"
    return {"prompt": prompt, "model": MODELS[0], "max_tokens": 40, "temperature": 0}


@pytest.mark.parametrize("size", by_size(Soak(requests=4000), Soak(requests=20_000)))
async def test_one_process_serves_a_long_run_with_flat_memory_no_fd_growth_and_a_bounded_cache(
    size: Soak, tmp_path: Path
) -> None:
    """RSS grows < 10% after warm-up, open fds do not grow, and the cache never holds more than max_entries."""
    samples: list[tuple[int, int, int, int]] = []  # (requests done, RSS KiB, open fds, of which sockets)
    errors: list[str] = []
    cached = [0]
    async with Sandbox.running(api_key=KEY) as sandbox:
        env = server_env(tmp_path, sandbox.base_url, key=KEY, MODELYARD_CACHE__MAX_ENTRIES=str(MAX_ENTRIES))
        began = time.monotonic()
        with anyio.fail_after(size.deadline_s):
            async with stdio_server(env, tmp_path, tmp_path / "server.log") as server:
                done = [0]
                next_index = [0]
                warmup = int(size.requests * size.warmup_share)

                async def worker() -> None:
                    while next_index[0] < size.requests:
                        index = next_index[0]
                        next_index[0] += 1
                        result = await server.client.call_tool("execute", _arguments(index))
                        if result.is_error or result.structured_content is None:
                            errors.append(text_of(result))
                        elif result.structured_content["cached"]:
                            cached[0] += 1
                        done[0] += 1

                async def sampler() -> None:
                    while done[0] < size.requests:
                        if done[0] >= warmup:
                            samples.append(_sample(done[0], server.pid))
                        await anyio.sleep(0.25)

                async with anyio.create_task_group() as group:
                    group.start_soon(sampler)
                    async with anyio.create_task_group() as load:
                        for _ in range(size.concurrency):
                            load.start_soon(worker)
                await anyio.sleep(0.5)  # let the last connections settle back into the pool
                samples.append(_sample(done[0], server.pid))
                elapsed = time.monotonic() - began
                bounded = await _cache_is_bounded(server.client)
        rows = read_store(tmp_path / "s.db", "SELECT COUNT(*), SUM(cache_hit) FROM ledger")[0]

    after_warmup, at_end = samples[0], samples[-1]
    growth = (at_end[1] - after_warmup[1]) / after_warmup[1]
    Figures(
        "soak",
        {
            "requests": size.requests,
            "concurrency": size.concurrency,
            "rps": round(size.requests / elapsed, 1),
            "cache_hits": cached[0],
            "errors": len(errors),
            "rss_after_warmup_kib": after_warmup[1],
            "rss_end_kib": at_end[1],
            "rss_max_kib": max(s[1] for s in samples),
            "rss_growth_pct": round(growth * 100, 2),
            "fds_after_warmup": after_warmup[2],
            "socket_fds_max": max(s[3] for s in samples),
            "fds_end": at_end[2],
            "fds_max": max(s[2] for s in samples),
            "fd_trace": [s[2] for s in samples][:: max(1, len(samples) // 20)],
            "ledger_rows": rows[0],
            "wall_s": round(elapsed, 1),
        },
    ).show()
    assert errors == [], errors[:3]
    assert growth < 0.10, (after_warmup, at_end)
    # Files and pipes: exactly the same set all along. Sockets: the upstream pool, never more than the requests
    # in flight (plus the event loop's own pair and a spare), however long the run.
    assert len({s[2] - s[3] for s in samples}) == 1, [(s[2], s[3]) for s in samples]
    assert max(s[3] for s in samples) <= size.concurrency + 3, [s[3] for s in samples]
    assert cached[0] > 0 and bounded
    assert rows[0] >= size.requests


def _sample(done: int, pid: int) -> tuple[int, int, int, int]:
    targets = fd_targets(pid)
    return done, rss_kib(pid), len(targets), sum(1 for target in targets if ":socket:" in target)


async def _cache_is_bounded(client: Any) -> bool:
    """Fill the cache with MAX_ENTRIES + 50 new entries: the first 50 were evicted, the last 50 are still held."""
    fresh = [
        {"prompt": f"Probe {i}", "model": MODELS[0], "max_tokens": 20, "temperature": 0}
        for i in range(MAX_ENTRIES + 50)
    ]
    for arguments in fresh:
        await client.call_tool("execute", arguments)
    first = [(await client.call_tool("execute", a)).structured_content for a in fresh[:50]]
    last = [(await client.call_tool("execute", a)).structured_content for a in fresh[-50:]]
    return all(r is not None and not r["cached"] for r in first) and all(r is not None and r["cached"] for r in last)
