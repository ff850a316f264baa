"""BudgetManager: set_budget only tightens (and what it sets persists), reservations hold every cap."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from modelyard.errors import BudgetExceededError
from modelyard.routing.budget import BudgetManager, BudgetRaiseRefusedError, source_of
from modelyard.store.base import BudgetLimits, LedgerRow
from modelyard.store.sqlite import SQLiteStore

NOW = 1_787_000_000.0
CONFIGURED = BudgetLimits(daily=Decimal("10"), monthly=Decimal("100"), per_request=Decimal("1"))


@pytest.fixture
async def store() -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(":memory:") as opened:
        yield opened


def _manager(store: SQLiteStore, configured: BudgetLimits = CONFIGURED) -> BudgetManager:
    return BudgetManager(store, configured, clock=lambda: NOW)


@pytest.mark.anyio
async def test_the_limits_in_force_start_as_the_configured_ones(store: SQLiteStore) -> None:
    """With nothing tightened, the limits are the operator's."""
    assert await _manager(store).limits() == CONFIGURED


@pytest.mark.anyio
async def test_lowering_a_limit_takes_effect_and_leaves_the_others(store: SQLiteStore) -> None:
    """tighten(daily=5) lowers daily only; monthly and per_request stay as configured."""
    limits = await _manager(store).tighten(daily=Decimal("5"))
    assert limits == BudgetLimits(daily=Decimal("5"), monthly=Decimal("100"), per_request=Decimal("1"))


@pytest.mark.anyio
async def test_a_lowered_limit_persists_for_a_new_manager_on_the_same_store(store: SQLiteStore) -> None:
    """A restart (a new manager over the same store) keeps the tightened limits."""
    await _manager(store).tighten(daily=Decimal("5"), per_request=Decimal("0.25"))
    limits = await _manager(store).limits()
    assert (limits.daily, limits.monthly, limits.per_request) == (Decimal("5"), Decimal("100"), Decimal("0.25"))


@pytest.mark.anyio
async def test_raising_a_limit_is_refused_with_a_message_saying_how(store: SQLiteStore) -> None:
    """Asking for more than the limit in force is refused, naming the limit and the operator's route."""
    manager = _manager(store)
    with pytest.raises(BudgetRaiseRefusedError, match=r"can only tighten: daily is \$10, so \$20 would raise it") as e:
        await manager.tighten(daily=Decimal("20"))
    assert "MODELYARD_BUDGET__" in str(e.value)
    assert await manager.limits() == CONFIGURED


@pytest.mark.anyio
async def test_a_limit_lowered_earlier_cannot_be_raised_back_towards_the_configured_one(store: SQLiteStore) -> None:
    """After lowering daily to 5, asking for 8 (still under the configured 10) is a raise and refused."""
    await _manager(store).tighten(daily=Decimal("5"))
    manager = _manager(store)
    with pytest.raises(BudgetRaiseRefusedError, match="daily is \\$5"):
        await manager.tighten(daily=Decimal("8"))
    assert (await manager.limits()).daily == Decimal("5")


@pytest.mark.anyio
async def test_a_refused_call_changes_nothing_even_for_the_fields_that_would_tighten(store: SQLiteStore) -> None:
    """tighten(daily lower, monthly higher) is refused as a whole: daily is not lowered either."""
    manager = _manager(store)
    with pytest.raises(BudgetRaiseRefusedError, match="monthly"):
        await manager.tighten(daily=Decimal("5"), monthly=Decimal("500"))
    assert await _manager(store).limits() == CONFIGURED


@pytest.mark.anyio
async def test_setting_a_limit_that_was_unlimited_is_a_tightening(store: SQLiteStore) -> None:
    """With no configured monthly budget, setting one is allowed and persists; raising it then is not."""
    configured = BudgetLimits(daily=Decimal("10"))
    await _manager(store, configured).tighten(monthly=Decimal("50"))
    manager = _manager(store, configured)
    assert (await manager.limits()).monthly == Decimal("50")
    with pytest.raises(BudgetRaiseRefusedError):
        await manager.tighten(monthly=Decimal("60"))


@pytest.mark.anyio
async def test_a_negative_limit_is_refused(store: SQLiteStore) -> None:
    """A limit below zero is not a budget."""
    with pytest.raises(BudgetRaiseRefusedError, match="from 0 to"):
        await _manager(store).tighten(per_request=Decimal("-1"))


@pytest.mark.anyio
async def test_setting_a_limit_to_its_current_value_is_allowed(store: SQLiteStore) -> None:
    """Equal is not a raise."""
    assert (await _manager(store).tighten(daily=Decimal("10"))).daily == Decimal("10")


@pytest.mark.anyio
async def test_a_reservation_above_the_request_cost_cap_is_refused(store: SQLiteStore) -> None:
    """reserve(0.5, cost_cap=0.1) fails on per_request even though the configured cap is $1."""
    manager = _manager(store)
    with pytest.raises(BudgetExceededError) as caught:
        await manager.reserve(Decimal("0.5"), cost_cap=Decimal("0.1"))
    assert caught.value.budget == "per_request"
    assert caught.value.estimate == Decimal("0.5")
    assert (await manager.totals()).reserved == 0


@pytest.mark.anyio
async def test_a_reservation_within_the_cost_cap_is_held(store: SQLiteStore) -> None:
    """reserve(0.05, cost_cap=0.1) succeeds and counts as reserved until released."""
    manager = _manager(store)
    reservation = await manager.reserve(Decimal("0.05"), cost_cap=Decimal("0.1"))
    assert reservation.amount == Decimal("0.05")
    assert (await manager.totals()).reserved == Decimal("0.05")
    await manager.release(reservation)
    assert (await manager.totals()).reserved == 0


@pytest.mark.anyio
async def test_a_looser_cost_cap_does_not_lift_the_per_request_budget(store: SQLiteStore) -> None:
    """A request cap of $5 cannot exceed the configured per-request $1: the tighter one holds."""
    with pytest.raises(BudgetExceededError, match="per_request"):
        await _manager(store).reserve(Decimal("2"), cost_cap=Decimal("5"))


@pytest.mark.anyio
async def test_a_tightened_daily_limit_refuses_a_reservation_that_no_longer_fits(store: SQLiteStore) -> None:
    """After daily drops to $0.75, a second $0.5 hold does not fit beside the first."""
    manager = _manager(store)
    await manager.tighten(daily=Decimal("0.75"))
    await manager.reserve(Decimal("0.5"))
    with pytest.raises(BudgetExceededError) as caught:
        await manager.reserve(Decimal("0.5"))
    assert caught.value.budget == "daily"
    assert caught.value.remaining == Decimal("0.25")


@pytest.mark.anyio
async def test_settling_turns_the_hold_into_spend(store: SQLiteStore) -> None:
    """settle() drops the reservation and counts the ledger row's actual cost as spent."""
    manager = _manager(store)
    reservation = await manager.reserve(Decimal("0.5"))
    await manager.settle(reservation, LedgerRow(id="r1", ts=NOW, requested_model="auto", cost=Decimal("0.0123")))
    totals = await manager.totals()
    assert (totals.reserved, totals.spent_today, totals.spent_month) == (0, Decimal("0.0123"), Decimal("0.0123"))


@pytest.mark.anyio
async def test_a_limit_tightened_by_another_instance_holds_here_at_once(store: SQLiteStore) -> None:
    """Two servers (or the CLI and a server) share the store: one's set_budget binds the other's reservations."""
    server, cli = _manager(store), _manager(store)
    assert (await server.limits()).daily == Decimal("10")
    await cli.tighten(daily=Decimal("0.3"))
    assert (await server.limits()).daily == Decimal("0.3")
    with pytest.raises(BudgetExceededError, match="daily"):
        await server.reserve(Decimal("0.5"))


@pytest.mark.anyio
async def test_a_limit_beyond_the_largest_is_refused_by_the_library_too(store: SQLiteStore) -> None:
    with pytest.raises(BudgetRaiseRefusedError, match="from 0 to 1,000,000,000"):
        await _manager(store, BudgetLimits()).tighten(daily=Decimal("1e9999999"))


@pytest.mark.anyio
async def test_an_out_of_range_limit_an_older_release_stored_is_ignored_not_fatal(store: SQLiteStore) -> None:
    await store.set_value("budget:overrides:v1", '{"daily": "1E+9999999", "monthly": "5", "per_request": null}')
    limits = await _manager(store, BudgetLimits()).limits()
    assert (limits.daily, limits.monthly) == (None, Decimal(5))


@pytest.mark.anyio
async def test_a_tightening_is_stored_with_when_it_was_set_and_the_others_keep_theirs(store: SQLiteStore) -> None:
    """Each limit lowered at run time keeps the time it was set; lowering another later leaves the first's time."""
    await BudgetManager(store, CONFIGURED, clock=lambda: NOW).tighten(daily=Decimal("5"))
    await BudgetManager(store, CONFIGURED, clock=lambda: NOW + 60).tighten(per_request=Decimal("0.5"))
    tightenings = await _manager(store).tightenings()
    assert tightenings.limits == BudgetLimits(daily=Decimal("5"), per_request=Decimal("0.5"))
    assert tightenings.set_at == {"daily": NOW, "per_request": NOW + 60}


@pytest.mark.anyio
async def test_a_tightening_an_older_release_stored_without_a_time_still_loads(store: SQLiteStore) -> None:
    await store.set_value("budget:overrides:v1", '{"daily": "5", "monthly": null, "per_request": "0.5"}')
    tightenings = await _manager(store).tightenings()
    assert tightenings.limits == BudgetLimits(daily=Decimal("5"), per_request=Decimal("0.5"))
    assert tightenings.set_at == {}


@pytest.mark.anyio
async def test_a_malformed_time_beside_a_stored_tightening_is_ignored_not_fatal(store: SQLiteStore) -> None:
    stored = '{"daily": "5", "monthly": null, "per_request": null, "set_at": {"daily": NaN, "monthly": 1}}'
    await store.set_value("budget:overrides:v1", stored)
    tightenings = await _manager(store).tightenings()
    assert (tightenings.limits.daily, tightenings.set_at) == (Decimal("5"), {})


@pytest.mark.anyio
async def test_each_tightening_and_reset_is_logged_at_warning_with_the_limits_before_and_after(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """An agent's set_budget (or the CLI) changes what every later request may spend: the log says who and how."""
    manager = _manager(store, BudgetLimits(daily=Decimal("10")))
    with caplog.at_level(logging.WARNING, logger="modelyard.routing.budget"):
        await manager.tighten(daily=Decimal("0.5"), per_request=Decimal("1e-30"), by="MCP client 'agent' 1.0")
        await manager.clear_tightenings(by="the CLI")
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    tightened, cleared = (r.getMessage() for r in caplog.records)
    assert tightened == (
        "budget tightened at run time by MCP client 'agent' 1.0: daily $10 -> $0.5, "
        "per_request no limit -> $0.000000000000000000000000000001"
    )
    assert cleared == (
        "budget tightenings cleared by the CLI: daily $0.5 -> $10, "
        "per_request $0.000000000000000000000000000001 -> no limit"
    )


@pytest.mark.anyio
async def test_raising_a_limit_lowered_at_run_time_is_refused_naming_the_reset_not_the_config(
    store: SQLiteStore,
) -> None:
    """per_request was never configured: raising MODELYARD_BUDGET__PER_REQUEST would not lift it, `--reset` does.
    The amount is written in plain digits, not `$1E-30`."""
    manager = _manager(store, BudgetLimits())
    await manager.tighten(per_request=Decimal("1e-30"))
    with pytest.raises(BudgetRaiseRefusedError) as caught:
        await manager.tighten(per_request=Decimal("1"))
    message = str(caught.value)
    assert "per_request is $0.000000000000000000000000000001, so $1 would raise it" in message
    assert "`modelyard budget --reset`" in message and "MODELYARD_BUDGET__" not in message and "E-30" not in message


@pytest.mark.anyio
async def test_a_reservation_refused_by_a_limit_lowered_at_run_time_names_the_reset(store: SQLiteStore) -> None:
    """The daily $10 is configured, the $0 in force was set at run time: the advice is `--reset`, not the config."""
    manager = _manager(store)
    await manager.tighten(daily=Decimal("0"))
    with pytest.raises(BudgetExceededError) as caught:
        await manager.reserve(Decimal("0.5"))
    message = str(caught.value)
    assert caught.value.source == "run-time" and "`modelyard budget --reset`" in message
    assert "MODELYARD_BUDGET__DAILY" not in message


@pytest.mark.anyio
async def test_a_reservation_refused_by_the_configured_limit_still_names_the_config(store: SQLiteStore) -> None:
    with pytest.raises(BudgetExceededError) as caught:
        await _manager(store).reserve(Decimal("2"))
    assert "MODELYARD_BUDGET__PER_REQUEST" in str(caught.value) and "--reset" not in str(caught.value)


@pytest.mark.parametrize(
    ("configured", "tightened", "source"),
    [
        (None, None, "none"),
        ("10", None, "config"),
        (None, "1", "run-time"),
        ("10", "1", "run-time"),
        ("1", "1", "both"),
        ("1", "10", "config"),
    ],
)
def test_the_lower_of_the_configured_limit_and_the_tightening_is_the_source_in_force(
    configured: str | None, tightened: str | None, source: str
) -> None:
    def value(text: str | None) -> Decimal | None:
        return None if text is None else Decimal(text)

    assert source_of(value(configured), value(tightened)) == source


# --------------------------------------------------------------------------- what a refusal advises


def _over(budget: str, amount: str, *, limit: str, spent: str, held: str = "0") -> str:
    left = max(Decimal(0), Decimal(limit) - Decimal(spent) - Decimal(held))
    refusal = BudgetExceededError.over_limit(
        budget, Decimal(amount), limit=Decimal(limit), spent=Decimal(spent), held=Decimal(held), remaining=left
    )
    return str(refusal)


def test_a_used_up_daily_budget_says_it_resets_at_midnight_utc_and_only_the_operator_can_raise_it() -> None:
    """With nothing left no max_tokens fits and set_budget cannot raise it: the advice says when and who."""
    message = _over("daily", "0.0024657", limit="0", spent="0")
    assert "the daily budget is exhausted until it resets at 00:00 UTC" in message
    assert "only the operator can raise it (MODELYARD_BUDGET__DAILY" in message
    assert "Lower max_tokens" not in message and "raise the budget" not in message


def test_a_spent_monthly_budget_says_it_resets_on_the_first_of_the_month() -> None:
    """The monthly budget's period is the UTC month: it resets on the 1st."""
    message = _over("monthly", "0.01", limit="5", spent="5.2")
    assert "the monthly budget is exhausted until it resets on the 1st of the month at 00:00 UTC" in message
    assert "MODELYARD_BUDGET__MONTHLY" in message and "Lower max_tokens" not in message


def test_a_budget_with_some_left_says_how_small_a_request_would_fit() -> None:
    """$0.002 left of the day: a request whose worst case is at most that fits, so the smaller-request advice stays."""
    message = _over("daily", "0.005", limit="1", spent="0.998")
    assert "daily budget has $0.002 left" in message
    assert "a request whose worst case is at most $0.002 fits" in message
    assert "lower max_tokens or pick a cheaper model" in message
    assert "exhausted" not in message


def test_a_budget_held_by_requests_in_flight_says_to_retry_when_they_finish() -> None:
    """Nothing is left now only because requests in flight hold it; once they settle this one fits."""
    message = _over("daily", "0.01", limit="1", spent="0.5", held="0.5")
    assert "daily budget has $0 left" in message
    assert "held by requests in flight" in message and "retry when they finish" in message
    assert "exhausted" not in message and "Lower max_tokens" not in message
