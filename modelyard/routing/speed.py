"""How fast each model is: endpoint stats from OpenRouter, then our own observations (EWMA).

Unknown stays unknown: a model with no stats has no speed tier, not "medium".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelyard.openrouter.catalog_schemas import EndpointsInfo

__all__ = ["SpeedBook", "SpeedStats", "SpeedTier"]

SpeedTier = Literal["slow", "medium", "fast"]
_ALPHA = 0.3  # EWMA weight of the newest observation
_FAST_TPS, _SLOW_TPS = 100.0, 40.0


@dataclass(frozen=True, slots=True)
class SpeedStats:
    """Time to first token (ms) and generation throughput (tokens/s); None where not known."""

    latency_ms: float | None = None
    throughput_tps: float | None = None
    source: Literal["endpoints", "observed"] = "endpoints"

    @property
    def tier(self) -> SpeedTier | None:
        if self.throughput_tps is None:
            return None
        if self.throughput_tps >= _FAST_TPS:
            return "fast"
        return "slow" if self.throughput_tps < _SLOW_TPS else "medium"


class SpeedBook:
    """Per-model speed: observed EWMA wins over endpoint stats once we have seen the model answer."""

    def __init__(self) -> None:
        self._endpoint: dict[str, SpeedStats] = {}
        self._observed: dict[str, SpeedStats] = {}

    def get(self, model: str) -> SpeedStats | None:
        """The model's speed: what was observed, completed by its endpoint stats where nothing was (a whole,
        unstreamed answer shows no throughput of its own)."""
        observed, endpoint = self._observed.get(model), self._endpoint.get(model)
        if observed is None or endpoint is None or observed.throughput_tps is not None:
            return observed or endpoint
        return SpeedStats(latency_ms=observed.latency_ms, throughput_tps=endpoint.throughput_tps, source="observed")

    def knows_any(self) -> bool:
        """Whether any model's speed is known (selection skips the speed scale when none is)."""
        return bool(self._observed or self._endpoint)

    def has_endpoint_stats(self, model: str) -> bool:
        return model in self._endpoint

    def record_endpoints(self, model: str, info: EndpointsInfo) -> None:
        """Take the best p50 latency and throughput among the model's endpoints."""
        latencies = [e.latency_last_30m.p50 for e in info.endpoints if e.latency_last_30m]
        throughputs = [e.throughput_last_30m.p50 for e in info.endpoints if e.throughput_last_30m]
        known_latency = [x for x in latencies if x is not None]
        known_throughput = [x for x in throughputs if x is not None]
        self._endpoint[model] = SpeedStats(
            latency_ms=min(known_latency) if known_latency else None,
            throughput_tps=max(known_throughput) if known_throughput else None,
        )

    def observe(self, model: str, *, latency_ms: float, completion_tokens: int, duration_ms: float) -> None:
        """Fold one answered request into the model's EWMA."""
        throughput = completion_tokens / (duration_ms / 1000) if duration_ms > 0 and completion_tokens else None
        old = self._observed.get(model)
        self._observed[model] = SpeedStats(
            latency_ms=_ewma(old.latency_ms if old else None, latency_ms),
            throughput_tps=_ewma(old.throughput_tps if old else None, throughput),
            source="observed",
        )


def _ewma(old: float | None, new: float | None) -> float | None:
    if new is None:
        return old
    return new if old is None else old + _ALPHA * (new - old)
