"""What one request's attempts have done so far, as the fallback loop keeps it: the attempts, the money
they spent or hold against the request's cap, and what came of the candidate being tried."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from modelyard.errors import SchemaValidationError, UpstreamError
from modelyard.routing.price_cap import PriceCap
from modelyard.routing.result import AttemptRecord, RouteResult

__all__ = ["AttemptPace", "CandidateOutcome", "RequestProgress", "RequestSpend"]


class RequestProgress:
    """How far one request got: its attempts so far, and whether its ledger row is written (or its
    answer's, which is committed before the result is set)."""

    def __init__(self) -> None:
        self.attempts: list[AttemptRecord] = []
        self.outcome: CandidateOutcome | None = None
        self._recorded = False

    @property
    def recorded(self) -> bool:
        return self._recorded or (self.outcome is not None and self.outcome.result is not None)

    @recorded.setter
    def recorded(self, value: bool) -> None:
        self._recorded = value


class RequestSpend:
    """What one request's earlier attempts cost or may cost (answers billed and rejected, holds of
    abandoned answers), so that together with the next attempt's worst case it stays within the
    request's cap (`max_cost`, or the per-request limit): the cap is for the request, not each attempt.

    `billed` is what those attempts were billed, for the result's `request_cost`: None once one of
    them may have been billed at a cost not known. `unrecorded` is True once one of them may have been
    billed and no ledger row of its own will say so (no reconciler took its hold): a failed request's own
    row then has an unknown cost, not 0.
    """

    def __init__(self, cap: Decimal | None) -> None:
        self.cap = cap
        self.amount = Decimal(0)
        self.billed: Decimal | None = Decimal(0)
        self.unrecorded = False

    def add(self, amount: Decimal) -> None:
        self.amount += amount

    def bill(self, cost: Decimal | None) -> None:
        """An earlier attempt was billed `cost` (None: it may have been, at a cost not known)."""
        self.billed = None if cost is None or self.billed is None else self.billed + cost

    def cap_left(self) -> Decimal | None:
        if self.cap is None:
            return None
        return max(self.cap - self.amount, Decimal(0))


@dataclass
class CandidateOutcome:
    """What the attempts on one candidate came to: attempts used, the result or the final error, the failures;
    and the price cap they were sent with."""

    spent: RequestSpend
    used: int = 0
    result: RouteResult | None = None
    final: UpstreamError | SchemaValidationError | None = None
    cap: PriceCap | None = None
    """The `provider.max_price` its attempts carry (None: no limit in force)."""

    def __post_init__(self) -> None:
        self.failures: list[tuple[str, BaseException]] = []


class AttemptPace:
    """How fast the upstream answered one attempt, net of the time its stream's consumer took: the
    speed a model is ranked by must not be a slow reader's."""

    __slots__ = ("began", "consumer_s", "first_text")

    def __init__(self, began: float) -> None:
        self.began = began
        self.first_text: float | None = None
        self.consumer_s = 0.0

    def text_at(self, now: float) -> float:
        if self.first_text is None:
            self.first_text = now
        return now

    def resumed(self, paused: float, now: float) -> None:
        self.consumer_s += now - paused

    def upstream_ms(self, now: float) -> tuple[float, float]:
        """Time to the first text and generating time after it, in ms; a whole answer (not streamed) has
        no generating time of its own: all of it is the wait."""
        if self.first_text is None:
            return (now - self.began) * 1000, 0.0
        return (self.first_text - self.began) * 1000, max(0.0, now - self.first_text - self.consumer_s) * 1000
