"""Run every benchmark, then the target table: `python -m bench.run_all [--smoke] [--results PATH]`.

Each script runs in its own process, one after another, and replaces only its own section of
RESULTS.md (sections written by others, such as the Redis store's, are kept).
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import ROOT, parser

SCRIPTS = ("bench_http", "bench_long", "bench_stream", "bench_mcp", "bench_inprocess", "targets")


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    extra = ["--smoke"] if args.smoke else []
    if args.results is not None:
        extra += ["--results", str(args.results)]
    if args.no_write:
        extra.append("--no-write")
    for script in SCRIPTS:
        began = time.monotonic()
        print(f"=== bench.{script}", flush=True)
        subprocess.run([sys.executable, "-m", f"bench.{script}", *extra], cwd=ROOT, check=True)
        print(f"=== bench.{script}: {time.monotonic() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
