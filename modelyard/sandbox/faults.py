"""Injected faults: what goes wrong, for which model, how many times.

A fault applies to requests served by one model id (or its canonical slug), or to every model
with `"*"`. `count` is how many matching requests it hits before it vanishes (None: until cleared).
Faults are checked in the order they were added; `latency` faults add up and combine with any
other outcome, every other kind decides the outcome of the request.

Kinds, their answer, and their parameters (besides `model` and `count`):

- `rate_limit`: 429 with `Retry-After` (`retry_after` seconds, default 1). With `platform: true` it is
  OpenRouter's own limit: `X-RateLimit-Limit/-Remaining/-Reset` headers, also echoed in
  `error.metadata.headers`, the reset as epoch milliseconds in a string. Otherwise the upstream shape
  "Provider returned error" with `metadata.raw` and `metadata.provider_name`.
- `server_error`: 500 "Internal Server Error" (`status` may make it 524, 529...).
- `bad_gateway`: 502 "Provider returned error" with `metadata.provider_name` and `metadata.raw`.
- `unavailable`: 503 "Service temporarily unavailable", `Retry-After` when `retry_after` is given.
- `timeout`: 408 "Operation timed out. Please try again later."
- `moderation`: 403 with `metadata.reasons`, `flagged_input`, `provider_name`, `model_slug`.
- `payload_too_large`: 413 "Request payload too large".
- `hang`: accept the request and never answer (until the client goes away).
- `reset`: a TCP RST before any response; for streams with `after_chunks`, after that many events.
- `error_in_200`: keep-alive whitespace, then a 200 body whose top level is an `error` object
  (`status` is its code, default 502).
- `mid_stream_error`: for streams, `after_chunks` events (default 2) then the reference §5.3 error
  event with `finish_reason: "error"`, and the stream ends; not streaming, as `error_in_200`.
- `truncated_stream`: `after_chunks` events (default 2), or half of a non-streamed body, then the
  connection closes: no finish reason, no `[DONE]`.
- `malformed_json`: 200 with a body that is not JSON (a broken `data:` event for streams).
- `latency`: wait `latency_ms` before answering; adds up with other latency faults and combines
  with any outcome, success included.

Every kind but `latency` takes an optional `message`.

Status faults (`rate_limit`, `server_error`, `bad_gateway`, `unavailable`, `timeout`,
`moderation`) happen before anything is sent, so a request with a `models` list falls back to
its next model, as OpenRouter does.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from modelyard.sandbox.catalog import CatalogModel

__all__ = ["FALLBACK_KINDS", "FAULT_KINDS", "STATUS_KINDS", "Fault", "FaultBook"]

FAULT_KINDS = (
    "rate_limit",
    "server_error",
    "bad_gateway",
    "unavailable",
    "timeout",
    "moderation",
    "payload_too_large",
    "hang",
    "reset",
    "error_in_200",
    "mid_stream_error",
    "truncated_stream",
    "malformed_json",
    "latency",
)
FALLBACK_KINDS = frozenset({"rate_limit", "server_error", "bad_gateway", "unavailable", "timeout", "moderation"})
STATUS_KINDS = FALLBACK_KINDS | {"payload_too_large"}
_PARAMS = ("status", "retry_after", "latency_ms", "after_chunks", "message", "platform")


@dataclass(slots=True)
class Fault:
    """One injected fault. `count` None means it stays until cleared."""

    kind: str
    model: str = "*"
    count: int | None = None
    status: int | None = None
    retry_after: float | None = None
    latency_ms: float | None = None
    after_chunks: int | None = None
    message: str | None = None
    platform: bool = False
    id: int = field(default=0)

    def matches(self, model: CatalogModel) -> bool:
        """True when this fault applies to requests served by `model`."""
        return self.model in ("*", model.id, model.slug)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able view (for the control API)."""
        return asdict(self)


class FaultBook:
    """The faults currently armed, in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def __iter__(self) -> Iterator[Fault]:
        return iter(list(self._faults))

    def __len__(self) -> int:
        return len(self._faults)

    def add(self, *, model: str = "*", kind: str, count: int | None = None, **params: Any) -> Fault:
        """Arm a fault for `model` ("*" for all). See the module docstring for kinds and parameters.

        Raises:
            ValueError: for an unknown kind or parameter, or a count below 1.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of: {', '.join(FAULT_KINDS)}")
        unknown = set(params) - set(_PARAMS)
        if unknown:
            raise ValueError(f"unknown fault parameter(s): {', '.join(sorted(unknown))}")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (or null for 'until cleared')")
        if kind == "latency" and not params.get("latency_ms"):
            raise ValueError("a latency fault needs latency_ms")
        fault = Fault(kind=kind, model=model or "*", count=count, id=next(self._ids), **params)
        self._faults.append(fault)
        return fault

    def clear(self, model: str | None = None) -> int:
        """Disarm every fault (or those of one model); returns how many were removed."""
        before = len(self._faults)
        self._faults = [f for f in self._faults if model is not None and f.model != model]
        return before - len(self._faults)

    def take(self, model: CatalogModel) -> Fault | None:
        """The first non-latency fault for `model`, consuming one of its count."""
        for fault in self._faults:
            if fault.kind != "latency" and fault.matches(model):
                self._consume(fault)
                return fault
        return None

    def take_latency_ms(self, model: CatalogModel) -> float:
        """The sum of the latency faults for `model`, consuming one of each count."""
        total = 0.0
        for fault in [f for f in self._faults if f.kind == "latency" and f.matches(model)]:
            total += float(fault.latency_ms or 0)
            self._consume(fault)
        return total

    def _consume(self, fault: Fault) -> None:
        if fault.count is None:
            return
        fault.count -= 1
        if fault.count <= 0:
            self._faults.remove(fault)
