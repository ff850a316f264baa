"""MCP over real stdio: `execute` round trips against an empty tool's (the protocol floor), and the
cold start of `modelyard serve` to its first answered `tools/list`.

    python -m bench.bench_mcp            # 3 rounds x 300 calls per kind, 11 cold starts; writes bench/RESULTS.md
    python -m bench.bench_mcp --smoke

Both servers are child processes spoken to by the SDK's `Client` over stdio, from one client
process, one call at a time. modelyard's server has a fresh SQLite store and the sandbox process
as its upstream. Kinds: the empty server's `noop` (on the SDK's stdio transport, the floor, and on
modelyard's); `execute` answered from the response cache
(`cache: "on"`, the same prompt again); `execute` sent upstream every time (`cache: "off"`); the
empty server's `pass_through`, the same prompt posted to the sandbox with aiohttp and its text
returned (a thin pass-through server, on modelyard's transport as `execute` is).
Cold start: from spawning the process to the answer of the first `tools/list` (which needs the
initialize handshake first); `python -c pass` and the empty server give the floors.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from bench.common import (
    KEY,
    MODEL,
    ROOT,
    fmt,
    machine,
    machine_line,
    parser,
    percentile,
    publish,
    sandbox_process,
    table,
)

NAME = "mcp"
PROMPT = "Say hello in five words."
FLOOR = "empty `noop`"
SAME_TRANSPORT = "empty `noop`, on modelyard's stdio transport"
PASS_THROUGH = "pass-through tool on modelyard's transport: the prompt posted upstream with aiohttp, the text back"
UPSTREAM = "`execute`, upstream"


def _params(args: list[str], env: dict[str, str]) -> Any:
    from mcp import StdioServerParameters

    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ROOT))


def _env(home: Path, url: str | None = None) -> dict[str, str]:
    import os

    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "PYTHONPATH": str(ROOT)}
    if url is not None:
        env |= {
            "OPENROUTER_BASE_URL": url,
            "OPENROUTER_API_KEY": KEY,
            "MODELYARD_STORE": f"sqlite:///{home / 'ledger.db'}",
        }
    return env


async def _series(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        result = await call()
        samples.append((time.perf_counter() - began) * 1000)
        if getattr(result, "is_error", False):
            raise RuntimeError(f"tool error: {result.content}")
    return samples


async def round_trips(url: str, n: int, rounds: int, home: Path) -> dict[str, list[float]]:
    from mcp import Client

    execute = {"prompt": PROMPT, "model": MODEL, "max_tokens": 16}
    names = (FLOOR, SAME_TRANSPORT, "`execute`, cache hit", UPSTREAM, PASS_THROUGH)
    kinds: dict[str, list[float]] = {name: [] for name in names}
    async with (
        Client(_params(["-m", "bench.empty_server"], _env(home))) as empty,
        Client(_params(["-m", "bench.empty_server", "--modelyard-stdio"], _env(home, url))) as empty_on_ours,
        Client(_params(["-m", "modelyard", "serve"], _env(home, url))) as modelyard,
    ):
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            FLOOR: lambda: empty.call_tool("noop", {}),
            SAME_TRANSPORT: lambda: empty_on_ours.call_tool("noop", {}),
            "`execute`, cache hit": lambda: modelyard.call_tool("execute", {**execute, "cache": "on"}),
            UPSTREAM: lambda: modelyard.call_tool("execute", {**execute, "cache": "off"}),
            PASS_THROUGH: lambda: empty_on_ours.call_tool("pass_through", execute),
        }
        for call in calls.values():  # warm up: imports, catalog, connections, the cached answer
            await _series(call, 20)
        names = list(calls)
        for index in range(rounds):
            for name in names[index % len(names) :] + names[: index % len(names)]:
                kinds[name] += await _series(calls[name], n)
    return kinds


async def cold_start(args: list[str], env: dict[str, str]) -> float:
    from mcp import Client

    began = time.perf_counter()
    async with Client(_params(args, env)) as client:
        await client.list_tools()
        elapsed = time.perf_counter() - began
    return elapsed * 1000


def _python_floor() -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return (time.perf_counter() - began) * 1000


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    n, rounds, starts = (10, 1, 1) if args.smoke else (300, 3, 11)
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-mcp-") as tmp, sandbox_process() as sandbox:
        home = Path(tmp)
        kinds = anyio.run(round_trips, sandbox.url, n, rounds, home)
        colds: dict[str, list[float]] = {"`python -c pass`": [], "empty server": [], "`modelyard serve`": []}
        for index in range(starts):
            colds["`python -c pass`"].append(_python_floor())
            colds["empty server"].append(anyio.run(cold_start, ["-m", "bench.empty_server"], _env(home)))
            fresh = home / f"cold-{index}"
            fresh.mkdir()
            colds["`modelyard serve`"].append(
                anyio.run(cold_start, ["-m", "modelyard", "serve"], _env(fresh, sandbox.url))
            )
    floor = percentile(kinds[FLOOR], 50)
    rows = [
        [name, fmt(percentile(v, 50)), fmt(percentile(v, 99)), f"{percentile(v, 50) - floor:+.2f}"]
        for name, v in kinds.items()
    ]
    cold_rows = [[name, fmt(statistics.median(v), 0), fmt(min(v), 0), fmt(max(v), 0)] for name, v in colds.items()]
    figures = {
        "machine": machine(),
        "round_trips": {name: {"p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99)} for name, v in kinds.items()},
        "cold_start_ms": {name: statistics.median(v) for name, v in colds.items()},
    }
    body = "\n".join(
        [
            machine_line(machine()),
            "",
            f"Round trips over stdio, {n * rounds} calls per kind ({rounds} round(s), kinds alternating), ms. "
            "The empty tool is an `async def` (a plain `def` tool runs in a worker thread, which is no floor); "
            "`execute` asks for 16 tokens from the sandbox as its upstream. `modelyard serve` runs on its own "
            "stdio transport (`modelyard.server.stdio`: non-blocking pipes, no worker-thread hop per line); the "
            "empty server runs on the SDK's (the floor the targets use) and, in its own rows, on modelyard's. Every "
            "server runs with `modelyard serve`'s garbage-collector settings (`tune_gc`).",
            "",
            table(["call", "p50 ms", "p99 ms", "p50 over the empty tool"], rows),
            "",
            f"`execute` sent upstream over the pass-through tool on the same transport (what the existing OpenRouter "
            "MCP servers do; no selection, fallback, budget, ledger or cost): "
            f"{percentile(kinds[UPSTREAM], 50) - percentile(kinds[PASS_THROUGH], 50):+.2f} ms at p50.",
            "",
            f"Cold start to the first answered `tools/list`, {starts} start(s) each (a fresh store each time), ms:",
            "",
            table(["process", "median", "min", "max"], cold_rows),
        ]
    )
    publish(args, NAME, "MCP over stdio: round trips and cold start", body, figures)


if __name__ == "__main__":
    main()
