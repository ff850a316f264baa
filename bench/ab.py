"""A/B: modelyard's `Router` at two git revisions, alternating in one run against one sandbox.

    python -m bench.ab fe5112b                 # that revision against the working tree, 4 rounds
    python -m bench.ab fe5112b HEAD --rounds 6 --scenario c1 c200
    python -m bench.ab HEAD --smoke            # tiny, proves it works

Figures on these 2-core machines drift 1.3-1.9x between hours, more than most changes being
measured, so compare revisions inside one run: every round runs raw aiohttp (the floor) and then
each revision's `bench_http` modelyard worker, in an order that rotates every round. A revision is
checked out with `git worktree add --detach` into a temporary folder (removed afterwards) and its
worker runs from there, so the revision needs `bench_http`'s worker (every revision since issue 6
began). Prints each round and the medians; writes nothing.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.bench_http import FULL, SMOKE
from bench.common import ROOT, SandboxProcess, fmt, median, run_worker, sandbox_process

WORKING_TREE = "working tree"


@contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """A detached worktree of `revision`, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="modelyard-ab-") as parent:
        path = Path(parent) / "tree"
        git = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*git, "prune"], check=False)  # what a killed run left behind
        try:
            added = subprocess.run([*git, "add", "--detach", "--quiet", str(path), revision], check=False)
            if added.returncode != 0:
                raise SystemExit(f"cannot check out {revision!r} (git said why above)")
            yield path
        finally:
            subprocess.run([*git, "remove", "--force", str(path)], check=False, stderr=subprocess.DEVNULL)


def _run(name: str, root: Path, sandbox: SandboxProcess, sizes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    if any(len(size) > 3 for size in sizes.values()) and "idle_ms" not in (root / "bench/bench_http.py").read_text():
        raise SystemExit(f"{root}'s bench_http has no idle scenarios: leave c1_idle out (--scenario c1 c200 ...)")
    args = [
        "--worker", name, "--url", sandbox.url, "--sandbox-pid", str(sandbox.pid), "--scenarios", json.dumps(sizes),
    ]  # fmt: skip
    return run_worker("bench.bench_http", args, timeout_s=900, root=root)


def _line(scenario: str, figures: dict[str, Any]) -> str:
    speed = f"p50 {fmt(figures['p50_ms'])} ms" if scenario.startswith("c1") else f"{fmt(figures['rps'])} req/s"
    return f"{scenario} {speed}, cpu {fmt(figures['client_cpu_us_per_req'], 0)} µs/req"


def measure(trees: dict[str, Path], sizes: dict[str, tuple[int, ...]], rounds: int) -> dict[str, list[Any]]:
    """Each round: aiohttp, then every tree's modelyard worker, the order rotating every round."""
    contenders = [("aiohttp", "aiohttp", ROOT)] + [(label, "modelyard", tree) for label, tree in trees.items()]
    runs: dict[str, list[Any]] = {label: [] for label, _, _ in contenders}
    with sandbox_process() as sandbox:
        for index in range(rounds):
            for label, worker, root in contenders[index % len(contenders) :] + contenders[: index % len(contenders)]:
                result = _run(worker, root, sandbox, sizes)
                runs[label].append(result)
                print(f"round {index + 1}: {label:>14}: " + "; ".join(_line(s, result[s]) for s in sizes), flush=True)
    return runs


def summary(runs: dict[str, list[Any]], scenarios: list[str]) -> str:
    """The medians over the rounds, one line per contender."""
    lines = ["medians:"]
    for label, results in runs.items():
        figures = {
            s: {k: median([r[s][k] for r in results]) for k in ("p50_ms", "rps", "client_cpu_us_per_req")}
            for s in scenarios
        }
        lines.append(f"  {label:>14}: " + "; ".join(_line(s, figures[s]) for s in scenarios))
    return "\n".join(lines)


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", help="a git revision (commit, branch, tag)")
    p.add_argument("new", nargs="?", default=None, help="another revision (default: the working tree)")
    p.add_argument("--rounds", type=int, default=4)
    # c1_idle only against revisions whose worker knows the idle field (this one on).
    p.add_argument("--scenario", nargs="*", default=["c1", "c200", "c200_lat50"], choices=list(FULL))
    p.add_argument("--smoke", action="store_true", help="a tiny size that only proves the script works")
    args = p.parse_args()
    # Without an idle time, the three fields every revision's worker reads.
    sizes = {s: v[:3] if not v[3] else v for s in args.scenario for v in [(SMOKE if args.smoke else FULL)[s]]}
    rounds = 1 if args.smoke else args.rounds
    with ExitStack() as stack:
        trees = {f"A {args.base}": stack.enter_context(checkout(args.base))}
        if args.new is None:
            trees[f"B {WORKING_TREE}"] = ROOT
        else:
            trees[f"B {args.new}"] = stack.enter_context(checkout(args.new))
        runs = measure(trees, sizes, rounds)
    print(summary(runs, list(sizes)))


if __name__ == "__main__":
    main()
