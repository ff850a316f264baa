"""Budget holds that last as long as their requests: renewed while in flight, expiring once their process dies.

A hold is taken for a lifetime (`request_timeout_s * max_attempts + reservation_margin_s`) so that the
holds of a crashed process stop counting then. But a live request can outlast it: `request_timeout_s`
bounds the wait for each piece of an answer, not the answer, and a long reasoning generation streams for
longer. Unrenewed, its hold would expire mid-answer, the budget would stop counting its worst case, and
other requests could be admitted past a limit.

So one loop per process (`HoldRenewal.run`) renews every hold it tracks that is older than a third of
the lifetime, to a whole lifetime from now, in one store write, and looks again every sixth of it. A hold
is thus renewed by half its lifetime, and a renewal that fails (the store briefly unreachable) is logged
and tried again at each of the next looks, before the hold could expire. A request shorter than a third of
the lifetime causes no write at all. When the process dies the loop dies with it, and its holds expire at
most one lifetime after their last renewal.

Tracking is two dict operations on the hot path (`track`, `forget`); the loop never runs on it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
from anyio.abc import TaskStatus

from modelyard.store.base import Reservation, Store

__all__ = ["LONGEST_RENEWED_S", "RENEW_AFTER", "RENEW_EVERY", "HoldRenewal"]

log = logging.getLogger(__name__)

RENEW_AFTER: Final = 1 / 3
"""A hold is renewed once this share of its lifetime has passed (a shorter request writes nothing)."""
RENEW_EVERY: Final = 1 / 6
"""The loop looks for holds to renew every this share of the lifetime."""
LONGEST_RENEWED_S: Final = 24 * 3600.0
"""No hold is renewed past this age: no answer takes a day, so such a hold was never settled (a bug), and it is
left to expire rather than hold its room until the process ends."""


class HoldRenewal:
    """Renews the budget holds of this process's requests in flight (see the module's docstring).

    Run `run()` in a task group for as long as requests are served (`modelyard serve` and `modelyard run`
    do); without it holds keep the expiry they were taken with.

    Args:
        store: where the holds are.
        lifetime_s: how long a hold lives after it is taken or renewed.
        clock: epoch seconds (the holds' expiry is in them).
        sleep: waits between looks.
    """

    def __init__(
        self,
        store: Store,
        *,
        lifetime_s: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._store = store
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._sleep = sleep
        self._live: dict[str, float] = {}  # reservation id -> its expiry in the store, as last taken or renewed
        self._taken: dict[str, float] = {}  # reservation id -> when it was tracked

    @property
    def tracked(self) -> int:
        """How many holds are renewed while their requests run."""
        return len(self._live)

    def track(self, reservation: Reservation) -> None:
        """Renew `reservation` for as long as its request runs (until `forget`)."""
        self._live[reservation.id] = reservation.expires_at
        self._taken[reservation.id] = self._clock()

    def forget(self, reservation_id: str) -> None:
        """Stop renewing a hold: settled, released, or handed to the reconciler (which keeps its expiry)."""
        self._live.pop(reservation_id, None)
        self._taken.pop(reservation_id, None)

    def current(self, reservation: Reservation) -> Reservation:
        """`reservation` with the expiry its last renewal gave it in the store."""
        expires_at = self._live.get(reservation.id, reservation.expires_at)
        if expires_at == reservation.expires_at:
            return reservation
        return Reservation(id=reservation.id, amount=reservation.amount, expires_at=expires_at)

    async def renew_due(self) -> int:
        """Renew, in one store write, every hold older than a third of its lifetime; how many were renewed.

        A failed write is logged, and the holds are tried again at the next look. A hold the store no longer
        has (it expired before it could be renewed) is logged and no longer tracked.
        """
        now = self._clock()
        self._drop_the_stale(now)
        due = [rid for rid, expires_at in self._live.items() if expires_at < now + self.lifetime_s * (1 - RENEW_AFTER)]
        if not due:
            return 0
        expires_at = now + self.lifetime_s
        try:
            renewed = await self._store.renew(due, expires_at=expires_at, now=now)
        except Exception as exc:  # the store may be briefly unavailable: the next look tries again
            log.warning("could not renew %d budget hold(s) of requests in flight (tried again soon): %s", len(due), exc)
            return 0
        for reservation_id in due:
            if reservation_id not in self._live:
                continue  # settled or released meanwhile
            if reservation_id in renewed:
                self._live[reservation_id] = expires_at
            else:
                self.forget(reservation_id)
                log.warning(
                    "the budget hold %s expired before it could be renewed: its request is still running, but "
                    "the budget no longer counts its worst case",
                    reservation_id,
                )
        return len(renewed)

    def _drop_the_stale(self, now: float) -> None:
        for reservation_id, taken in list(self._taken.items()):
            if now - taken > LONGEST_RENEWED_S:
                self.forget(reservation_id)
                log.warning(
                    "the budget hold %s has been held for over %d h and is no longer renewed (it expires within one "
                    "lifetime): its request never settled it",
                    reservation_id,
                    LONGEST_RENEWED_S // 3600,
                )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Renew the holds due, then look again every sixth of the lifetime, until cancelled."""
        task_status.started()
        while True:
            await self.renew_due()
            await self._sleep(self.lifetime_s * RENEW_EVERY)
