"""SpeedBook: endpoint stats, then our own observations (EWMA); unknown stays unknown."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.openrouter.catalog_schemas import EndpointsInfo
from modelyard.routing.speed import SpeedBook, SpeedStats

MODEL = "openai/gpt-4o-mini"


def _endpoints(*endpoints: dict[str, Any]) -> EndpointsInfo:
    return EndpointsInfo.model_validate({"id": MODEL, "endpoints": list(endpoints)})


def _endpoint(latency: float | None, throughput: float | None) -> dict[str, Any]:
    return {
        "provider_name": "X",
        "latency_last_30m": None if latency is None else {"p50": latency, "p90": latency * 2},
        "throughput_last_30m": None if throughput is None else {"p50": throughput, "p90": throughput / 2},
    }


def test_a_model_never_seen_has_no_speed() -> None:
    """No endpoint stats and no observations: the book knows nothing, rather than guessing."""
    assert SpeedBook().get(MODEL) is None


@pytest.mark.parametrize(
    ("throughput", "tier"),
    [(None, None), (250.0, "fast"), (100.0, "fast"), (99.9, "medium"), (40.0, "medium"), (39.9, "slow"), (5.0, "slow")],
)
def test_the_speed_tier_follows_throughput_and_is_none_when_unknown(throughput: float | None, tier: str | None) -> None:
    """≥100 tok/s is fast, <40 slow, between medium; unknown throughput has no tier (not medium)."""
    assert SpeedStats(latency_ms=500.0, throughput_tps=throughput).tier == tier


def test_endpoint_stats_take_the_best_p50_across_providers() -> None:
    """The lowest p50 latency and the highest p50 throughput among the endpoints, from endpoints."""
    book = SpeedBook()
    book.record_endpoints(MODEL, _endpoints(_endpoint(900, 60), _endpoint(400, 45), _endpoint(None, 120)))
    stats = book.get(MODEL)
    assert stats == SpeedStats(latency_ms=400, throughput_tps=120, source="endpoints")
    assert book.has_endpoint_stats(MODEL)


def test_endpoints_without_stats_leave_the_speed_unknown() -> None:
    """Endpoints that report no latency or throughput (unauthenticated) give unknown, tier None."""
    book = SpeedBook()
    book.record_endpoints(MODEL, _endpoints(_endpoint(None, None)))
    stats = book.get(MODEL)
    assert stats is not None and (stats.latency_ms, stats.throughput_tps, stats.tier) == (None, None, None)


def test_the_first_observation_is_taken_as_it_is() -> None:
    """One answer of 200 tokens in 2 s records 100 tok/s and its latency, labelled observed."""
    book = SpeedBook()
    book.observe(MODEL, latency_ms=300, completion_tokens=200, duration_ms=2000)
    assert book.get(MODEL) == SpeedStats(latency_ms=300, throughput_tps=100, source="observed")


def test_later_observations_move_the_average_by_an_ewma() -> None:
    """A second answer at 200 tok/s moves 100 by 30% of the gap: 130; latency 300 → 600 gives 390."""
    book = SpeedBook()
    book.observe(MODEL, latency_ms=300, completion_tokens=200, duration_ms=2000)
    book.observe(MODEL, latency_ms=600, completion_tokens=400, duration_ms=2000)
    stats = book.get(MODEL)
    assert stats is not None
    assert stats.throughput_tps == pytest.approx(130.0)
    assert stats.latency_ms == pytest.approx(390.0)


def test_our_observations_win_over_endpoint_stats() -> None:
    """Once the model has answered us, its observed speed is what the book returns."""
    book = SpeedBook()
    book.record_endpoints(MODEL, _endpoints(_endpoint(200, 300)))
    assert book.get(MODEL) == SpeedStats(latency_ms=200, throughput_tps=300, source="endpoints")
    book.observe(MODEL, latency_ms=1500, completion_tokens=30, duration_ms=1000)
    assert book.get(MODEL) == SpeedStats(latency_ms=1500, throughput_tps=30, source="observed")
    assert book.has_endpoint_stats(MODEL)


def test_an_answer_without_completion_tokens_updates_latency_but_not_throughput() -> None:
    """Zero tokens (or zero duration) says nothing about throughput: the known value is kept."""
    book = SpeedBook()
    book.observe(MODEL, latency_ms=300, completion_tokens=200, duration_ms=2000)
    book.observe(MODEL, latency_ms=400, completion_tokens=0, duration_ms=2000)
    book.observe(MODEL, latency_ms=400, completion_tokens=50, duration_ms=0)
    stats = book.get(MODEL)
    assert stats is not None and stats.throughput_tps == 100


def test_a_first_observation_without_tokens_leaves_throughput_unknown() -> None:
    """An empty first answer gives a latency but no throughput and so no tier."""
    book = SpeedBook()
    book.observe(MODEL, latency_ms=250, completion_tokens=0, duration_ms=1000)
    stats = book.get(MODEL)
    assert stats is not None and (stats.latency_ms, stats.throughput_tps, stats.tier) == (250, None, None)


def test_an_unstreamed_answer_keeps_the_endpoints_throughput_and_updates_the_latency() -> None:
    """A whole answer's time includes the wait for its first token: it says nothing of the throughput."""
    book = SpeedBook()
    book.record_endpoints("lab/a", EndpointsInfo.model_validate(
        {"id": "lab/a", "endpoints": [{"latency_last_30m": {"p50": 600}, "throughput_last_30m": {"p50": 200}}]}
    ))  # fmt: skip
    book.observe("lab/a", latency_ms=700.0, completion_tokens=20, duration_ms=0.0)
    stats = book.get("lab/a")
    assert stats is not None and (stats.latency_ms, stats.throughput_tps, stats.tier) == (700.0, 200, "fast")
