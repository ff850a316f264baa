"""Long conversations: what a prompt's size costs each client, side by side, at c=1.

    python -m bench.bench_long            # full size: 3 rounds, writes bench/RESULTS.md
    python -m bench.bench_long --smoke    # tiny, proves it works

An agent's context grows with every turn: tens to hundreds of KB of messages per request. Each
contender sends the same conversation (40 turns after a system message, mostly ASCII with one
non-ASCII character a turn) to one sandbox process, sequentially; modelyard builds its
`RouteRequest` each call, as the MCP `execute` tool does. "modelyard, cache hit" asks with
`cache="on"`: the first call fills the cache and every timed one is a hit (its ledger row committed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from bench.common import (
    MODEL,
    SandboxProcess,
    fmt,
    machine,
    machine_line,
    median,
    run_load,
    table,
)
from bench.contenders import (
    DESCRIPTIONS,
    PROMPT,
    Call,
    factory,
    modelyard_router,
    run_rounds,
    run_side_by_side,
    side_by_side_parser,
)
from modelyard.server.tuning import tune_gc

NAME = "long"
CONTENDERS = ("aiohttp", "httpx2", "litellm", "modelyard", "modelyard, cache hit")
# conversation size in KB -> requests timed at c=1
FULL: dict[str, int] = {"1": 200, "32": 200, "128": 200}
SMOKE: dict[str, int] = {"2": 5, "16": 5}  # "16" sorts before "2" as text: the largest is found by value
_WORDS = [
    "the",
    "of",
    "model",
    "answer",
    "token",
    "budget",
    "route",
    "cache",
    "ledger",
    "stream",
    "fallback",
    "provider",
    "context",
]


def conversation(kb: int, seed: int = 7) -> list[dict[str, Any]]:
    """A system message and 40 alternating turns of about `kb` KB in all (the same text for a given size)."""
    rng = random.Random(seed + kb)
    turn_chars = max(1, kb * 1024 // 40)
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a careful assistant."}]
    for index in range(40):
        words: list[str] = []
        length = 0
        while length < turn_chars:
            words.append(rng.choice(_WORDS))
            length += len(words[-1]) + 1
        # One non-ASCII character a turn, as real text has: the checks then scan it as Unicode, the slower path.
        text = " ".join(words)[: max(1, turn_chars - 2)] + " —"
        messages.append({"role": "user" if index % 2 == 0 else "assistant", "content": text})
    return messages


@contextlib.asynccontextmanager
async def _cache_hits(url: str) -> AsyncIterator[Call]:
    from modelyard.routing.request import RouteRequest

    async with modelyard_router(url) as router:

        async def call() -> str:
            request = RouteRequest(messages=PROMPT.messages, model=MODEL, max_tokens=16, cache="on")
            return str((await router.execute(request)).content)

        yield call


def _factory(name: str) -> Any:
    return _cache_hits if name == "modelyard, cache hit" else factory(name)


# ---------------------------------------------------------------------------------------- worker


async def _worker(name: str, url: str, sandbox_pid: int, sizes: dict[str, int]) -> dict[str, Any]:
    sandbox = SandboxProcess(url, sandbox_pid)
    sandbox.reset()
    out: dict[str, Any] = {}
    async with _factory(name)(url) as call:
        tune_gc()
        for kb, n in sizes.items():
            PROMPT.use(conversation(int(kb)))
            await run_load(call, n=10, concurrency=1)  # warm up (and, for the cache, fill it)
            cpu = time.process_time()
            result = await run_load(call, n=n, concurrency=1)
            figures = result.figures()
            figures["client_cpu_us_per_req"] = (time.process_time() - cpu) / max(1, n) * 1e6
            figures["body_kb"] = len(json.dumps(PROMPT.body).encode()) / 1024
            out[kb] = figures
    return out


def worker_main(args: argparse.Namespace) -> None:
    import anyio

    print(json.dumps(anyio.run(_worker, args.worker, args.url, args.sandbox_pid, json.loads(args.sizes))))


# ---------------------------------------------------------------------------------------- parent


def measure(contenders: list[str], sizes: dict[str, int], rounds: int) -> dict[str, Any]:
    """Each contender's figures per size: the medians of `rounds` runs, each in a fresh interpreter."""
    runs = run_rounds("bench.bench_long", contenders, "sizes", sizes, rounds)
    return {
        name: {kb: {key: median([r[kb][key] for r in name_runs]) for key in name_runs[0][kb]} for kb in sizes}
        for name, name_runs in runs.items()
    }


def _p50(results: dict[str, Any], name: str, kb: str) -> float:
    return float(results.get(name, {}).get(kb, {}).get("p50_ms", math.nan))


def render(results: dict[str, Any], skipped: dict[str, list[str]], sizes: dict[str, int], rounds: int) -> str:
    """The section's text: how it was measured, the table, and what each contender is."""
    kbs = list(sizes)
    largest = kbs[-1]
    body_kb = next(iter(results.values()), {}).get(largest, {}).get("body_kb", math.nan)
    header = ["client", *(f"{kb} KB p50 ms" for kb in kbs), *(f"{kb} KB over aiohttp" for kb in kbs[1:])]
    header += [f"{largest} KB p99 ms", f"client CPU µs/req ({largest} KB)"]
    rows = []
    for name, r in results.items():
        over = [
            f"{d:+.2f} ms" if not math.isnan(d := _p50(results, name, kb) - _p50(results, "aiohttp", kb)) else "-"
            for kb in kbs[1:]
        ]
        rows.append(
            [
                f"**{name}**",
                *(fmt(_p50(results, name, kb)) for kb in kbs),
                *over,
                fmt(float(r[largest]["p99_ms"])),
                fmt(float(r[largest]["client_cpu_us_per_req"]), 0),
            ]
        )
    notes = [f"- {name}: {DESCRIPTIONS.get(name, _CACHE_HIT)}" for name in results]
    notes += [f"- {name}: **skipped**, not installed: {', '.join(dists)}" for name, dists in skipped.items()]
    errors = [f"{n} {kb} KB: {r[kb]['errors']:.0f}" for n, r in results.items() for kb in kbs if r[kb].get("errors")]
    return "\n".join(
        [
            machine_line(machine()),
            "",
            f"c=1, {', '.join(f'{n:,}' for n in sizes.values())} sequential requests per size after 10 untimed, "
            f"{rounds} round(s) in rotating order, each contender in its own interpreter; medians of the rounds. "
            f"Each conversation is a system message and 40 turns ({largest} KB of messages: a {fmt(body_kb, 0)} KB "
            "JSON body); the sandbox answers 16 tokens with no added latency. The raw clients encode the body "
            "with the standard `json` module, as `json=` does.",
            "",
            table(header, rows),
            "",
            *notes,
            "",
            "Errors: " + ("; ".join(errors) if errors else "none") + ".",
        ]
    )


_CACHE_HIT = 'modelyard `Router.execute` with `cache="on"`: every timed call a hit, its ledger row committed'


def main() -> None:
    args = side_by_side_parser(__doc__.splitlines()[0], "sizes", CONTENDERS).parse_args()
    if args.worker:
        worker_main(args)
        return
    title = "Long conversations: what a prompt's size costs, side by side"
    sizes = SMOKE if args.smoke else FULL
    run_side_by_side(args, name=NAME, title=title, sizes=sizes, default=CONTENDERS, measure=measure, render=render)


if __name__ == "__main__":
    main()
