"""What every benchmark shares: the sandbox process, the load driver, statistics, machine facts and
the writer of `bench/RESULTS.md` sections.

The benchmarks are scripts, not tests: `python -m bench.<name>` from the repository root. Each one
takes `--smoke` (a tiny size that only proves it still works) and `--results PATH` (default
`bench/RESULTS.md`; its figures are also kept as JSON in `bench/results/` beside it, which
`bench.targets` turns into the issue's target table).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
FIXTURE_414 = ROOT.parent / "shared" / "fixtures" / "openrouter" / "models-2026-08-19.json"
KEY = "sk-or-v1-sandbox"
MODEL = "openai/gpt-4o-mini"
FALLBACK_MODEL = "anthropic/claude-3.5-haiku"
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Say hello in five words."}]
LIBRARIES = ("modelyard", "httpx2", "httpcore2", "aiohttp", "httpx-aiohttp", "litellm", "mcp", "pydantic", "anyio")


# ---------------------------------------------------------------------------------------- arguments


def parser(description: str) -> argparse.ArgumentParser:
    """The flags every benchmark script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="a tiny size that only proves the script works")
    p.add_argument("--results", type=Path, default=None, help="the RESULTS.md to update (default bench/RESULTS.md)")
    p.add_argument("--no-write", action="store_true", help="print the figures, write nothing")
    return p


# ---------------------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100) of `values`; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median, NaN-tolerant (NaNs are dropped; all-NaN gives NaN)."""
    kept = sorted(v for v in values if not math.isnan(v))
    if not kept:
        return math.nan
    mid = len(kept) // 2
    return kept[mid] if len(kept) % 2 else (kept[mid - 1] + kept[mid]) / 2


@dataclass
class LoadResult:
    """One load run: per-request latencies (seconds) and the wall time of the whole run."""

    latencies: list[float]
    wall_s: float
    errors: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s > 0 else math.nan

    def figures(self) -> dict[str, float]:
        ms = [v * 1000 for v in self.latencies]
        return {
            "n": len(ms),
            "errors": self.errors,
            "p50_ms": percentile(ms, 50),
            "p99_ms": percentile(ms, 99),
            "mean_ms": sum(ms) / len(ms) if ms else math.nan,
            "rps": self.throughput,
            "wall_s": self.wall_s,
            **self.extra,
        }


async def run_load(
    call: Callable[[], Awaitable[object]], *, n: int, concurrency: int, idle_s: float = 0.0
) -> LoadResult:
    """Send `n` calls from `concurrency` tasks; time each call and the whole run.

    `idle_s`: each task waits this long (untimed, the event loop idle) before each call, as a server
    between its clients' calls. A call that raises is counted as an error (and its latency left out);
    the run goes on.
    """
    import anyio

    latencies: list[float] = []
    errors = 0
    remaining = n
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            if idle_s:
                await anyio.sleep(idle_s)
            began = clock()
            try:
                await call()
            except Exception:
                errors += 1
                continue
            latencies.append(clock() - began)

    started = clock()
    async with anyio.create_task_group() as group:
        for _ in range(min(concurrency, n)):
            group.start_soon(worker)
    return LoadResult(latencies, clock() - started, errors)


# ---------------------------------------------------------------------------------------- sandbox


@dataclass
class SandboxProcess:
    """`python -m modelyard.sandbox` in its own process (so it never shares the client's event loop)."""

    url: str
    """The API root, `http://127.0.0.1:PORT/api/v1`."""
    pid: int

    @property
    def root(self) -> str:
        return self.url.removesuffix("/api/v1")

    def control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        """POST to the sandbox control API (`/_sandbox/...`) and return the decoded answer."""
        data = json.dumps(payload or {}).encode()
        request = urllib.request.Request(f"{self.root}/_sandbox/{path}", data=data, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def reset(self, **config: Any) -> None:
        """Forget the ledger and faults (so memory does not grow run to run), then apply `config`."""
        self.control("reset")
        if config:
            self.control("config", config)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the sandbox process has used so far."""
        return process_cpu_s(self.pid)


@contextlib.contextmanager
def sandbox_process(*args: str) -> Iterator[SandboxProcess]:
    """Start the sandbox on a free loopback port; stop it on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelyard.sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("SANDBOX_URL="):
            raise RuntimeError(f"the sandbox did not start (first line {line!r})")
        yield SandboxProcess(line.strip().split("=", 1)[1], proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process, from /proc (NaN where /proc is not there)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------- workers


def run_worker(module: str, args: Sequence[str], *, timeout_s: float = 600.0, root: Path = ROOT) -> dict[str, Any]:
    """Run `python -m module ARGS` (a contender in a fresh interpreter) and decode its JSON line.

    `root`: the source tree it imports modelyard and bench from (another checkout, for an A/B).
    """
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if root != ROOT:  # ahead of the editable install, which points at ROOT
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"worker {module} {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# ---------------------------------------------------------------------------------------- reporting


def machine() -> dict[str, Any]:
    """Date, machine and versions, as every section of RESULTS.md states them."""
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
    }


def machine_line(info: dict[str, Any]) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v != "not installed")
    return (
        f"_Measured {info['date']} on {info['platform']}, {info['cpus']} CPUs ({info['cpu']}), "
        f"Python {info['python']}; {libs}._"
    )


def fmt(value: float, digits: int = 2) -> str:
    """A figure for a table: thousands separators, NaN as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def results_path(args: argparse.Namespace) -> Path:
    return Path(args.results) if args.results else RESULTS


def publish(args: argparse.Namespace, name: str, title: str, body: str, figures: dict[str, Any]) -> None:
    """Print the section; unless `--no-write`, put it in RESULTS.md and its figures in results/NAME.json.

    Only the section between this benchmark's own markers is replaced, so sections written by other
    scripts (or by hand) are left as they are.
    """
    text = f"## {title}\n\n{body.strip()}\n"
    print(text)
    if args.no_write:
        return
    path = results_path(args)
    write_section(path, name, text)
    data_dir = path.parent / "results"
    data_dir.mkdir(parents=True, exist_ok=True)
    payload = {"smoke": bool(args.smoke), **figures}
    (data_dir / f"{name}.json").write_text(json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n")


def write_section(path: Path, name: str, text: str) -> None:
    """Replace (or append) the block between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: block, current, count=1)
    else:
        updated = current.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(updated if updated.endswith("\n") else updated + "\n")


def load_figures(results: Path, name: str) -> dict[str, Any] | None:
    path = results.parent / "results" / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data
