"""Answers abandoned after they began: what they cost, found out later from OpenRouter's own record.

An attempt whose 200 answer had begun (its headers, with the generation id, had arrived) and that then
timed out, broke or was cancelled may still be billed: OpenRouter finishes a non-streamed answer whose
client stopped waiting, and some providers finish streamed ones. Releasing its budget hold would let the
budget forget money really spent, and the ledger would never show it.

So the hold is handed to the `Reconciler` instead. `run()` asks `GET /generation?id=` for each one
(first after a second, then less and less often) until the record appears, then commits a ledger row
with the billed cost in place of the hold, as any answer's commit does. If no record has appeared when
the hold expires, the row records an unknown cost (never 0) and the hold is freed. When `run()` stops
(the server shutting down), each answer still pending gets one last lookup, within `LAST_PASS_S`, and
its row all the same: with the cost if the record came, else an unknown cost (its hold is then kept
until it expires, since the answer may still be billed).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import anyio
from anyio.abc import TaskStatus

from modelyard.errors import ModelyardError
from modelyard.routing.labels import current as current_labels
from modelyard.store.base import LedgerRow, Reservation, new_id

if TYPE_CHECKING:
    from modelyard.openrouter.client import OpenRouterClient
    from modelyard.openrouter.schemas import Generation
    from modelyard.routing.budget import BudgetManager

__all__ = ["Abandoned", "Reconciler"]

log = logging.getLogger(__name__)

FIRST_CHECK_S: Final = 1.0
"""OpenRouter answers 404 for a moment after a generation ends, and an abandoned one may still be running."""
MAX_INTERVAL_S: Final = 30.0
LOOKUP_TIMEOUT_S: Final = 10.0
"""One slow `/generation` answer must not hold up the other answers' checks for long."""
LAST_PASS_S: Final = 1.5
"""At shutdown, the time the last lookups and rows may take: an MCP host that closed the server's stdin
waits (the Python SDK 2 s) before it terminates the process, and the store must still be closed after.
A store that is stuck itself (another process holding the SQLite write lock, a Redis that does not
answer) finishes a write it has begun on its own terms: its busy timeout, or its write grace."""


@dataclass(slots=True)
class Abandoned:
    """An attempt that may have been billed: its generation, its hold, and what its ledger row needs."""

    generation_id: str
    reservation: Reservation
    requested_model: str
    model: str
    streamed: bool
    reason: str
    at: float = 0.0  # epoch seconds it was abandoned: its row's time (the cost belongs to that day)
    due: float = 0.0  # epoch seconds of the next check
    interval_s: float = FIRST_CHECK_S
    row_id: str = field(default_factory=new_id)  # one id for every try: a commit retried adds nothing twice
    labels: dict[str, str] = field(default_factory=dict)
    """The labels of the call that abandoned it (`labels.labelled`), taken when adopted: its row is written in
    the reconciler's task, where they are not in force."""


class Reconciler:
    """Holds the budget of abandoned answers until OpenRouter's record says what each one cost.

    `adopt` only takes an answer while `run()` is running (`modelyard serve` runs it for as long as it
    is up); otherwise the caller frees the hold as before. Answers still pending when `run()` ends get
    their row then (see the module's docstring); those whose cost is still unknown keep their holds:
    until they expire in the store, and, for draws on the SQLite store's lease, while the process lives
    (so stop it only with the router, before the store closes).

    Args:
        client: asks `GET /generation?id=`.
        budgets: where each answer's row is committed in place of its hold.
        now: epoch seconds (the holds' expiry is in them).
    """

    def __init__(self, client: OpenRouterClient, budgets: BudgetManager, *, now: Callable[[], float]) -> None:
        self._client, self._budgets, self._now = client, budgets, now
        self._pending: list[Abandoned] = []
        self._changed = anyio.Event()
        self._checking = anyio.Lock()  # one pass at a time: an answer is never settled twice
        self.running = False

    @property
    def pending(self) -> list[Abandoned]:
        """The answers not reconciled yet."""
        return list(self._pending)

    def adopt(self, answer: Abandoned) -> bool:
        """Keep `answer`'s hold until its cost is known; False (the caller frees the hold) when not running."""
        if not self.running:
            return False
        answer.at = self._now()
        answer.due = answer.at + answer.interval_s
        answer.labels = dict(current_labels())
        self._pending.append(answer)
        self._changed.set()
        log.info(
            "answer %s was abandoned after it began (%s): its cost is checked later",
            answer.generation_id,
            answer.reason,
        )
        return True

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Check each abandoned answer when it is due, until cancelled (`await group.start(run)`: running
        once it returns)."""
        if self.running:
            raise RuntimeError("this reconciler is running already")
        self.running = True
        task_status.started()
        try:
            while True:
                await self.check_due()
                wait_s = min((a.due for a in self._pending), default=math.inf) - self._now()
                self._changed = anyio.Event()
                with anyio.move_on_after(max(0.0, wait_s)):
                    await self._changed.wait()
        finally:
            self.running = False
            if self._pending:
                with anyio.CancelScope(shield=True):
                    await self._last_pass()

    async def check_due(self) -> int:
        """Check every answer that is due now; how many were settled."""
        async with self._checking:
            return await self._check_due()

    async def _check_due(self) -> int:
        now = self._now()
        settled = 0
        for answer in [a for a in self._pending if a.due <= now]:
            try:
                done = await self._check(answer)
            except Exception:  # never let one answer stop the others' checks
                log.exception("checking the cost of %s failed", answer.generation_id)
                self._later(answer)
                continue
            if done:
                self._pending.remove(answer)
                settled += 1
        return settled

    async def _check(self, answer: Abandoned) -> bool:
        """Settle `answer` if its record is there (or its hold has expired); else schedule the next check."""
        record: Generation | None = None
        with anyio.move_on_after(LOOKUP_TIMEOUT_S):
            try:
                record = await self._client.generation(answer.generation_id)
            except ModelyardError as exc:  # most often 404: not finished, or not recorded yet
                log.debug("no record of %s yet: %s", answer.generation_id, exc)
            except Exception:  # a lookup that fails oddly counts as no record: the hold still expires
                log.warning("looking up %s failed", answer.generation_id, exc_info=True)
        if record is None and self._now() < answer.reservation.expires_at:
            self._later(answer)
            return False
        try:
            await self._budgets.settle(answer.reservation, self._row(answer, record))
        except ModelyardError as exc:
            log.warning("could not record the cost of %s yet: %s", answer.generation_id, exc)
            self._later(answer)
            return False
        return True

    async def _last_pass(self) -> None:
        """Stopping: look each pending answer up once more, then give every one its row (the billed cost in
        place of the hold, or an unknown cost with the hold kept until it expires), all within `LAST_PASS_S`."""
        async with self._checking:
            pending, self._pending = self._pending, []
            records: dict[str, Generation] = {}
            written: set[str] = set()
            with anyio.move_on_after(LAST_PASS_S):
                with anyio.move_on_after(LAST_PASS_S * 0.6):  # the rest is for the writes
                    latest = self._now() + LAST_PASS_S * 0.3
                    async with anyio.create_task_group() as group:
                        for answer in pending:
                            group.start_soon(self._last_lookup, answer, records, latest)
                async with anyio.create_task_group() as group:  # together: one transaction, where the store can
                    for answer in pending:
                        group.start_soon(self._last_row, answer, records.get(answer.generation_id), written)
            self._report_last_pass(pending, records, written)

    async def _last_lookup(self, answer: Abandoned, records: dict[str, Generation], latest: float) -> None:
        # OpenRouter answers 404 for a moment after a generation ends: wait for the first check's time,
        # or as long as the last pass allows.
        await anyio.sleep(max(0.0, min(answer.at + FIRST_CHECK_S, latest) - self._now()))
        try:
            records[answer.generation_id] = await self._client.generation(answer.generation_id)
        except Exception as exc:  # no record (yet): the row says the cost is unknown
            log.debug("no record of %s at shutdown: %s", answer.generation_id, exc)

    async def _last_row(self, answer: Abandoned, record: Generation | None, written: set[str]) -> None:
        # Without a record the answer may still be billed: its hold stays until it expires.
        reservation = answer.reservation if record is not None else None
        try:
            await self._budgets.settle(reservation, self._row(answer, record, stopping=True))
        except Exception:
            log.exception("could not record the abandoned answer %s", answer.generation_id)
        else:
            written.add(answer.generation_id)

    @staticmethod
    def _report_last_pass(pending: list[Abandoned], records: dict[str, Generation], written: set[str]) -> None:
        unknown = [a.generation_id for a in pending if a.generation_id in written and a.generation_id not in records]
        if unknown:
            log.warning(
                "stopped before OpenRouter's record of %d abandoned answer(s) appeared: their cost is recorded "
                "as unknown, and their holds expire on their own: %s",
                len(unknown),
                ", ".join(unknown),
            )
        lost = [a.generation_id for a in pending if a.generation_id not in written]
        if lost:
            log.error(
                "stopped before the ledger row of %d abandoned answer(s) was known to be written (it may "
                "have been; look them up with GET /generation?id=): %s",
                len(lost),
                ", ".join(lost),
            )

    def _later(self, answer: Abandoned) -> None:
        """Check again later, less often each time, and at the latest when the hold expires (once it has, a
        settle that failed waits its interval too)."""
        answer.interval_s = min(MAX_INTERVAL_S, answer.interval_s * 2)
        now = self._now()
        expiry = answer.reservation.expires_at
        answer.due = now + answer.interval_s if now >= expiry else min(now + answer.interval_s, expiry)

    def _row(self, answer: Abandoned, record: Generation | None, *, stopping: bool = False) -> LedgerRow:
        """The attempt's ledger row: the cost from OpenRouter's record, or an unknown cost without one."""
        cost = None if record is None else record.total_cost
        billed = "unknown" if cost is None else cost > 0
        row = LedgerRow(
            id=answer.row_id,
            ts=answer.at,
            requested_model=answer.requested_model,
            model=answer.model,
            attempts=1,
            status="error",
            streamed=answer.streamed,
            detail={
                "billed_attempt": billed,
                "abandoned": True,
                "generation_id": answer.generation_id,
                "resolved": answer.model,
                **answer.labels,
            },
        )
        if record is None:
            before = "the server stopped" if stopping else "its hold expired"
            row.error = (
                f"Abandoned after it began ({answer.reason}); OpenRouter had no record of it before {before}, "
                f"so its cost is unknown (GET /generation?id={answer.generation_id} tells it later)"
            )
            return row
        row.model = record.model or answer.model
        row.provider = record.provider_name
        row.prompt_tokens = record.native_tokens_prompt or record.tokens_prompt or 0
        row.completion_tokens = record.native_tokens_completion or record.tokens_completion or 0
        row.cached_tokens = record.native_tokens_cached or 0
        row.reasoning_tokens = record.native_tokens_reasoning or 0
        row.cost, row.cost_source = cost, None if cost is None else "upstream"
        outcome = "its record gives no cost" if cost is None else "billed all the same" if cost else "billed nothing"
        row.error = f"Abandoned after it began ({answer.reason}); {outcome}"
        return row
