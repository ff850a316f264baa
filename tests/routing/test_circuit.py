"""CircuitBreakers: closed → open at the threshold, half-open after the cooldown, one trial at a time."""

from __future__ import annotations

import pytest

from modelyard.routing.circuit import CircuitBreakers


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breakers(clock: FakeClock) -> CircuitBreakers:
    return CircuitBreakers(failure_threshold=3, cooldown_s=30.0, clock=clock)


def _fail(breakers: CircuitBreakers, model: str, times: int) -> None:
    for _ in range(times):
        breakers.record_failure(model)


def test_an_unknown_model_is_closed_and_allowed(breakers: CircuitBreakers) -> None:
    """A model nothing was recorded for is closed, allowed, and absent from the snapshot."""
    assert breakers.allow("a/m")
    assert breakers.state("a/m") == "closed"
    assert breakers.snapshot() == {}
    assert breakers.open_models() == set()


def test_failures_below_the_threshold_keep_the_breaker_closed(breakers: CircuitBreakers) -> None:
    """Two failures out of a threshold of three still allow requests."""
    _fail(breakers, "a/m", 2)
    assert breakers.state("a/m") == "closed"
    assert breakers.allow("a/m")


def test_reaching_the_threshold_opens_the_breaker(breakers: CircuitBreakers) -> None:
    """The third consecutive failure opens the breaker and requests are refused."""
    _fail(breakers, "a/m", 3)
    assert breakers.state("a/m") == "open"
    assert not breakers.allow("a/m")
    assert breakers.open_models() == {"a/m"}


def test_a_success_resets_the_consecutive_failure_count(breakers: CircuitBreakers) -> None:
    """Only consecutive failures count: a success in between starts over."""
    _fail(breakers, "a/m", 2)
    breakers.record_success("a/m")
    _fail(breakers, "a/m", 2)
    assert breakers.state("a/m") == "closed"


def test_the_breaker_stays_open_during_the_cooldown(breakers: CircuitBreakers, clock: FakeClock) -> None:
    """Just before the cooldown ends the breaker still refuses."""
    _fail(breakers, "a/m", 3)
    clock.advance(29.9)
    assert not breakers.allow("a/m")
    assert breakers.state("a/m") == "open"


def test_after_the_cooldown_exactly_one_trial_is_allowed(breakers: CircuitBreakers, clock: FakeClock) -> None:
    """Half-open lets one trial through and refuses the rest while it is in flight."""
    _fail(breakers, "a/m", 3)
    clock.advance(30)
    assert breakers.state("a/m") == "half_open"
    assert breakers.open_models() == set()
    assert breakers.allow("a/m")
    assert not breakers.allow("a/m")
    assert not breakers.allow("a/m")
    assert breakers.state("a/m") == "half_open"


def test_a_successful_trial_closes_the_breaker(breakers: CircuitBreakers, clock: FakeClock) -> None:
    """Success of the half-open trial closes the breaker and clears the failures."""
    _fail(breakers, "a/m", 3)
    clock.advance(30)
    assert breakers.allow("a/m")
    breakers.record_success("a/m")
    assert breakers.state("a/m") == "closed"
    assert breakers.allow("a/m") and breakers.allow("a/m")
    _fail(breakers, "a/m", 2)
    assert breakers.state("a/m") == "closed"


def test_a_failed_trial_reopens_with_a_fresh_cooldown(breakers: CircuitBreakers, clock: FakeClock) -> None:
    """A failed half-open trial opens the breaker again for a whole new cooldown."""
    _fail(breakers, "a/m", 3)
    clock.advance(30)
    assert breakers.allow("a/m")
    clock.advance(5)
    breakers.record_failure("a/m")
    assert breakers.state("a/m") == "open"
    clock.advance(29)
    assert not breakers.allow("a/m")
    clock.advance(1)
    assert breakers.allow("a/m")


def test_a_lost_trial_frees_the_slot_after_a_cooldown(breakers: CircuitBreakers, clock: FakeClock) -> None:
    """A trial whose outcome is never recorded (cancelled) does not wedge the breaker forever."""
    _fail(breakers, "a/m", 3)
    clock.advance(30)
    assert breakers.allow("a/m")
    clock.advance(29)
    assert not breakers.allow("a/m")
    clock.advance(1)
    assert breakers.allow("a/m")


def test_late_failures_while_open_do_not_extend_the_cooldown(breakers: CircuitBreakers, clock: FakeClock) -> None:
    """Failures of requests sent before the breaker opened leave its cooldown unchanged."""
    _fail(breakers, "a/m", 3)
    clock.advance(20)
    _fail(breakers, "a/m", 2)
    clock.advance(10)
    assert breakers.allow("a/m")


def test_breakers_are_independent_per_model(breakers: CircuitBreakers) -> None:
    """Opening one model's breaker leaves the others closed."""
    _fail(breakers, "a/bad", 3)
    breakers.record_failure("b/flaky")
    breakers.record_success("c/good")
    assert not breakers.allow("a/bad")
    assert breakers.allow("b/flaky") and breakers.allow("c/good")
    assert breakers.snapshot() == {"a/bad": "open", "b/flaky": "closed", "c/good": "closed"}
    assert breakers.open_models() == {"a/bad"}


def test_a_threshold_of_one_opens_on_the_first_failure(clock: FakeClock) -> None:
    """failure_threshold=1 trips on a single failure."""
    breakers = CircuitBreakers(failure_threshold=1, cooldown_s=5, clock=clock)
    breakers.record_failure("a/m")
    assert not breakers.allow("a/m")


def test_a_threshold_below_one_is_rejected() -> None:
    """A breaker that could never close makes no sense."""
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreakers(failure_threshold=0)


def test_an_open_breaker_says_how_long_until_it_lets_a_trial_through(
    breakers: CircuitBreakers, clock: FakeClock
) -> None:
    """The wait the refusal quotes: the cooldown left, then none once half-open, then a lost trial's slot."""
    assert breakers.trial_in_s("a/m") is None
    _fail(breakers, "a/m", 3)
    clock.advance(12)
    assert breakers.trial_in_s("a/m") == pytest.approx(18)
    clock.advance(18)
    assert breakers.trial_in_s("a/m") == 0
    assert breakers.allow("a/m")
    clock.advance(5)
    assert breakers.trial_in_s("a/m") == pytest.approx(25)  # the trial in flight holds the one slot
    breakers.record_success("a/m")
    assert breakers.trial_in_s("a/m") is None
