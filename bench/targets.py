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


def _row(target: str, figures: str, ratio: str, measured: float, limit: float, *, at_least: bool = False) -> list[str]:
    """One line of the table; the status is n/a when the figure is missing (NaN)."""
    if math.isnan(measured):
        status = "n/a"
    else:
        ok = measured >= limit if at_least else measured <= limit
        status = "**met**" if ok else "**not met**"
    return [target, figures, ratio, status]


def _per(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan


def _http_rows(r: dict[str, Any]) -> list[list[str]]:
    def get(name: str, scenario: str, key: str) -> float:
        return float(r.get(name, {}).get(scenario, {}).get(key, math.nan))

    a1, m1, l1 = (get(n, "c1", "p50_ms") for n in ("aiohttp", "modelyard", "litellm"))
    added, litellm_added = m1 - a1, l1 - a1
    share = _per(added, litellm_added) if litellm_added > 0 else math.nan
    a200, m200, l200 = (get(n, "c200", "rps") for n in ("aiohttp", "modelyard", "litellm"))
    ap99, mp99 = get("aiohttp", "c200", "p99_ms"), get("modelyard", "c200", "p99_ms")
    alat, mlat = get("aiohttp", "c200_lat50", "rps"), get("modelyard", "c200_lat50", "rps")
    return [
        _row("c=1: p50 <= raw aiohttp p50 + 1.0 ms", f"modelyard {fmt(m1)} ms, aiohttp {fmt(a1)} ms",
             f"+{added:.2f} ms", added, 1.0),
        _row("c=1: added latency over aiohttp <= 1/8 of LiteLLM's",
             f"modelyard +{added:.2f} ms, LiteLLM +{litellm_added:.2f} ms", f"{share:.3f} (1/8 = 0.125)", share, 0.125),
        _row("c=200: throughput >= 50% of raw aiohttp", f"modelyard {fmt(m200)} req/s, aiohttp {fmt(a200)} req/s",
             f"{_per(m200, a200):.0%}", _per(m200, a200), 0.5, at_least=True),
        _row("c=200: throughput >= 8x LiteLLM", f"modelyard {fmt(m200)} req/s, LiteLLM {fmt(l200)} req/s",
             f"{_per(m200, l200):.1f}x", _per(m200, l200), 8, at_least=True),
        _row("c=200: p99 <= 2x raw aiohttp p99", f"modelyard {fmt(mp99)} ms, aiohttp {fmt(ap99)} ms",
             f"{_per(mp99, ap99):.2f}x", _per(mp99, ap99), 2),
        _row("c=200, 50 ms upstream: throughput >= 75% of raw aiohttp",
             f"modelyard {fmt(mlat)} req/s, aiohttp {fmt(alat)} req/s", f"{_per(mlat, alat):.0%}",
             _per(mlat, alat), 0.75, at_least=True),
    ]  # fmt: skip


def _stream_rows(s: dict[str, Any]) -> list[list[str]]:
    raw = s.get("aiohttp", s.get("httpx2", {})).get("p50_ms", math.nan)
    out = []
    for name, label in (("modelyard", "`Router.stream`"), ("modelyard (on_event)", "`execute(on_event=)`")):
        if name in s:
            over = s[name]["p50_ms"] - raw
            figures = f"modelyard {fmt(s[name]['p50_ms'])} ms, raw aiohttp {fmt(raw)} ms"
            out.append(_row(f"streaming TTFT <= raw + 1 ms ({label})", figures, f"+{over:.2f} ms", over, 1.0))
    return out


def _mcp_rows(mcp: dict[str, Any]) -> list[list[str]]:
    trips = mcp["round_trips"]
    floor = trips["empty `noop`"]["p50_ms"]
    out = []
    ours = trips.get("empty `noop`, on modelyard's stdio transport", {}).get("p50_ms")
    for name in ("`execute`, cache hit", "`execute`, upstream"):
        over = trips[name]["p50_ms"] - floor
        figures = f"{fmt(trips[name]['p50_ms'])} ms vs {fmt(floor)} ms"
        out.append(_row(f"MCP stdio: {name} p50 <= empty tool + 1.5 ms", figures, f"+{over:.2f} ms", over, 1.5))
        if ours is not None:  # the same comparison with the empty tool on modelyard's own transport
            over = trips[name]["p50_ms"] - ours
            figures = f"{fmt(trips[name]['p50_ms'])} ms vs {fmt(ours)} ms"
            label = f"MCP stdio: {name} p50 <= empty tool on modelyard's transport + 1.5 ms"
            out.append(_row(label, figures, f"+{over:.2f} ms", over, 1.5))
    cold = mcp["cold_start_ms"]["`modelyard serve`"]
    figures = f"{fmt(cold, 0)} ms (empty server {fmt(mcp['cold_start_ms']['empty server'], 0)} ms)"
    target = "cold start of `modelyard serve` to first `tools/list` <= 1.5 s"
    out.append(_row(target, figures, f"{cold / 1500:.0%} of 1.5 s", cold, 1500))
    return out


def _inprocess_rows(inproc: dict[str, Any]) -> list[list[str]]:
    cases = inproc["selection"]["cases"]
    auto = cases["auto (rank every model)"]["p50_us"]
    named = next(v["p50_us"] for k, v in cases.items() if k.startswith("named"))
    hit = inproc["cache_hit"]["p50_us"]
    return [
        _row(f"selection over {inproc['selection']['catalog']} p50 <= 200 µs",
             f"auto {fmt(auto, 1)} µs; a named model {fmt(named, 1)} µs", f"{auto / 200:.2f}x the target (auto)",
             auto, 200),
        _row("cache hit in-process p50 <= 50 µs", f"{fmt(hit, 1)} µs (ledger row committed)",
             f"{hit / 50:.2f}x the target", hit, 50),
    ]  # fmt: skip


def rows(results: Any) -> list[list[str]]:
    """Every target whose figures are in `results`, as table rows."""
    out: list[list[str]] = []
    if (http := load_figures(results, "http")) is not None:
        out += _http_rows(http["results"])
    if (stream := load_figures(results, "stream")) is not None:
        out += _stream_rows(stream["results"])
    if (mcp := load_figures(results, "mcp")) is not None:
        out += _mcp_rows(mcp)
    if (inproc := load_figures(results, "inprocess")) is not None:
        out += _inprocess_rows(inproc)
    return out


def idle_note(results: Any) -> str:
    """c=1 after an idle wait, next to back-to-back c=1: context for the MCP rows (no target of its own)."""
    http = load_figures(results, "http")
    if http is None or "c1_idle" not in http.get("sizes", {}):
        return ""
    r = http["results"]

    def p50(name: str, scenario: str) -> float:
        return float(r.get(name, {}).get(scenario, {}).get("p50_ms", math.nan))

    hot = (p50("aiohttp", "c1"), p50("modelyard", "c1"))
    idle = (p50("aiohttp", "c1_idle"), p50("modelyard", "c1_idle"))
    if any(math.isnan(x) for x in (*hot, *idle)):
        return ""
    idle_ms = http["sizes"]["c1_idle"][3]
    return (
        f"Not a target, but it explains the MCP rows: at c=1 with {idle_ms} ms of idle before each request (an MCP "
        f"round trip has three processes taking turns, each idle while the others work), raw aiohttp takes "
        f"{fmt(idle[0])} ms (back to back: {fmt(hot[0])}) and modelyard {fmt(idle[1])} ms (back to back: "
        f"{fmt(hot[1])}): +{idle[1] - idle[0]:.2f} ms over aiohttp, against +{hot[1] - hot[0]:.2f} ms back to back."
    )


def long_note(results: Any) -> str:
    """modelyard and LiteLLM over raw aiohttp with the longest conversation measured (no target of its own)."""
    long = load_figures(results, "long")
    if long is None or not long.get("sizes"):
        return ""
    kb = max(long["sizes"], key=int)  # the figures file sorts its keys as text
    r = long["results"]

    def p50(name: str) -> float:
        return float(r.get(name, {}).get(kb, {}).get("p50_ms", math.nan))

    raw, mine, hit = p50("aiohttp"), p50("modelyard"), p50("modelyard, cache hit")
    if any(math.isnan(x) for x in (raw, mine, hit)):
        return ""
    litellm = p50("litellm")
    theirs = "" if math.isnan(litellm) else f", LiteLLM {fmt(litellm)} ms ({litellm - raw:+.2f})"
    return (
        f"Not a target either: with a {kb} KB conversation (an agent's context), raw aiohttp takes {fmt(raw)} ms, "
        f"modelyard {fmt(mine)} ms ({mine - raw:+.2f}){theirs}; a modelyard cache hit {fmt(hit)} ms."
    )


def pass_through_note(results: Any) -> str:
    """modelyard's `execute` over MCP next to a thin pass-through tool making the same upstream call."""
    mcp = load_figures(results, "mcp")
    trips = (mcp or {}).get("round_trips", {})
    through = next((v["p50_ms"] for k, v in trips.items() if k.startswith("pass-through tool")), None)
    if through is None or "`execute`, upstream" not in trips:
        return ""
    upstream = trips["`execute`, upstream"]["p50_ms"]
    floor = trips.get("empty `noop`, on modelyard's stdio transport", {}).get("p50_ms", math.nan)
    return (
        f"Nor this: on modelyard's stdio transport, a thin pass-through tool (the prompt posted upstream with "
        f"aiohttp, the text back: what the existing OpenRouter MCP servers do) takes {fmt(through)} ms, "
        f"{through - floor:+.2f} ms over the empty tool there; modelyard's `execute` sent upstream takes "
        f"{fmt(upstream)} ms, {upstream - through:+.2f} ms over the pass-through for selection, fallback, budget, "
        "the ledger row, the cost and the structured result."
    )


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
            *(["", note] if (note := idle_note(results)) else []),
            *(["", note] if (note := long_note(results)) else []),
            *(["", note] if (note := pass_through_note(results)) else []),
        ]
    )
    publish(args, NAME, "Targets (issue 6)", body, {"rows": found})


if __name__ == "__main__":
    main()
