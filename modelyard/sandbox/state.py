"""The sandbox's in-process state: config, key, faults, ledger, endpoint stats, generations."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from decimal import Decimal
from typing import Any

from modelyard.sandbox.catalog import Catalog, CatalogModel
from modelyard.sandbox.faults import FaultBook
from modelyard.sandbox.tokens import PrefixCache

__all__ = ["DEFAULT_API_KEY", "LedgerEntry", "SandboxConfig", "SandboxState", "mask_key"]

DEFAULT_API_KEY = "sk-or-v1-sandbox"
_KEEP_ENTRIES = 100_000
_LATENCY_SPREAD = {"p50": 1.0, "p75": 1.25, "p90": 1.8, "p99": 3.5}
_THROUGHPUT_SPREAD = {"p50": 1.0, "p75": 0.85, "p90": 0.7, "p99": 0.45}

Percentiles = dict[str, float]


@dataclass(slots=True)
class SandboxConfig:
    """Run-time knobs, all changeable through the control API."""

    cache_threshold: int = 1024
    """Fewest prefix tokens that count as a cache read (0 in tests)."""
    stream_chunk_delay_ms: float = 0.0
    """Pause between two stream events."""
    default_latency_ms: float = 0.0
    """Delay before every chat answer (latency faults add to it)."""
    keepalive_blocks: int = 1
    """How many `"\\n         \\n"` blocks precede a non-streamed body."""
    headers_first: bool = True
    """A non-streamed answer with latency sends its headers (with `X-Generation-Id`) and a keep-alive
    block at once and its body after the latency, as OpenRouter does; it is billed when the body is
    ready, whether or not the client is still there. False: headers and body together, after it."""
    total_credits: Decimal = Decimal(100)
    """What `/credits` reports as purchased (USD)."""
    credits_need_management_key: bool = False
    """`/credits` answers the key 403 "Only management keys can perform this operation", as OpenRouter
    answers an ordinary key since 2026; False: it answers, as it did any key in 2025."""
    default_model: str = "openai/gpt-4o-mini"
    """The model used when a request names none."""
    serve_dearest: bool = False
    """Serve each answer from the dearest endpoint of the model its `provider.max_price` allows, as
    OpenRouter's load balancing sometimes does (`sandbox.endpoints`); False: the cheapest, at the listed
    prices."""

    def update(self, values: Mapping[str, Any]) -> None:
        """Set the named fields (unknown names raise ValueError)."""
        names = {f.name for f in fields(self)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        for name, value in values.items():
            if value is None:
                continue
            kind = type(getattr(self, name))
            if kind is bool and not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, not {value!r}")
            setattr(self, name, Decimal(str(value)) if kind is Decimal else kind(value))

    def to_json(self) -> dict[str, Any]:
        """A JSON-able view (money as decimal strings)."""
        data = asdict(self)
        data["total_credits"] = str(self.total_credits)
        return data


@dataclass(slots=True)
class LedgerEntry:
    """One chat request the sandbox received. `cost` is what was billed (0 for failures)."""

    time: float
    key_label: str | None = None
    requested_model: str | None = None
    served_model: str | None = None
    stream: bool = False
    max_tokens: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = Decimal(0)
    status: int | None = None
    fault: str | None = None
    failed_attempts: list[dict[str, Any]] = field(default_factory=list)
    client_disconnected: bool = False
    generation_id: str | None = None
    finish_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able view, `cost` as a decimal string."""
        data = asdict(self)
        data["cost"] = str(self.cost)
        return data


def mask_key(key: str) -> str:
    """`sk-or-v1-abc...xyz`: enough to recognise a key, never the key itself."""
    if len(key) >= 16:
        return f"{key[:12]}...{key[-3:]}"
    return f"{key[: len(key) // 4]}..."


def _spread(p50: float, spread: Mapping[str, float], digits: int) -> Percentiles:
    return {name: round(p50 * factor, digits) for name, factor in spread.items()}


def _percentiles(value: float | Mapping[str, float], spread: Mapping[str, float], digits: int) -> Percentiles:
    if isinstance(value, Mapping):
        return {name: float(value[name]) for name in spread if name in value}
    return _spread(float(value), spread, digits)


class SandboxState:
    """Everything the sandbox knows; safe to read and change from tests between requests."""

    def __init__(self, catalog: Catalog, *, api_key: str = DEFAULT_API_KEY, config: SandboxConfig | None = None):
        self.catalog = catalog
        self.api_key = api_key
        self.config = config or SandboxConfig()
        self._initial_config = replace(self.config)
        self.faults = FaultBook()
        self.prefix_cache = PrefixCache()
        self.ledger: list[LedgerEntry] = []
        self.generations: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.key_limit: Decimal | None = None
        self.limit_remaining: Decimal | None = None
        self._billed = Decimal(0)
        self._requests = 0
        self._stats: dict[str, tuple[Percentiles, Percentiles]] = {}
        self.connections = 0
        """TCP connections accepted so far (a client that reuses its connections opens few)."""

    @property
    def key_label(self) -> str:
        """The masked key, as `/key` shows it."""
        return mask_key(self.api_key)

    def count_connection(self) -> None:
        """Count one accepted TCP connection."""
        self.connections += 1

    def record(self, entry: LedgerEntry) -> LedgerEntry:
        """Add a request to the ledger (old entries are dropped past 100,000; totals are kept)."""
        self.ledger.append(entry)
        self._requests += 1
        if len(self.ledger) > _KEEP_ENTRIES:
            del self.ledger[: len(self.ledger) - _KEEP_ENTRIES]
        return entry

    def charge(self, entry: LedgerEntry, cost: Decimal) -> None:
        """Bill a served request: the entry, the totals and the key's remaining limit."""
        entry.cost = cost
        self._billed += cost
        if self.limit_remaining is not None:
            self.limit_remaining -= cost

    def billed_total(self) -> Decimal:
        """Everything billed since start (or the last reset), in USD."""
        return self._billed

    @property
    def request_count(self) -> int:
        """Chat requests received since start (or the last reset)."""
        return self._requests

    def set_key_limit(self, limit: Decimal | None) -> None:
        """Give the key a credit limit (USD; None removes it). The remaining amount restarts at it."""
        self.key_limit = None if limit is None else Decimal(limit)
        self.limit_remaining = self.key_limit

    def set_stats(
        self,
        model: str,
        *,
        latency_ms: float | Mapping[str, float] | None = None,
        throughput: float | Mapping[str, float] | None = None,
    ) -> None:
        """Set a model's endpoint stats: a p50 number (other percentiles derived) or {p50, p75, p90, p99}."""
        found = self.catalog.get(model)
        model_id = found.id if found else model
        latency, speed = self.stats_for(found) if found else (_spread(500, _LATENCY_SPREAD, 0), {})
        if latency_ms is not None:
            latency = _percentiles(latency_ms, _LATENCY_SPREAD, 0)
        if throughput is not None:
            speed = _percentiles(throughput, _THROUGHPUT_SPREAD, 1)
        self._stats[model_id] = (latency, speed)

    def stats_for(self, model: CatalogModel) -> tuple[Percentiles, Percentiles]:
        """(latency ms to first token, throughput tokens/s) percentiles of a model's endpoint."""
        if model.id in self._stats:
            return self._stats[model.id]
        digest = model.digest()
        latency = _spread(float(250 + digest % 1000), _LATENCY_SPREAD, 0)
        speed = _spread(float(30 + (digest >> 16) % 170), _THROUGHPUT_SPREAD, 1)
        return latency, speed

    def store_generation(self, generation_id: str, record: dict[str, Any]) -> None:
        """Keep a generation record for `/generation` (the oldest go past 100,000)."""
        self.generations[generation_id] = record
        if len(self.generations) > _KEEP_ENTRIES:
            self.generations.popitem(last=False)

    def reset(self) -> None:
        """Back to the start: no faults, ledger, cache memory, key limit or stats; config as first given."""
        for item in fields(self.config):
            setattr(self.config, item.name, getattr(self._initial_config, item.name))
        self.faults.clear()
        self.prefix_cache.clear()
        self.ledger.clear()
        self.generations.clear()
        self.set_key_limit(None)
        self._billed = Decimal(0)
        self._requests = 0
        self._stats.clear()

    def now(self) -> float:
        """The wall clock (seconds)."""
        return time.time()
