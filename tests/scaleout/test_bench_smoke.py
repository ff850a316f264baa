"""bench/redis_store.py: the Redis-vs-SQLite store benchmark runs end to end and records its section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scaleout.redis_server import redis_url

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_smoke_run_writes_its_section_and_keeps_the_others(tmp_path: Path) -> None:
    """`--smoke` measures both stores in both modes and replaces only its own section of the results file."""
    results = tmp_path / "RESULTS.md"
    stale = "<!-- bench:redis_store -->\n## Store: Redis vs SQLite\n\nstale\n<!-- /bench:redis_store -->"
    results.write_text(f"# Benchmarks\n\n## Other\n\nkept\n\n{stale}\n\n## Later\n\nalso kept\n")
    command = [sys.executable, "-m", "bench.redis_store", "--smoke", "--results", str(results)]
    done = subprocess.run(
        [*command, "--redis-url", redis_url()], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    text = results.read_text()
    assert "stale" not in text and "kept" in text and "also kept" in text
    assert text.count("## Store: Redis vs SQLite") == 1
    section = text[text.index("## Store: Redis vs SQLite") : text.index("## Later")]
    for row in ("| SQLite (WAL file) | sequential |", "| Redis (loopback TCP) | c=5 |", "redis-server", "CPUs"):
        assert row in section
    assert "Added latency per request, sequential" in section
    figures = json.loads((tmp_path / "results" / "redis_store.json").read_text())
    assert figures["smoke"] is True and len(figures["rows"]) == 4
    assert all(row["n"] == 60 and row["errors"] == 0 for row in figures["rows"].values())
