"""What the Redis store adds to each request compared with SQLite, measured side by side in one run.

    python -m bench.redis_store            # N=2,000 pairs per row; writes bench/RESULTS.md
    python -m bench.redis_store --smoke    # tiny, proves it works

One "request" is what every routed call costs the store: a budget reservation (`reserve`, checked
against daily and monthly limits) and its settlement (`commit` of the ledger row). Both stores run
the same pairs in the same process, sequentially and at concurrency 50, each after a warm-up at the
same concurrency. SQLite is a WAL file in a temporary folder (the embedded default); Redis is the
`--redis-url` given, else `$TEST_REDIS_URL`, else a private `redis-server` started on a free loopback
port for the run (no persistence), in a namespace of its own that is deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio

from bench.common import LoadResult, fmt, machine, machine_line, parser, percentile, publish, run_load, table
from modelyard.store import BudgetLimits, LedgerRow, SQLiteStore, Store
from modelyard.store.redis import RedisStore

NAME = "redis_store"
TITLE = "Store: Redis vs SQLite"
LIMITS = BudgetLimits(daily=Decimal("1000000"), monthly=Decimal("1000000"))
COST = Decimal("0.00001255")
STORES = ("SQLite (WAL file)", "Redis (loopback TCP)")


async def _pair(store: Store) -> None:
    """One request's store work: hold a worst case, then commit the actual cost with its ledger row."""
    reservation = await store.reserve(COST * 8, LIMITS, now=time.time(), ttl_s=600)
    row = LedgerRow(id=uuid.uuid4().hex, ts=time.time(), requested_model="auto", model="openai/gpt-4o-mini", cost=COST)
    await store.commit(reservation.id, row)


async def _measure(store: Store, pairs: int, concurrency: int) -> LoadResult:
    """`pairs` reserve+commit pairs from `concurrency` tasks, after a warm-up at the same concurrency."""
    await run_load(lambda: _pair(store), n=min(pairs, 10 * concurrency), concurrency=concurrency)
    return await run_load(lambda: _pair(store), n=pairs, concurrency=concurrency)


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    """`url`, or a private redis-server on a free loopback port for the duration of the block."""
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit(
            "No Redis: pass --redis-url, set TEST_REDIS_URL, or install redis-server (apt-get install redis-server)."
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with tempfile.TemporaryDirectory() as workdir:
        process = subprocess.Popen([*command, "--dir", workdir], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
                if time.monotonic() > deadline:
                    sys.exit("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


async def measure(redis_url: str, pairs: int, concurrency: int) -> dict[str, Any]:
    """Both stores, sequential then concurrent; the figures per store and mode, and Redis's version."""
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        url = f"{redis_url}?prefix=bench-{uuid.uuid4().hex[:8]}"
        async with SQLiteStore(Path(folder) / "bench.db") as sqlite_store, RedisStore(url) as redis_store:
            server = await redis_store.redis.info("server")
            try:
                for workers in (1, concurrency):
                    pair: tuple[Store, Store] = (sqlite_store, redis_store)
                    for name, store in zip(STORES, pair, strict=True):
                        result = await _measure(store, pairs, workers)
                        ms = [latency * 1000 for latency in result.latencies]
                        rows[f"{name} @ c={workers}"] = {**result.figures(), "p95_ms": percentile(ms, 95)}
            finally:
                keys = [key async for key in redis_store.redis.scan_iter(match=f"{{{redis_store.prefix}}}:*")]
                for start in range(0, len(keys), 500):
                    await redis_store.redis.delete(*keys[start : start + 500])
    return {"pairs": pairs, "concurrency": concurrency, "redis_server": server.get("redis_version"), "rows": rows}


def render(figures: dict[str, Any], info: dict[str, Any], smoke: bool) -> str:
    """The section's body: machine and versions, the table, and the added latency per request."""
    pairs, concurrency, rows = figures["pairs"], figures["concurrency"], figures["rows"]
    body = [
        machine_line(info),
        f"_Stores: redis-server {figures['redis_server']}, redis-py {version('redis')}, "
        f"SQLite {sqlite3.sqlite_version}._",
        "",
        f"`python -m bench.redis_store{' --smoke' if smoke else ''}`: {pairs:,} reserve+commit pairs per row "
        "(a hold checked against daily and monthly limits, then the ledger row committed: the store work of one "
        "routed request), after a warm-up at the same concurrency. Latency per pair, in ms.",
        "",
    ]
    table_rows = []
    for workers in (1, concurrency):
        for name in STORES:
            f = rows[f"{name} @ c={workers}"]
            cells = [f["p50_ms"], f["p95_ms"], f["p99_ms"], f["mean_ms"], f["rps"]]
            table_rows.append([name, "sequential" if workers == 1 else f"c={workers}", *(fmt(c, 3) for c in cells)])
    body.append(table(["store", "mode", "p50", "p95", "p99", "mean", "pairs/s"], table_rows))
    body.append("")
    for workers in (1, concurrency):
        sqlite_row, redis_row = (rows[f"{name} @ c={workers}"] for name in STORES)
        mode = "sequential" if workers == 1 else f"at concurrency {workers}"
        p50, p95 = (redis_row[k] - sqlite_row[k] for k in ("p50_ms", "p95_ms"))
        body.append(
            f"- Added latency per request, {mode}: {p50:+.3f} ms at p50, {p95:+.3f} ms at p95 (Redis minus SQLite)."
        )
    return "\n".join(body)


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, run both stores, print and record the section."""
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=2000, help="reserve+commit pairs per row (default 2,000)")
    p.add_argument("--concurrency", type=int, default=50, help="tasks of the concurrent rows (default 50)")
    p.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL"), help="an existing Redis to use")
    args = p.parse_args(argv)
    pairs, concurrency = (60, 5) if args.smoke else (args.pairs, args.concurrency)
    with redis_server(args.redis_url) as url:
        figures = anyio.run(measure, url, pairs, concurrency)
    info = machine()
    publish(args, NAME, TITLE, render(figures, info, args.smoke), {"machine": info, **figures})


if __name__ == "__main__":
    main()
