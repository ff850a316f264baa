"""Ranking: score the models that passed selection's filters, best first, and make each
`Candidate` only when it is read (a plan ranks hundreds of models; a request reads one or two).

Scores weigh quality, cost (log scale) and speed by the request's preferences; they are rounded to
six places and equal scores rank by model id, so the same inputs always give the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from functools import partial
from operator import itemgetter
from typing import overload

from modelyard.routing.catalog import CatalogEntry
from modelyard.routing.catalog_facts import EntryFacts
from modelyard.routing.speed import SpeedBook

__all__ = ["Candidate", "Ranked", "Row", "rank"]

WEIGHTS = {"low": (0.2, 0.7), "medium": (0.45, 0.45), "high": (0.7, 0.2)}  # (quality, cost)
_UNKNOWN_SPEED = 0.3
_TIE = 2e-6  # scores further apart than this never round (to 6 places) to the same value

Row = tuple[float, EntryFacts, int]
"""(unrounded score, the model's facts, the max_tokens to send it)."""


class Candidate:
    """A model that may serve the request, with what it would send and the most it can cost.

    `worst_case` and `reason` may be given as zero-argument callables, worked out when first read:
    a plan ranks hundreds of models, a request reads them for one or two.
    """

    __slots__ = ("_reason", "_worst_case", "entry", "max_tokens", "score")

    def __init__(
        self,
        entry: CatalogEntry,
        score: float,
        max_tokens: int,
        worst_case: Decimal | Callable[[], Decimal | None] | None,
        reason: str | Callable[[], str],
    ) -> None:
        self.entry, self.score, self.max_tokens = entry, score, max_tokens
        self._worst_case, self._reason = worst_case, reason

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def worst_case(self) -> Decimal | None:
        value = self._worst_case
        if callable(value):
            value = self._worst_case = value()
        return value

    @property
    def reason(self) -> str:
        value = self._reason
        if callable(value):
            value = self._reason = value()
        return value

    def __repr__(self) -> str:
        return f"Candidate({self.id!r}, score={self.score}, max_tokens={self.max_tokens})"


def rank(kept: Sequence[tuple[EntryFacts, int]], *, quality: str, fast: bool, speed: SpeedBook) -> list[Row]:
    """The kept models scored and sorted best first (kept must be in id order, as a catalog is)."""
    if not kept:
        return []
    w_quality, w_cost = WEIGHTS.get(quality, WEIGHTS["medium"])
    w_speed = 0.4 if fast else 0.1
    w_total = w_quality + w_cost + w_speed
    top_quality = max(f.entry.quality for f, _ in kept) or 1.0
    # The cost score is 1 for the cheapest, 0 for the dearest, on a log scale.
    low = min(f.log_price for f, _ in kept)
    span = max(f.log_price for f, _ in kept) - low
    speed_of = _speed_scale(speed, [f.id for f, _ in kept]) if speed.knows_any() else None
    rows: list[Row] = []
    for facts, max_tokens in kept:
        q = facts.entry.quality / top_quality
        k = 1.0 if span == 0 else 1.0 - (facts.log_price - low) / span
        s = _UNKNOWN_SPEED if speed_of is None else speed_of(facts.id)
        rows.append(((w_quality * q + w_cost * k + w_speed * s) / w_total, facts, max_tokens))
    rows.sort(key=_first, reverse=True)  # stable: exact ties stay in id order
    _order_rounded_ties(rows)
    return rows


def weights(quality: str, fast: bool) -> tuple[float, float, float]:
    w_quality, w_cost = WEIGHTS.get(quality, WEIGHTS["medium"])
    return w_quality, w_cost, 0.4 if fast else 0.1


_first = itemgetter(0)


def _order_rounded_ties(rows: list[Row]) -> None:
    """Scores that round to the same six places rank by id: re-sort each run of near-equal scores."""
    start = 0
    for index in range(1, len(rows) + 1):
        if index < len(rows) and rows[index - 1][0] - rows[index][0] < _TIE:
            continue
        if index - start > 1:
            rows[start:index] = sorted(rows[start:index], key=lambda row: (-round(row[0], 6), row[1].id))
        start = index


class Ranked(Sequence[Candidate]):
    """Ranked rows as `Candidate`s, each made when first read.

    Args:
        rows: from `rank`, best first.
        weights: (quality, cost, speed), for the reasons.
        worst_case: works out a candidate's worst case (its facts, `max_tokens`); `known` holds those
            already worked out, by model id.
    """

    __slots__ = ("_known", "_made", "_rows", "_weights", "_worst_case")

    def __init__(
        self,
        rows: list[Row],
        weights: tuple[float, float, float],
        worst_case: Callable[[EntryFacts, int], Decimal | None],
        known: Mapping[str, Decimal | None] | None = None,
    ) -> None:
        self._rows, self._weights, self._worst_case = rows, weights, worst_case
        self._known = known or {}
        self._made: list[Candidate | None] = [None] * len(rows)

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Candidate: ...

    @overload
    def __getitem__(self, index: slice) -> list[Candidate]: ...

    def __getitem__(self, index: int | slice) -> Candidate | list[Candidate]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._rows)))]
        made = self._made[index]
        if made is None:
            score, facts, max_tokens = self._rows[index]
            entry = facts.entry
            worst = self._known[facts.id] if facts.id in self._known else partial(self._worst_case, facts, max_tokens)
            reason = partial(_score_reason, facts, score, self._weights)
            made = self._made[index] = Candidate(entry, round(score, 6), max_tokens, worst, reason)
        return made

    def __iter__(self) -> Iterator[Candidate]:
        return (self[i] for i in range(len(self._rows)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Ranked({[facts.id for _, facts, _ in self._rows[:5]]}{'...' if len(self._rows) > 5 else ''})"


def _score_reason(facts: EntryFacts, score: float, weights: tuple[float, float, float]) -> str:
    entry = facts.entry
    w_quality, w_cost, w_speed = weights
    return (
        f"{entry.tier} tier, quality {entry.quality:g} ({entry.quality_source}), "
        f"${facts.prompt_1k.normalize():f}/${facts.completion_1k.normalize():f} per 1K, score {score:.3f} "
        f"(weights quality {w_quality}, cost {w_cost}, speed {w_speed})"
    )


def _speed_scale(speed: SpeedBook, ids: list[str]) -> Callable[[str], float]:
    """Throughput relative to the fastest known; unknown speed scores 0.3, below any known fast model."""
    known = {i: s.throughput_tps for i in ids if (s := speed.get(i)) and s.throughput_tps}
    top = max(known.values(), default=0.0)

    def score(model: str) -> float:
        value = known.get(model)
        return _UNKNOWN_SPEED if value is None or top <= 0 else value / top

    return score
