"""The issue's target table, from the figures the other benchmarks left in `bench/results/*.json`.

    python -m bench.targets          # after the benchmarks; `python -m bench.run_all` runs everything

Every ratio compares figures from one run of one script (contenders side by side), never figures
from different runs.
"""

from __future__ import annotations

import math
from typing import Any

from bench.common import fmt, load_figures, parser, publish, results_path, table

NAME = "targets"


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def rows(results: Any) -> list[list[str]]:
    out: list[list[str]] = []
    http = load_figures(results, "http")
    if http is not None:
        r = http["results"]
        get = lambda name, scenario, key: float(r.get(name, {}).get(scenario, {}).get(key, math.nan))  # noqa: E731
        a1, m1, l1 = (get(n, "c1", "p50_ms") for n in ("aiohttp", "modelyard", "litellm"))
        added, litellm_added = m1 - a1, l1 - a1
        out.append(
            [
                "c=1: p50 <= raw aiohttp p50 + 1.0 ms",
                f"modelyard {fmt(m1)} ms, aiohttp {fmt(a1)} ms",
                f"+{added:.2f} ms",
                _status(None if math.isnan(added) else added <= 1.0),
            ]
        )
        share = added / litellm_added if litellm_added > 0 else math.nan
        out.append(
            [
                "c=1: added latency over aiohttp <= 1/8 of LiteLLM's",
                f"modelyard +{added:.2f} ms, LiteLLM +{litellm_added:.2f} ms",
                f"{share:.3f} (1/8 = 0.125)",
                _status(None if math.isnan(share) else share <= 0.125),
            ]
        )
        a200, m200, l200 = (get(n, "c200", "rps") for n in ("aiohttp", "modelyard", "litellm"))
        out.append(
            [
                "c=200: throughput >= 50% of raw aiohttp",
                f"modelyard {fmt(m200)} req/s, aiohttp {fmt(a200)} req/s",
                f"{m200 / a200:.0%}",
                _status(None if math.isnan(m200 / a200) else m200 / a200 >= 0.5),
            ]
        )
        out.append(
            [
                "c=200: throughput >= 8x LiteLLM",
                f"modelyard {fmt(m200)} req/s, LiteLLM {fmt(l200)} req/s",
                f"{m200 / l200:.1f}x",
                _status(None if math.isnan(m200 / l200) else m200 / l200 >= 8),
            ]
        )
        ap99, mp99 = get("aiohttp", "c200", "p99_ms"), get("modelyard", "c200", "p99_ms")
        out.append(
            [
                "c=200: p99 <= 2x raw aiohttp p99",
                f"modelyard {fmt(mp99)} ms, aiohttp {fmt(ap99)} ms",
                f"{mp99 / ap99:.2f}x",
                _status(None if math.isnan(mp99 / ap99) else mp99 / ap99 <= 2),
            ]
        )
        alat, mlat = get("aiohttp", "c200_lat50", "rps"), get("modelyard", "c200_lat50", "rps")
        out.append(
            [
                "c=200, 50 ms upstream: throughput >= 75% of raw aiohttp",
                f"modelyard {fmt(mlat)} req/s, aiohttp {fmt(alat)} req/s",
                f"{mlat / alat:.0%}",
                _status(None if math.isnan(mlat / alat) else mlat / alat >= 0.75),
            ]
        )
    stream = load_figures(results, "stream")
    if stream is not None:
        s = stream["results"]
        raw = s.get("aiohttp", s.get("httpx2", {})).get("p50_ms", math.nan)
        for name, label in (("modelyard", "`Router.stream`"), ("modelyard (on_event)", "`execute(on_event=)`")):
            if name not in s:
                continue
            over = s[name]["p50_ms"] - raw
            out.append(
                [
                    f"streaming TTFT <= raw + 1 ms ({label})",
                    f"modelyard {fmt(s[name]['p50_ms'])} ms, raw aiohttp {fmt(raw)} ms",
                    f"+{over:.2f} ms",
                    _status(over <= 1.0),
                ]
            )
    mcp = load_figures(results, "mcp")
    if mcp is not None:
        trips = mcp["round_trips"]
        floor = trips["empty `noop`"]["p50_ms"]
        for name in ("`execute`, cache hit", "`execute`, upstream"):
            over = trips[name]["p50_ms"] - floor
            out.append(
                [
                    f"MCP stdio: {name} p50 <= empty tool + 1.5 ms",
                    f"{fmt(trips[name]['p50_ms'])} ms vs {fmt(floor)} ms",
                    f"+{over:.2f} ms",
                    _status(over <= 1.5),
                ]
            )
        cold = mcp["cold_start_ms"]["`modelyard serve`"]
        out.append(
            [
                "cold start of `modelyard serve` to first `tools/list` <= 1.5 s",
                f"{fmt(cold, 0)} ms (empty server {fmt(mcp['cold_start_ms']['empty server'], 0)} ms)",
                f"{cold / 1500:.0%} of 1.5 s",
                _status(cold <= 1500),
            ]
        )
    inproc = load_figures(results, "inprocess")
    if inproc is not None:
        cases = inproc["selection"]["cases"]
        auto = cases["auto (rank every model)"]["p50_us"]
        named = next(v["p50_us"] for k, v in cases.items() if k.startswith("named"))
        out.append(
            [
                f"selection over {inproc['selection']['catalog']} p50 <= 200 µs",
                f"auto {fmt(auto, 0)} µs; a named model {fmt(named, 1)} µs",
                f"{auto / 200:.1f}x the target (auto)",
                _status(auto <= 200),
            ]
        )
        hit = inproc["cache_hit"]["p50_us"]
        out.append(
            [
                "cache hit in-process p50 <= 50 µs",
                f"{fmt(hit, 0)} µs (ledger row committed)",
                f"{hit / 50:.1f}x the target",
                _status(hit <= 50),
            ]
        )
    return out


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    results = results_path(args)
    found = rows(results)
    if not found:
        raise SystemExit("no figures yet: run the benchmarks first (python -m bench.run_all)")
    smoke = any((load_figures(results, n) or {}).get("smoke") for n in ("http", "stream", "mcp", "inprocess"))
    body = "\n".join(
        [
            "The issue's targets against this run's figures (each ratio from one script's side-by-side run; "
            "details in the sections below)." + (" **Smoke-sized figures: not a measurement.**" if smoke else ""),
            "",
            table(["target", "figures", "ratio", "status"], found),
        ]
    )
    publish(args, NAME, "Targets (issue 6)", body, {"rows": found})


if __name__ == "__main__":
    main()
