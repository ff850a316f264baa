"""Streaming time to first token, side by side: raw aiohttp, raw httpx2 and modelyard's Router.

    python -m bench.bench_stream            # 3 rounds x 200 sequential streams each; writes bench/RESULTS.md
    python -m bench.bench_stream --smoke

Time to first token: from the call until the first non-empty content delta is in the caller's
hands (raw clients: the first SSE `data:` line whose delta has content, decoded; modelyard: the
first `TextDelta` out of `Router.stream`, SQLite ledger on, cache off). The sandbox process sends
one chunk every 5 ms, so the first token and the rest are apart. Contenders alternate within each
round in one process; figures are medians over all streams.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio

from bench.common import (
    KEY,
    MESSAGES,
    MODEL,
    fmt,
    installed,
    machine,
    machine_line,
    parser,
    percentile,
    publish,
    sandbox_process,
    table,
)
from bench.contenders import modelyard_router
from modelyard.server.tuning import tune_gc

NAME = "stream"
BODY = {"model": MODEL, "messages": MESSAGES, "max_tokens": 16, "stream": True}
AUTH = {"Authorization": f"Bearer {KEY}"}
CHUNK_DELAY_MS = 5
Stream = Callable[[], Awaitable[float]]  # returns seconds to the first token; reads the whole stream


def _content(line: str) -> bool:
    if not line.startswith("data:"):
        return False
    data = line[5:].strip()
    if data == "[DONE]":
        return False
    choices = json.loads(data).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


@asynccontextmanager
async def _aiohttp(url: str) -> AsyncIterator[Stream]:
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def stream() -> float:
            began, first = time.perf_counter(), 0.0
            async with session.post(f"{url}/chat/completions", json=BODY, headers=AUTH) as response:
                async for raw in response.content:
                    if not first and _content(raw.decode()):
                        first = time.perf_counter() - began
            return first

        yield stream


@asynccontextmanager
async def _httpx2(url: str) -> AsyncIterator[Stream]:
    import httpx2

    async with httpx2.AsyncClient() as client:

        async def stream() -> float:
            began, first = time.perf_counter(), 0.0
            async with client.stream("POST", f"{url}/chat/completions", json=BODY, headers=AUTH) as response:
                async for line in response.aiter_lines():
                    if not first and _content(line):
                        first = time.perf_counter() - began
            return first

        yield stream


@asynccontextmanager
async def _modelyard(url: str) -> AsyncIterator[Stream]:
    from modelyard.routing.attempt import TextDelta
    from modelyard.routing.request import RouteRequest

    async with modelyard_router(url) as router:

        async def stream() -> float:
            began, first = time.perf_counter(), 0.0
            request = RouteRequest(messages=MESSAGES, model=MODEL, max_tokens=16)
            async for item in router.stream(request):
                if not first and isinstance(item, TextDelta) and item.text:
                    first = time.perf_counter() - began
            return first

        yield stream


@asynccontextmanager
async def _modelyard_sink(url: str) -> AsyncIterator[Stream]:
    from modelyard.routing.attempt import StreamEvent, TextDelta
    from modelyard.routing.request import RouteRequest

    async with modelyard_router(url) as router:

        async def stream() -> float:
            began, first = time.perf_counter(), 0.0

            async def sink(event: StreamEvent) -> None:
                nonlocal first
                if not first and isinstance(event, TextDelta) and event.text:
                    first = time.perf_counter() - began

            await router.execute(RouteRequest(messages=MESSAGES, model=MODEL, max_tokens=16), on_event=sink)
            return first

        yield stream


CONTENDERS: dict[str, tuple[Callable[[str], Any], tuple[str, ...], str]] = {
    "aiohttp": (_aiohttp, ("aiohttp",), "raw aiohttp, SSE lines parsed with `json.loads`"),
    "httpx2": (_httpx2, (), "raw `httpx2.AsyncClient().stream(...)`, `aiter_lines()`"),
    "modelyard": (_modelyard, (), "`Router.stream(request)`: the first `TextDelta` (SQLite ledger on)"),
    "modelyard (on_event)": (
        _modelyard_sink,
        (),
        "`Router.execute(request, on_event=sink)`, as the MCP `execute` tool streams: the first `TextDelta`",
    ),
}


async def measure(url: str, n: int, rounds: int, names: list[str]) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in names}
    async with AsyncExitStack() as stack:
        streams = {name: await stack.enter_async_context(CONTENDERS[name][0](url)) for name in names}
        for stream in streams.values():  # warm up: connections, catalog
            for _ in range(5):
                await stream()
        tune_gc()  # one process for all: each contender runs with `modelyard serve`'s collector settings
        for index in range(rounds):
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                for _ in range(n):
                    samples[name].append(await streams[name]() * 1000)
    return samples


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    n, rounds = (10, 1) if args.smoke else (200, 3)
    names = [name for name, (_, needs, _) in CONTENDERS.items() if all(installed(d) for d in needs)]
    skipped = [name for name in CONTENDERS if name not in names]
    with sandbox_process() as sandbox:
        sandbox.reset(stream_chunk_delay_ms=CHUNK_DELAY_MS)
        samples = anyio.run(measure, sandbox.url, n, rounds, names)
    figures = {
        name: {"p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99), "n": len(v)} for name, v in samples.items()
    }
    raw = figures.get("aiohttp", figures["httpx2"])["p50_ms"]
    rows = [
        [f"**{name}**", fmt(f["p50_ms"]), fmt(f["p99_ms"]), f"{f['p50_ms'] - raw:+.2f}", CONTENDERS[name][2]]
        for name, f in figures.items()
    ]
    body = "\n".join(
        [
            machine_line(machine()),
            "",
            f"Time to first token, {n * rounds} sequential streams per client ({rounds} round(s) of {n}, "
            f"contenders alternating), sandbox chunk delay {CHUNK_DELAY_MS} ms, 16 tokens per answer.",
            "",
            table(["client", "TTFT p50 ms", "TTFT p99 ms", "p50 vs aiohttp ms", "what"], rows),
            "",
            ("Skipped (not installed): " + ", ".join(skipped)) if skipped else "",
        ]
    )
    publish(args, NAME, "Streaming: time to first token", body, {"machine": machine(), "results": figures})


if __name__ == "__main__":
    main()
