"""Chaos: thousands of `execute` calls through the real server while a third or more of the upstream answers
are injected faults, on a three-model chain whose last model stays healthy."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from modelyard.sandbox import Sandbox
from tests.reliability.harness import (
    Figures,
    by_size,
    http_server,
    http_session,
    ledger_cost,
    money,
    percentile,
    read_store,
    stdio_server,
    text_of,
)
from tests.server.conftest import server_env

pytestmark = [pytest.mark.anyio, pytest.mark.reliability]

FIRST, SECOND, HEALTHY = "openai/gpt-4o-mini", "meta-llama/llama-3.3-70b-instruct", "mistralai/mistral-nemo"
# Every kind of broken answer the issue names, with small waits so the run stays short.
FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("rate_limit", {"retry_after": 0.05}),
    ("rate_limit", {"retry_after": 0.05, "platform": True}),
    ("server_error", {}),
    ("bad_gateway", {}),
    ("unavailable", {"retry_after": 0.05}),
    ("timeout", {}),
    ("hang", {}),
    ("reset", {}),
    ("error_in_200", {}),
    ("mid_stream_error", {"after_chunks": 1}),
    ("truncated_stream", {}),
    ("malformed_json", {}),
]
REQUEST_TIMEOUT_S = 1.5  # the upstream read timeout: what a hang costs
MAX_RETRIES = 1
MAX_ATTEMPTS = 5  # two tries on each faulty model, then the healthy one
TIMEOUT_S = 30.0  # each execute's own timeout_s
STREAK = 2  # consecutive faults per model at most (its breaker opens at 5)


@dataclass(frozen=True)
class Chaos:
    calls: int
    concurrency: int
    sessions: int
    deadline_s: float = 600.0


@dataclass
class Outcome:
    index: int
    elapsed_s: float
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


async def _drive_faults(sandbox: Sandbox, done: anyio.Event, rng: random.Random) -> int:
    """Keep a single-shot fault armed on each faulty model, but never more than `STREAK` faults in a row.

    Each faulty model's answers then run like F F S F F S...: well over a third are faults, yet its circuit
    breaker (five consecutive failures) stays closed, so the faults keep landing instead of being skipped.
    """
    armed, seen = 0, 0
    streak = {FIRST: 0, SECOND: 0}
    while not done.is_set():
        ledger = sandbox.state.ledger
        for entry in ledger[seen:]:
            if entry.served_model in streak:
                streak[entry.served_model] = streak[entry.served_model] + 1 if entry.fault else 0
        seen = len(ledger)
        pending = {fault.model for fault in sandbox.state.faults}
        for model in streak:
            if model not in pending and streak[model] < STREAK:
                kind, params = rng.choice(FAULTS)
                sandbox.state.faults.add(model=model, kind=kind, count=1, **params)
                armed += 1
        await anyio.sleep(0.002)
    return armed


async def _one(client: Any, index: int, limiter: anyio.Semaphore, outcomes: list[Outcome]) -> None:
    arguments = {
        "prompt": f"Chaos request {index}: name three rivers.",
        "model": FIRST,
        "models": [SECOND, HEALTHY],
        "max_tokens": 48,
        "stream": index % 2 == 0,
        "cache": "off",
        "timeout_s": TIMEOUT_S,
    }
    async with limiter:
        began = time.monotonic()
        with anyio.fail_after(TIMEOUT_S + 15):
            result = await client.call_tool("execute", arguments)
        elapsed = time.monotonic() - began
    if result.is_error or result.structured_content is None:
        outcomes.append(Outcome(index, elapsed, error=text_of(result)))
    else:
        outcomes.append(Outcome(index, elapsed, result=result.structured_content))


async def _once_reconciled(client: Any, billed: Decimal) -> dict[str, Any] | None:
    """The metrics once the ledger has caught up with the bill: an attempt abandoned after its answer began
    gets its row when the server has read OpenRouter's record of it (about a second later)."""
    metrics: dict[str, Any] | None = None
    for _ in range(100):
        metrics = (await client.call_tool("get_metrics", {"window": "all"})).structured_content
        if metrics is None or money(metrics["total_cost"]) == billed:
            break
        await anyio.sleep(0.1)
    return metrics


def _abandoned_cost(store: Path) -> Decimal:
    """What the ledger's rows of attempts abandoned after their answer began cost."""
    rows = read_store(store, "SELECT cost, detail FROM ledger WHERE cost IS NOT NULL")
    return sum((Decimal(cost) for cost, detail in rows if json.loads(detail).get("abandoned")), Decimal(0))


def _unrecorded(billed: list[Any], store: Path) -> list[dict[str, Any]]:
    """The upstream's billed answers whose generation no ledger row names (what a mismatch is made of)."""
    details = [json.loads(detail) for (detail,) in read_store(store, "SELECT detail FROM ledger")]
    recorded = {d.get("generation_id") for d in details} | {
        a.get("generation_id") for d in details for a in d.get("attempts", []) if isinstance(a, dict)
    }
    return [entry.to_json() for entry in billed if entry.generation_id not in recorded]


@pytest.mark.parametrize(
    "size", by_size(Chaos(calls=1000, concurrency=50, sessions=2), Chaos(calls=5000, concurrency=100, sessions=4))
)
async def test_every_request_with_a_healthy_model_in_its_chain_succeeds_and_the_ledger_matches_the_bill_exactly(
    size: Chaos, tmp_path: Path
) -> None:
    """Under a ≥30% fault mix every execute succeeds within its timeout and attempt cap, and ledger == billed."""
    store = tmp_path / "s.db"
    outcomes: list[Outcome] = []
    rng = random.Random(7)
    began = time.monotonic()
    async with Sandbox.running(api_key="sk-or-v1-chaos") as sandbox:
        env = server_env(
            tmp_path,
            sandbox.base_url,
            key="sk-or-v1-chaos",
            MODELYARD_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S),
            MODELYARD_MAX_RETRIES=str(MAX_RETRIES),
            MODELYARD_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
        )
        with anyio.fail_after(size.deadline_s):
            async with http_server(env, tmp_path, tmp_path / "server.log") as server:
                done = anyio.Event()
                armed: list[int] = []

                async def drive() -> None:
                    armed.append(await _drive_faults(sandbox, done, rng))

                async def session(number: int) -> None:
                    limiter = anyio.Semaphore(size.concurrency // size.sessions)
                    async with http_session(server.url) as client, anyio.create_task_group() as calls:
                        for index in range(number, size.calls, size.sessions):
                            calls.start_soon(_one, client, index, limiter, outcomes)

                async with anyio.create_task_group() as group:
                    group.start_soon(drive)
                    async with anyio.create_task_group() as load:
                        for number in range(size.sessions):
                            load.start_soon(session, number)
                    done.set()
                sandbox.state.faults.clear()
                async with http_session(server.url) as client:
                    metrics = await _once_reconciled(client, sandbox.state.billed_total())
        billed = sandbox.state.billed_total()
        billed_entries = [entry for entry in sandbox.state.ledger if entry.cost]
        kinds = {entry.fault for entry in sandbox.state.ledger if entry.fault}
        upstream = len(sandbox.state.ledger)
        faulted = sum(1 for entry in sandbox.state.ledger if entry.fault)
    wall = time.monotonic() - began

    failed = [o for o in outcomes if o.error is not None]
    attempts = [sum(1 for a in o.result["attempts"] if a["outcome"] != "skipped") for o in outcomes if o.result]
    slowest = max(o.elapsed_s for o in outcomes)
    in_ledger = ledger_cost(store)
    Figures(
        "chaos",
        {
            "calls": size.calls,
            "concurrency": size.concurrency,
            "sessions": size.sessions,
            "upstream_requests": upstream,
            "faults": faulted,
            "fault_share": round(faulted / upstream, 3),
            "fault_kinds": sorted(k for k in kinds if k),
            "failed": len(failed),
            "max_attempts_seen": max(attempts),
            "fallbacks": sum(1 for o in outcomes if o.result and len(o.result["attempts"]) > 1),
            "p50_s": round(percentile([o.elapsed_s for o in outcomes], 50), 3),
            "p99_s": round(percentile([o.elapsed_s for o in outcomes], 99), 3),
            "max_s": round(slowest, 3),
            "billed": str(billed),
            "ledger": str(in_ledger),
            "wall_s": round(wall, 1),
        },
    ).show()
    assert len(outcomes) == size.calls
    assert failed == [], f"{len(failed)} failed, e.g. {failed[:3]}"
    assert faulted / upstream >= 0.30
    assert slowest <= TIMEOUT_S + 5, slowest
    assert all(o.result["latency_ms"] <= TIMEOUT_S * 1000 for o in outcomes)
    assert max(attempts) <= MAX_ATTEMPTS
    assert in_ledger == billed > 0, f"billed but not in the ledger: {_unrecorded(billed_entries, store)[:5]}"
    assert metrics is not None
    assert metrics["total_requests"] == size.calls and metrics["successes"] == size.calls
    assert money(metrics["total_cost"]) == billed
    # What the calls were told they cost, plus what attempts abandoned after their answer began cost (learned later).
    assert sum(money(o.result["cost"]) for o in outcomes) + _abandoned_cost(store) == billed
    assert Decimal(0) < billed


@pytest.mark.parametrize("size", by_size(20, 200))
async def test_answers_billed_but_rejected_by_the_requested_schema_are_still_in_the_ledger_and_the_budget(
    size: int, tmp_path: Path
) -> None:
    """An answer that fails the requested JSON schema was billed all the same: ledger and spend count it."""
    unsatisfiable = {"type": "json_schema", "json_schema": {"name": "never", "schema": {"not": {}}}}
    async with Sandbox.running(api_key="sk-or-v1-chaos") as sandbox:
        env = server_env(tmp_path, sandbox.base_url, key="sk-or-v1-chaos", MODELYARD_MAX_RETRIES="0")
        with anyio.fail_after(120):
            async with stdio_server(env, tmp_path, tmp_path / "server.log") as server:
                texts = []
                for index in range(size):
                    arguments = {
                        "prompt": f"Rejected {index}",
                        "model": FIRST,
                        "models": [HEALTHY],
                        "response_format": unsatisfiable,
                        "max_tokens": 40,
                        "cache": "off",
                    }
                    texts.append(text_of(await server.client.call_tool("execute", arguments)))
                spent = (await server.client.call_tool("get_budget", {})).structured_content
        billed = sandbox.state.billed_total()
    assert all("fails the schema" in text for text in texts), texts[:2]
    assert billed > 0 and ledger_cost(tmp_path / "s.db") == billed
    assert spent is not None and money(spent["spent_today"]) == billed and money(spent["reserved"]) == 0
