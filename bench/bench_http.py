"""Non-streaming throughput and latency, side by side: raw aiohttp, raw httpx2 (default limits, tuned
limits, aiohttp transport), LiteLLM's Router and modelyard's Router, against one sandbox process.

    python -m bench.bench_http            # full size: 3 rounds, writes bench/RESULTS.md
    python -m bench.bench_http --smoke    # tiny, proves it works

Scenarios (the issue's): c=1 x 500 sequential (p50, p99); c=200 x 2,000 (throughput, p99); c=200 x
2,000 with 50 ms upstream latency (throughput). Each contender runs in a fresh interpreter (so one
library's background tasks or imports never slow another), one after the other, in rounds; the
table shows the median of the rounds. The sandbox's own CPU use is sampled during each scenario: a
sandbox near 100% of a core is the ceiling every contender shares.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

from bench.common import (
    SandboxProcess,
    fmt,
    machine,
    machine_line,
    median,
    run_load,
    table,
)
from bench.contenders import DESCRIPTIONS, factory, run_rounds, run_side_by_side, side_by_side_parser
from modelyard.server.tuning import tune_gc

NAME = "http"
CONTENDERS = (
    "aiohttp",
    "httpx2",
    "httpx2-tuned",
    "httpx2+aiohttp",
    "httpx2+AiohttpTransport",
    "litellm",
    "modelyard",
    "modelyard[httpx2-tuned]",
    "modelyard[aiohttp]",
)
# scenario: (requests, concurrency, upstream latency ms, idle ms before each request)
FULL: dict[str, tuple[int, ...]] = {
    "c1": (500, 1, 0, 0),
    "c200": (2000, 200, 0, 0),
    "c200_lat50": (2000, 200, 50, 0),
    "c1_idle": (300, 1, 0, 3),
}
SMOKE: dict[str, tuple[int, ...]] = {
    "c1": (10, 1, 0, 0),
    "c200": (40, 20, 0, 0),
    "c200_lat50": (40, 20, 50, 0),
    "c1_idle": (10, 1, 0, 3),
}


# ---------------------------------------------------------------------------------------- worker


async def _worker(name: str, url: str, sandbox_pid: int, scenarios: dict[str, list[int]]) -> dict[str, Any]:
    sandbox = SandboxProcess(url, sandbox_pid)
    out: dict[str, Any] = {}
    async with factory(name)(url) as call:
        tune_gc()  # every contender's process gets `modelyard serve`'s collector settings
        for scenario, (n, concurrency, latency_ms, *idle) in scenarios.items():
            idle_ms = idle[0] if idle else 0  # `bench.ab` gives older revisions' workers three fields
            # Headers and body in one write after the latency, as in every run before the sandbox learned to
            # send a non-streamed answer's headers first: figures stay comparable from run to run.
            sandbox.reset(default_latency_ms=latency_ms, headers_first=False)
            await run_load(call, n=max(concurrency, min(n, 50)), concurrency=concurrency)  # warm the pool
            cpu, sb_cpu = time.process_time(), sandbox.cpu_s()
            result = await run_load(call, n=n, concurrency=concurrency, idle_s=idle_ms / 1000)
            cpu, sb_cpu = time.process_time() - cpu, sandbox.cpu_s() - sb_cpu
            figures = result.figures()
            figures["client_cpu_us_per_req"] = cpu / max(1, n) * 1e6
            figures["sandbox_cpu_share"] = sb_cpu / result.wall_s if result.wall_s else math.nan
            out[scenario] = figures
        router = getattr(call, "router", None)
        if router is not None:  # prove the ledger got a row for every request
            out["ledger_rows"] = len(await router.store.rows())
    sandbox.reset()
    return out


def worker_main(args: argparse.Namespace) -> None:
    import anyio

    scenarios = json.loads(args.scenarios)
    result = anyio.run(_worker, args.worker, args.url, args.sandbox_pid, scenarios)
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------- parent


def measure(contenders: list[str], sizes: dict[str, tuple[int, ...]], rounds: int) -> dict[str, Any]:
    """Each contender's figures per scenario: the medians of `rounds` runs, each in a fresh interpreter."""
    runs = run_rounds("bench.bench_http", contenders, "scenarios", sizes, rounds)
    return {name: _medians(name_runs) for name, name_runs in runs.items()}


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"rounds": len(runs)}
    for scenario in runs[0]:
        if not isinstance(runs[0][scenario], dict):
            merged[scenario] = [r[scenario] for r in runs]
            continue
        merged[scenario] = {key: median([r[scenario][key] for r in runs]) for key in runs[0][scenario] if key != "n"}
        merged[scenario]["n"] = runs[0][scenario]["n"]
        merged[scenario]["rounds_rps"] = [r[scenario]["rps"] for r in runs]
    return merged


def _get(result: dict[str, Any], scenario: str, key: str) -> float:
    value = result.get(scenario, {}).get(key, math.nan)
    return float(value)


def _idle_slowdown(results: dict[str, Any]) -> str:
    """How much slower each contender's c=1 p50 was after the idle wait, as text."""
    ratios = [
        f"{name} {idle / hot:.1f}x"
        for name, r in results.items()
        if (hot := _get(r, "c1", "p50_ms")) > 0 and not math.isnan(idle := _get(r, "c1_idle", "p50_ms"))
    ]
    return "p50 after the wait over back to back: " + (", ".join(ratios) or "not measured")


def render(results: dict[str, Any], skipped: dict[str, list[str]], sizes: dict[str, Any], rounds: int) -> str:
    info = machine()
    n1 = sizes.get("c1", (0,))[0]
    n200, c200 = sizes.get("c200", (0, 200))[:2]
    nlat = sizes.get("c200_lat50", (0,))[0]
    nidle, idle_ms = sizes.get("c1_idle", (0, 1, 0, 0))[0], sizes.get("c1_idle", (0, 1, 0, 0))[3]
    header = [
        "client",
        f"c=1 p50 ms (n={n1})",
        "c=1 p99 ms",
        f"c={c200} req/s (n={n200})",
        f"c={c200} p99 ms",
        f"c={c200} +50 ms req/s (n={nlat})",
        f"c=1 p50 ms, {idle_ms} ms idle before each (n={nidle})",
        "client CPU µs/req (c=1)",
        f"client CPU µs/req (c={c200})",
        f"sandbox CPU share (c={c200})",
    ]
    rows = []
    for name, r in results.items():
        share = _get(r, "c200", "sandbox_cpu_share")
        rows.append(
            [
                f"**{name}**",
                fmt(_get(r, "c1", "p50_ms")),
                fmt(_get(r, "c1", "p99_ms")),
                fmt(_get(r, "c200", "rps")),
                fmt(_get(r, "c200", "p99_ms")),
                fmt(_get(r, "c200_lat50", "rps")),
                fmt(_get(r, "c1_idle", "p50_ms")),
                fmt(_get(r, "c1", "client_cpu_us_per_req")),
                fmt(_get(r, "c200", "client_cpu_us_per_req")),
                "-" if math.isnan(share) else f"{share:.0%}",
            ]
        )
    notes = [f"- {name}: {DESCRIPTIONS[name]}" for name in results]
    notes += [f"- {name}: **skipped**, not installed: {', '.join(dists)}" for name, dists in skipped.items()]
    errors = [
        f"{n} {s}: {r[s]['errors']:.0f} errors" for n, r in results.items() for s in sizes if r.get(s, {}).get("errors")
    ]
    ledger = [f"{n}: {rows_}" for n, r in results.items() if (rows_ := r.get("ledger_rows"))]
    spread = [f"{n}: " + ", ".join(fmt(v) for v in r["c200"]["rounds_rps"]) for n, r in results.items() if "c200" in r]
    return "\n".join(
        [
            machine_line(info),
            "",
            f"One sandbox process (`python -m modelyard.sandbox`, pure Python on h11) serves every contender; "
            f"each contender runs in its own interpreter, one after another, {rounds} round(s) in rotating "
            "order; figures are the medians of the rounds. Every contender's process runs with the garbage-collector "
            "settings `modelyard serve` uses (`modelyard.server.tuning.tune_gc`: what startup built frozen, the "
            "young generation collected every 20,000 net allocations). Each scenario starts with an untimed warm-up "
            "that fills the connection pool. 0 ms upstream latency unless stated. Client CPU is the "
            "contender's own process time per request (all its threads); the sandbox CPU share is the "
            "sandbox process's CPU time over the run's wall time (100% = one core saturated: the "
            "ceiling every contender shares). The idle column is c=1 with the event loop left idle for "
            f"{idle_ms} ms (untimed) before each request, as a server waits between its clients' calls: a process "
            f"that has just been idle runs the same code more slowly here ({_idle_slowdown(results)}), which the "
            "back-to-back c=1 column never shows (and which every MCP round trip, three processes taking turns, pays).",
            "",
            table(header, rows),
            "",
            *notes,
            "",
            "Per-round c=200 req/s (the noise): " + ("; ".join(spread) or "-") + ".",
            "",
            "Ledger rows after each modelyard run (warm-ups + measured requests, every one recorded): "
            + ("; ".join(str(x) for x in ledger) or "-")
            + ".",
            "",
            "Errors: " + ("; ".join(errors) if errors else "none") + ".",
        ]
    )


def main() -> None:
    p = side_by_side_parser(__doc__.splitlines()[0], "scenarios", CONTENDERS)
    p.add_argument("--scenario", nargs="*", default=None, choices=list(FULL), help="scenarios (default all)")
    args = p.parse_args()
    if args.worker:
        worker_main(args)
        return
    title = "Upstream HTTP: throughput and latency, side by side"
    sizes = {k: v for k, v in (SMOKE if args.smoke else FULL).items() if not args.scenario or k in args.scenario}
    run_side_by_side(args, name=NAME, title=title, sizes=sizes, default=CONTENDERS, measure=measure, render=render)


if __name__ == "__main__":
    main()
