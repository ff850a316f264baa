"""Profile modelyard's `Router.execute` hot path against a sandbox process.

    python -m bench.profile_hot_path                      # pyinstrument tree, c=1 then c=200
    python -m bench.profile_hot_path --profiler cprofile  # cProfile, sorted by own time
    python -m bench.profile_hot_path --smoke

Not a benchmark (the profiler slows everything down): it shows where the time goes. Uses
pyinstrument when it is installed (the `bench` extra), else cProfile.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from pathlib import Path

import anyio

from bench.common import MESSAGES, MODEL, installed, parser, run_load, sandbox_process
from bench.contenders import modelyard_router
from modelyard.server.tuning import tune_gc


async def _profile(url: str, *, n: int, concurrency: int, profiler: str, out: Path | None, label: str) -> str:
    from modelyard.routing.request import RouteRequest

    tune_gc()  # as `modelyard serve` runs
    async with modelyard_router(url) as router:

        async def call() -> None:
            await router.execute(RouteRequest(messages=MESSAGES, model=MODEL, max_tokens=16))

        await run_load(call, n=max(concurrency, 20), concurrency=concurrency)  # warm up
        if profiler == "pyinstrument":
            from pyinstrument import Profiler

            prof = Profiler(interval=0.0002, async_mode="disabled")
            prof.start()
            await run_load(call, n=n, concurrency=concurrency)
            prof.stop()
            if out is not None:
                await anyio.Path(out).write_text(prof.output_html())
            return str(prof.output_text(unicode=True, color=False, show_all=False))
        cp = cProfile.Profile()
        cp.enable()
        await run_load(call, n=n, concurrency=concurrency)
        cp.disable()
        buffer = io.StringIO()
        pstats.Stats(cp, stream=buffer).sort_stats("tottime").print_stats(40)
        if out is not None:
            cp.dump_stats(out)
        return f"{label}\n{buffer.getvalue()}"


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--profiler", choices=["pyinstrument", "cprofile"], default=None)
    p.add_argument("--concurrency", type=int, nargs="*", default=[1, 200])
    p.add_argument("-n", type=int, default=None, help="requests per profile (default 2000)")
    p.add_argument("--save", type=Path, default=None, help="folder for the HTML / pstats files")
    args = p.parse_args()
    profiler = args.profiler or ("pyinstrument" if installed("pyinstrument") else "cprofile")
    n = args.n or (20 if args.smoke else 2000)
    with sandbox_process() as sandbox:
        for concurrency in args.concurrency:
            label = f"--- modelyard Router.execute, {n} requests at c={concurrency} ({profiler}) ---"
            out = None
            if args.save is not None:
                args.save.mkdir(parents=True, exist_ok=True)
                out = args.save / f"c{concurrency}.{'html' if profiler == 'pyinstrument' else 'pstats'}"
            text = anyio.run(
                lambda c=concurrency, o=out, lb=label: _profile(
                    sandbox.url, n=n, concurrency=c, profiler=profiler, out=o, label=lb
                )
            )
            print(label)
            print(text)


if __name__ == "__main__":
    main()
