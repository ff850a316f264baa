"""In-process costs: selection over the 414-model catalog, and `Router.execute` answered from the cache.

    python -m bench.bench_inprocess            # 5,000 timed calls each; writes bench/RESULTS.md
    python -m bench.bench_inprocess --smoke

Selection is `modelyard.routing.selection.select` on the August 2026 snapshot of OpenRouter's
catalog (`../shared/fixtures/openrouter/models-2026-08-19.json`; the sandbox's small built-in
catalog when that folder is absent), for `model="auto"` (every model filtered and scored), for auto
under a per-request cost cap (`max_cost`, passed as the router passes it: every model's worst case
held to the cap), and for a named model. The cache hit is `await router.execute(request)` on a
request answered before, with the SQLite ledger on (the hit's ledger row is committed before
`execute` returns).
"""

from __future__ import annotations

import json
import statistics
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

from bench.common import (
    FIXTURE_414,
    MESSAGES,
    MODEL,
    fmt,
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

NAME = "inprocess"


def _catalog() -> tuple[Any, str]:
    from modelyard.openrouter.catalog_schemas import ModelList
    from modelyard.routing.catalog import Catalog

    if FIXTURE_414.exists():
        models = ModelList.model_validate_json(FIXTURE_414.read_bytes()).data
        source = f"`{FIXTURE_414.name}` ({len(models)} models)"
    else:
        import modelyard.sandbox as sandbox_pkg

        raw = json.loads((Path(sandbox_pkg.__file__).parent / "catalog.json").read_text())
        models = ModelList.model_validate({"data": raw["data"] if isinstance(raw, dict) else raw}).data
        source = f"the sandbox's built-in catalog ({len(models)} models; the 414-model fixture is absent)"
    return Catalog(models, fetched_at=time.time()), source


def _timed(call: Any, n: int) -> list[float]:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        began = clock()
        call()
        samples.append((clock() - began) / 1000)
    return samples


def measure_selection(n: int) -> dict[str, Any]:
    from modelyard.routing.request import RouteRequest
    from modelyard.routing.selection import SelectionDefaults, select

    catalog, source = _catalog()
    tune_gc()  # as `modelyard serve` runs
    defaults = SelectionDefaults()
    now = time.time()
    cases = {
        "auto (rank every model)": RouteRequest(messages=MESSAGES),
        "auto, tools + max_cost_per_1k 0.01": RouteRequest(
            messages=MESSAGES,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            max_cost_per_1k=Decimal("0.01"),
        ),
        "auto, max_cost 0.05 (worst cases held to the cap)": RouteRequest(messages=MESSAGES, max_cost=Decimal("0.05")),
        f"named model ({MODEL})": RouteRequest(messages=MESSAGES, model=MODEL, max_tokens=16),
    }
    out: dict[str, Any] = {"catalog": source, "cases": {}}
    for label, request in cases.items():

        def call(r: Any = request) -> Any:
            return select(catalog, r, defaults=defaults, cost_cap=r.max_cost, now=now)

        plan = call()
        _timed(call, max(10, n // 10))  # warm
        samples = _timed(call, n)
        out["cases"][label] = {
            "p50_us": percentile(samples, 50),
            "p99_us": percentile(samples, 99),
            "mean_us": statistics.fmean(samples),
            "candidates": len(plan.candidates),
            "excluded": len(plan.exclusions),
        }
    return out


async def measure_cache_hit(url: str, n: int) -> dict[str, Any]:
    from modelyard.routing.request import RouteRequest

    async with modelyard_router(url) as router:
        request = RouteRequest(messages=MESSAGES, model=MODEL, max_tokens=16, cache="on")
        first = await router.execute(request)
        assert not first.cached
        clock = time.perf_counter_ns
        for _ in range(max(10, n // 10)):
            await router.execute(request)
        tune_gc()
        samples = []
        for _ in range(n):
            began = clock()
            result = await router.execute(request)
            samples.append((clock() - began) / 1000)
        assert result.cached
        rows = await router.store.rows()
        fresh = []  # the same, building the request each time (as the MCP tool does)
        for _ in range(n):
            began = clock()
            await router.execute(RouteRequest(messages=MESSAGES, model=MODEL, max_tokens=16, cache="on"))
            fresh.append((clock() - began) / 1000)
    return {
        "p50_us": percentile(samples, 50),
        "p99_us": percentile(samples, 99),
        "mean_us": statistics.fmean(samples),
        "with_request_p50_us": percentile(fresh, 50),
        "ledger_rows": len(rows),
        "expected_rows": 1 + max(10, n // 10) + n,
    }


def render(selection: dict[str, Any], hit: dict[str, Any], n: int) -> str:
    rows = [
        [label, fmt(c["p50_us"], 1), fmt(c["p99_us"], 1), fmt(c["mean_us"], 1), str(c["candidates"]),
         str(c["excluded"])]
        for label, c in selection["cases"].items()
    ]  # fmt: skip
    hit_rows = [
        ["`execute` on a cached request (request built once)", fmt(hit["p50_us"], 1), fmt(hit["p99_us"], 1),
         fmt(hit["mean_us"], 1)],
        ["the same, building the `RouteRequest` each call", fmt(hit["with_request_p50_us"], 1), "-", "-"],
    ]  # fmt: skip
    return "\n".join(
        [
            machine_line(machine()),
            "",
            f"Selection over {selection['catalog']}: `select()` alone, {n:,} timed calls per case, µs.",
            "",
            table(["request", "p50 µs", "p99 µs", "mean µs", "candidates", "excluded"], rows),
            "",
            f"Cache hit in-process, {n:,} timed calls, µs (SQLite ledger on: every hit's row is committed "
            f"before `execute` returns; {hit['ledger_rows']:,} rows for {hit['expected_rows']:,} calls "
            "before the last series):",
            "",
            table(["call", "p50 µs", "p99 µs", "mean µs"], hit_rows),
        ]
    )


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    n = 50 if args.smoke else 5000
    selection = measure_selection(n)
    with sandbox_process() as sandbox:
        hit = anyio.run(measure_cache_hit, sandbox.url, n)
    body = render(selection, hit, n)
    publish(args, NAME, "In-process: selection and cache hit", body, {"machine": machine(), "n": n,
            "selection": selection, "cache_hit": hit})  # fmt: skip


if __name__ == "__main__":
    main()
