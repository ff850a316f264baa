"""`Store.renew`: the holds of requests still in flight live on, an expired or settled one is never brought
back, and a hold no longer renewed expires. Run against the SQLite store here (its holds reserved one by one,
or drawn from its lease) and against Redis in `tests/store/test_redis.py`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from modelyard.errors import BudgetExceededError
from modelyard.store import BudgetLimits, SQLiteStore
from modelyard.store.base import Store
from tests.store.test_sqlite import NOW, _row

pytestmark = pytest.mark.anyio
D = Decimal
EXACT = BudgetLimits(daily=D("0.05"))
"""A day too small for a lease (each hold is a reservation of its own)."""
ROOMY = BudgetLimits(daily=D(1000))
"""A day roomy enough for the SQLite store to draw holds from its lease."""
BOTH = pytest.mark.parametrize("limits", [EXACT, ROOMY], ids=["exact", "roomy"])
HOLD = D("0.02")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(tmp_path / "modelyard.db") as opened:
        yield opened


@BOTH
async def test_a_renewed_hold_counts_until_its_new_expiry(store: Store, limits: BudgetLimits) -> None:
    """Taken for 60 s and renewed at 40 s for 60 s more: it still counts at 99 s, and no longer at 100 s."""
    hold = await store.reserve(HOLD, limits, now=NOW, ttl_s=60)
    assert await store.renew([hold.id], expires_at=NOW + 100, now=NOW + 40) == {hold.id}
    await store.reserve(D("0.001"), limits, now=NOW + 99, ttl_s=60)  # purges what has expired by then
    assert (await store.totals(now=NOW + 99)).reserved == HOLD + D("0.001")
    assert (await store.totals(now=NOW + 100)).reserved == D("0.001")


@BOTH
async def test_an_expired_hold_is_not_brought_back(store: Store, limits: BudgetLimits) -> None:
    """Renewing a hold at or after its expiry renews nothing: others may have stopped counting it."""
    hold = await store.reserve(HOLD, limits, now=NOW, ttl_s=60)
    assert await store.renew([hold.id], expires_at=NOW + 120, now=NOW + 60) == set()
    assert (await store.totals(now=NOW + 61)).reserved == 0


@BOTH
async def test_settled_released_and_unknown_holds_are_left_alone(store: Store, limits: BudgetLimits) -> None:
    """Only live holds are renewed: a committed, a released and a made-up id come back unrenewed."""
    settled = await store.reserve(HOLD, limits, now=NOW, ttl_s=60)
    released = await store.reserve(HOLD, limits, now=NOW, ttl_s=60)
    live = await store.reserve(D("0.001"), limits, now=NOW, ttl_s=60)
    await store.commit(settled.id, _row("settled", "0.01"))
    await store.release(released.id)
    ids = [settled.id, released.id, "never-existed", live.id]
    assert await store.renew(ids, expires_at=NOW + 100, now=NOW + 30) == {live.id}
    totals = await store.totals(now=NOW + 80)
    assert (totals.spent_today, totals.reserved) == (D("0.01"), D("0.001"))


@BOTH
async def test_a_renewal_never_shortens_a_hold(store: Store, limits: BudgetLimits) -> None:
    """A hold taken for 600 s and renewed to 100 s still counts until 600 s."""
    hold = await store.reserve(HOLD, limits, now=NOW, ttl_s=600)
    assert await store.renew([hold.id], expires_at=NOW + 100, now=NOW + 50) == {hold.id}
    assert (await store.totals(now=NOW + 599)).reserved == HOLD


async def test_renewing_no_hold_does_nothing(store: Store) -> None:
    assert await store.renew([], expires_at=NOW + 100, now=NOW) == set()


@BOTH
async def test_a_hold_no_longer_renewed_expires_a_lifetime_after_its_last_renewal(
    store: Store, limits: BudgetLimits
) -> None:
    """Renewed twice, then its process died: the limit it filled is free again once the last renewal ends."""
    hold = await store.reserve(D("0.05"), limits, now=NOW, ttl_s=60)
    for at in (NOW + 30, NOW + 60):
        assert await store.renew([hold.id], expires_at=at + 60, now=at) == {hold.id}
    tight = BudgetLimits(daily=D("0.05"))
    with pytest.raises(BudgetExceededError, match="daily"):
        await store.reserve(D("0.01"), tight, now=NOW + 119, ttl_s=60)
    assert await store.reserve(D("0.05"), tight, now=NOW + 120, ttl_s=60)
