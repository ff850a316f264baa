"""A circuit breaker per model: stop sending to a model that keeps failing, then probe it again.

```
closed ──(failure_threshold consecutive failures)──▶ open ──(cooldown_s elapsed)──▶ half_open
  ▲                                                   ▲                                 │
  └──────────────── trial succeeds ───────────────────┼──────── trial fails ────────────┘
```

In `half_open` exactly one trial request is let through at a time. The breaker only counts what it
is told: the router decides which failures say something about the model (a 5xx or a timeout does,
a 400 caused by the request does not). All operations are O(1) dictionary work, with no locks:
the router runs on one event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BreakerState", "CircuitBreakers"]

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class _Breaker:
    """The state of one model's breaker."""

    failures: int = 0
    opened_at: float | None = None  # set while open or half-open
    trial_started: float | None = None  # set while a half-open trial is in flight


class CircuitBreakers:
    """The circuit breakers of every model, over an injected clock."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create breakers that are all closed.

        Args:
            failure_threshold: consecutive failures that open a closed breaker.
            cooldown_s: how long an open breaker refuses before it lets one trial through. A
                half-open trial whose outcome is never recorded (a cancelled request) is
                presumed lost after this long too, so another trial may start.
            clock: monotonic seconds.
        """
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._breakers: dict[str, _Breaker] = {}

    def allow(self, model: str) -> bool:
        """True when a request may be sent to `model` now.

        A closed breaker always allows. An open one refuses until its cooldown has elapsed, then
        turns half-open and allows exactly one trial until that trial's outcome is recorded.
        """
        breaker = self._breakers.get(model)
        if breaker is None or breaker.opened_at is None:
            return True
        now = self._clock()
        if now - breaker.opened_at < self._cooldown_s:
            return False
        if breaker.trial_started is not None and now - breaker.trial_started < self._cooldown_s:
            return False
        breaker.trial_started = now
        return True

    def trial_in_s(self, model: str) -> float | None:
        """Seconds until `model`'s breaker lets a trial request through (0: it would now); None when closed.

        The end of the cooldown, or, while a half-open trial is in flight, the moment that trial is
        presumed lost and another may start.
        """
        breaker = self._breakers.get(model)
        if breaker is None or breaker.opened_at is None:
            return None
        since = breaker.opened_at if breaker.trial_started is None else max(breaker.opened_at, breaker.trial_started)
        return max(0.0, since + self._cooldown_s - self._clock())

    def record_success(self, model: str) -> None:
        """A request to `model` succeeded: close its breaker and forget its failures."""
        breaker = self._breakers.setdefault(model, _Breaker())
        breaker.failures = 0
        breaker.opened_at = None
        breaker.trial_started = None

    def record_failure(self, model: str) -> None:
        """A request to `model` failed in a way that reflects on the model or its provider.

        Consecutive failures reaching the threshold open the breaker; a failed half-open trial
        opens it again with a fresh cooldown. Late failures of requests that started before the
        breaker opened do not extend the cooldown.
        """
        breaker = self._breakers.setdefault(model, _Breaker())
        breaker.failures += 1
        if breaker.trial_started is not None:
            breaker.opened_at = self._clock()
            breaker.trial_started = None
        elif breaker.opened_at is None and breaker.failures >= self._threshold:
            breaker.opened_at = self._clock()

    def state(self, model: str) -> BreakerState:
        """The state of `model`'s breaker (an open breaker past its cooldown reads `half_open`)."""
        breaker = self._breakers.get(model)
        if breaker is None:
            return "closed"
        return self._state_of(breaker, self._clock())

    def snapshot(self) -> dict[str, BreakerState]:
        """The state of every model that ever had a success or failure recorded."""
        now = self._clock()
        return {model: self._state_of(breaker, now) for model, breaker in self._breakers.items()}

    def open_models(self) -> set[str]:
        """The models whose breaker refuses every request now (open and still cooling down)."""
        now = self._clock()
        return {model for model, b in self._breakers.items() if self._state_of(b, now) == "open"}

    def _state_of(self, breaker: _Breaker, now: float) -> BreakerState:
        if breaker.opened_at is None:
            return "closed"
        if breaker.trial_started is None and now - breaker.opened_at < self._cooldown_s:
            return "open"
        return "half_open"
