"""HoldRenewal: the budget holds of requests in flight are renewed while they run, with no write for a short
request, and a hold no longer renewed (its process died) still expires."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

from modelyard.errors import StoreUnavailableError
from modelyard.routing.budget import BudgetManager
from modelyard.routing.renewal import LONGEST_RENEWED_S, HoldRenewal
from modelyard.store.base import MEMORY, BudgetLimits, LedgerRow, Store
from modelyard.store.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio

START = 1_787_000_000.0
LIFETIME = 60.0
WORST = Decimal("0.03")


class Clock:
    """Epoch seconds that move only when a test (or the fake sleep) moves them."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class RecordingStore:
    """A real store whose `renew` calls are recorded, and fail while `failures` lasts."""

    store: Store
    renewals: list[list[str]] = field(default_factory=list)
    failures: int = 0

    async def renew(self, reservation_ids: Sequence[str], *, expires_at: float, now: float) -> set[str]:
        self.renewals.append(list(reservation_ids))
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("the store does not answer")
        return await self.store.renew(reservation_ids, expires_at=expires_at, now=now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@dataclass
class AdvancingSleep:
    """The renewal loop's wait: recorded, and the clock moves on at once."""

    clock: Clock
    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.now += seconds
        await anyio.lowlevel.checkpoint()


@dataclass
class Setup:
    clock: Clock
    sleep: AdvancingSleep
    store: RecordingStore
    budgets: BudgetManager

    @property
    def renewal(self) -> HoldRenewal:
        return self.budgets.renewal

    async def held(self) -> Decimal:
        """What the budget counts as held by requests in flight now."""
        return (await self.budgets.totals()).reserved


@pytest.fixture(params=[Decimal("0.05"), Decimal(1000)], ids=["near-the-limit", "leased"])
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    """A budget manager over an in-memory store: near its daily limit each hold is a reservation of its own,
    far from it holds are drawn from the store's lease."""
    clock = Clock()
    async with SQLiteStore(MEMORY) as store:
        recording, sleep = RecordingStore(store), AdvancingSleep(clock)
        limits = BudgetLimits(daily=request.param)
        budgets = BudgetManager(cast(Store, recording), limits, clock=clock, reservation_ttl_s=LIFETIME, sleep=sleep)
        yield Setup(clock, sleep, recording, budgets)


def _row(row_id: str, cost: str) -> LedgerRow:
    return LedgerRow(id=row_id, ts=START, requested_model="auto", cost=Decimal(cost))


async def test_a_request_shorter_than_a_third_of_the_lifetime_causes_no_store_write(setup: Setup) -> None:
    """Looks before a third of the lifetime has passed, and after the request settled, write nothing."""
    hold = await setup.budgets.reserve(WORST)
    setup.clock.now += LIFETIME / 3 - 0.1
    assert await setup.renewal.renew_due() == 0
    await setup.budgets.settle(hold, _row("short", "0.01"))
    setup.clock.now += LIFETIME
    assert await setup.renewal.renew_due() == 0
    assert setup.store.renewals == []


async def test_a_hold_older_than_a_third_of_its_lifetime_is_renewed_for_a_whole_lifetime(setup: Setup) -> None:
    """Renewed at 25 s, the hold still counts at 80 s, past the 60 s it was taken for, until 85 s."""
    await setup.budgets.reserve(WORST)
    setup.clock.now += 25
    assert await setup.renewal.renew_due() == 1
    setup.clock.now = START + 84.9
    assert await setup.held() == WORST
    setup.clock.now = START + 85
    assert await setup.held() == 0


async def test_the_holds_due_are_renewed_together_in_one_store_write(setup: Setup) -> None:
    """Two old holds and a new one: one write, naming the two old ones."""
    first = await setup.budgets.reserve(Decimal("0.01"))
    second = await setup.budgets.reserve(Decimal("0.01"))
    setup.clock.now += 30
    await setup.budgets.reserve(Decimal("0.01"))
    assert await setup.renewal.renew_due() == 2
    assert [sorted(ids) for ids in setup.store.renewals] == [sorted([first.id, second.id])]


async def test_a_hold_never_settled_is_renewed_for_a_day_at_most_then_left_to_expire(setup: Setup) -> None:
    """A request that never settles its hold (a bug) does not keep its room for the life of the process."""
    await setup.budgets.reserve(WORST)
    for _ in range(int(LONGEST_RENEWED_S // 30) + 2):
        setup.clock.now += 30
        await setup.renewal.renew_due()
    assert setup.renewal.tracked == 0
    setup.clock.now += LIFETIME
    assert await setup.held() == 0


async def test_settled_released_and_handed_over_holds_are_no_longer_renewed(setup: Setup) -> None:
    """Only holds of requests still running are renewed; the one handed to the reconciler keeps the expiry
    its last renewal gave it."""
    settled, released, handed = [await setup.budgets.reserve(Decimal("0.01")) for _ in range(3)]
    setup.clock.now += 30
    assert await setup.renewal.renew_due() == 3
    await setup.budgets.settle(settled, _row("settled", "0.01"))
    await setup.budgets.release(released)
    kept = setup.budgets.let_expire(handed)
    assert (kept.id, kept.amount, kept.expires_at) == (handed.id, handed.amount, START + 30 + LIFETIME)
    setup.clock.now += 30
    assert await setup.renewal.renew_due() == 0 and setup.renewal.tracked == 0
    assert len(setup.store.renewals) == 1


async def test_a_failed_renewal_is_logged_and_tried_again_at_the_next_look(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """The store does not answer once: a warning, nothing raised, and the next look renews the hold."""
    await setup.budgets.reserve(WORST)
    setup.store.failures = 1
    setup.clock.now += 25
    with caplog.at_level(logging.WARNING, logger="modelyard.routing.renewal"):
        assert await setup.renewal.renew_due() == 0
    assert "could not renew 1 budget hold(s)" in caplog.text and "does not answer" in caplog.text
    setup.clock.now += LIFETIME / 6
    assert await setup.renewal.renew_due() == 1
    setup.clock.now = START + 70
    assert await setup.held() == WORST


async def test_a_hold_that_expired_before_it_could_be_renewed_is_logged_and_no_longer_tracked(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """The store was unreachable for a whole lifetime: the hold is gone, and it is not brought back."""
    hold = await setup.budgets.reserve(WORST)
    setup.clock.now += LIFETIME + 1
    with caplog.at_level(logging.WARNING, logger="modelyard.routing.renewal"):
        assert await setup.renewal.renew_due() == 0
    assert f"the budget hold {hold.id} expired before it could be renewed" in caplog.text
    assert setup.renewal.tracked == 0 and await setup.held() == 0


async def _run_for(setup: Setup, seconds: float) -> None:
    """Run the renewal loop while its waits move the fake clock `seconds` ahead."""
    until = setup.clock.now + seconds
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            await group.start(setup.renewal.run)
            while setup.clock.now < until:
                await anyio.lowlevel.checkpoint()
            group.cancel_scope.cancel()


async def test_the_loop_keeps_a_request_held_for_many_lifetimes_looking_every_sixth_of_one(setup: Setup) -> None:
    """A request running for 5 lifetimes keeps its hold all along, from one write every half lifetime."""
    await setup.budgets.reserve(WORST)
    await _run_for(setup, 5 * LIFETIME)
    assert set(setup.sleep.waits) == {LIFETIME / 6}
    assert await setup.held() == WORST
    assert 9 <= len(setup.store.renewals) <= 10


async def test_the_hold_of_a_process_that_stops_renewing_expires_a_lifetime_after_its_last_renewal(
    setup: Setup,
) -> None:
    """The loop ran for 2 lifetimes, then the process died: the hold still counts just before its last
    renewal's lifetime ends, and not after."""
    hold = await setup.budgets.reserve(WORST)
    await _run_for(setup, 2 * LIFETIME)
    last = setup.renewal.current(hold).expires_at
    assert last > START + 2 * LIFETIME
    setup.clock.now = last - 0.1
    assert await setup.held() == WORST
    setup.clock.now = last
    assert await setup.held() == 0
