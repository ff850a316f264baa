"""The benchmarks still run: each script at `--smoke` size writes its own section of a results file
and leaves the others alone. (The figures are meaningless at this size: `python -m bench.run_all`
measures.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OTHER = "<!-- bench:redis_store -->\n## Store: Redis vs SQLite\n\nkept as it is\n<!-- /bench:redis_store -->"


def _run(module: str, results: Path, timeout_s: float = 120) -> str:
    command = [sys.executable, "-m", module, "--smoke", "--results", str(results)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One results file that every smoke run below writes into, starting with another author's section."""
    path = tmp_path_factory.mktemp("bench") / "RESULTS.md"
    path.write_text(f"# Benchmarks\n\n{OTHER}\n")
    return path


def _section(path: Path, name: str) -> str:
    text = path.read_text()
    start, end = text.index(f"<!-- bench:{name} -->"), text.index(f"<!-- /bench:{name} -->")
    return text[start:end]


def test_the_http_benchmark_runs_every_installed_contender_side_by_side(results: Path) -> None:
    """bench_http: every contender that is installed gets a row; a missing optional one is named as skipped."""
    out = _run("bench.bench_http", results)
    section = _section(results, "http")
    for row in ("| **aiohttp** |", "| **httpx2** |", "| **modelyard** |", "CPUs", "Python"):
        assert row in section or (row == "| **aiohttp** |" and "skipping aiohttp" in out)
    figures = json.loads((results.parent / "results" / "http.json").read_text())
    assert figures["smoke"] is True
    for name, result in figures["results"].items():
        assert all(result[s]["errors"] == 0 for s in ("c1", "c200", "c200_lat50", "c1_idle")), name
    assert figures["sizes"]["c1_idle"][3] > 0  # the idle scenario waits before each request
    assert all(rows > 0 for rows in figures["results"]["modelyard"]["ledger_rows"])
    assert "litellm" in figures["results"] or "litellm" in figures["skipped"]


def test_the_long_conversation_benchmark_runs_each_size_for_every_installed_contender(results: Path) -> None:
    """bench_long: a row per contender, a column per conversation size, and no errors."""
    _run("bench.bench_long", results)
    section = _section(results, "long")
    assert "| **modelyard** |" in section and "| **modelyard, cache hit** |" in section
    figures = json.loads((results.parent / "results" / "long.json").read_text())
    sizes = sorted(figures["sizes"], key=int)
    assert len(sizes) >= 2
    for name, result in figures["results"].items():
        assert [result[kb]["errors"] for kb in sizes] == [0] * len(sizes), name
    for kb in sizes:  # each conversation is as long as it says (the JSON body adds a few KB of structure)
        assert int(kb) <= figures["results"]["modelyard"][kb]["body_kb"] <= int(kb) + 4


def test_the_streaming_mcp_and_in_process_benchmarks_run(results: Path) -> None:
    """bench_stream, bench_mcp and bench_inprocess each write their section with their figures."""
    _run("bench.bench_stream", results)
    _run("bench.bench_mcp", results)
    _run("bench.bench_inprocess", results)
    assert "| **modelyard** |" in _section(results, "stream")
    mcp = _section(results, "mcp")
    assert "`execute`, cache hit" in mcp and "`modelyard serve`" in mcp
    assert "pass-through tool" in mcp and "over the pass-through tool" in mcp
    assert "named model" in _section(results, "inprocess")


def test_the_target_table_is_built_from_the_figures_and_other_sections_are_kept(results: Path) -> None:
    """bench.targets renders a status for each target; another author's section survives every rewrite."""
    if not (results.parent / "results" / "http.json").exists():
        pytest.skip("needs the figures of the smoke runs above (run the whole module)")
    _run("bench.targets", results)
    targets = _section(results, "targets")
    assert "Smoke-sized figures" in targets and targets.count("| ") > 10
    assert "met**" in targets
    assert "ms of idle before each request" in targets  # the idle note under the table
    assert "with a 16 KB conversation" in targets  # the largest smoke size, not the last as text
    assert "thin pass-through tool" in targets
    text = results.read_text()
    assert OTHER in text and text.count("<!-- bench:http -->") == 1


def test_the_ab_script_runs_a_revision_against_the_working_tree_in_one_run() -> None:
    """bench.ab: raw aiohttp and both sides each get a line per round and a median."""
    if not (ROOT / ".git").exists():
        pytest.skip("bench.ab checks revisions out of the git repository, and this tree is not one")
    command = [sys.executable, "-m", "bench.ab", "HEAD", "--smoke"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    medians = done.stdout.split("medians:")[1]
    for label in ("aiohttp", "A HEAD", "B working tree"):
        assert f"{label}: c1 p50" in medians
    assert done.stdout.count("round 1:") == 3
