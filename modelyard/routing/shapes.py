"""Selection's memory per request shape: what the prompt-independent checks make of a pool, the
views of it that prompt sizes make, their rankings, and the float screen against a cost cap.

The checks that do not depend on the prompt (breakers, capabilities, input modalities, authors,
retirement, price cap at the base prices, a listed price under a period budget, max_tokens) give the
same answer for every request of the same shape, so their result (a `Shape`) is kept with the catalog.
A request then only looks up how many context windows its prompt overflows (a binary search over the
shape's rooms), under a price cap whether its prompt is long enough for a model's long-prompt prices
(only the few models that have them, only past their lowest threshold), and under a cost cap which
models the float screen cannot place surely within it. The ranking of each view is kept too while no
speed is known (speed scores change as answers come in).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from modelyard.routing.catalog_facts import EntryFacts
from modelyard.routing.filters import (
    Context,
    Exclusion,
    context_reason,
    exclusion,
    long_prompt_price_exclusion,
    token_exclusion,
)
from modelyard.routing.ranking import Row, rank
from modelyard.routing.speed import SpeedBook
from modelyard.routing.worst_case import Screen

__all__ = ["Passed", "Positioned", "Shape", "View", "ViewKey", "position", "shape_key"]

_CAPPED_RANKINGS_KEPT = 64
"""Rankings of views less some models a cost cap leaves out, kept per shape (forgotten all at once
when full): each set of models left out has its own."""
_VIEWS_KEPT = 256
"""Views kept per shape (forgotten all at once when full): under a price cap each long prompt's
token bound names its own, so a long-running server would otherwise keep one per distinct prompt."""

Passed = tuple[int, EntryFacts, int, float]
"""(pool position, facts, max_tokens to send, room: the largest prompt estimate its context holds)."""

Positioned = tuple[int, Exclusion]
"""An exclusion with its pool position."""

ViewKey = tuple[int, tuple[Positioned, ...]]
"""(how many contexts the prompt overflows, the long-prompt price exclusions with their pool positions)."""

RankingKey = tuple[str, bool, ViewKey, tuple[int, ...]]
"""(quality, fast, the view, the pool positions of the models the cost cap leaves out of it)."""


def shape_key(ctx: Context, tier: str | None) -> tuple[object, ...]:
    """Everything the prompt-independent checks read."""
    request = ctx.request
    return (
        tier,
        ctx.open_breakers,
        frozenset(ctx.required),
        ctx.inputs,
        tuple(request.provider),
        ctx.today,
        ctx.price_cap,
        ctx.wanted_tokens,
        request.max_tokens is None,
        ctx.budget,
    )


class Shape:
    """What the prompt-independent checks make of one pool for one request shape: the entries that
    pass (with their pool position, max_tokens and the largest prompt estimate that fits their
    context), the exclusions (with their pool position), and the views and rankings worked out so far.

    A prompt excludes exactly the passed entries whose room is below its estimate: a prefix of
    `by_room`, so how many it excludes names the view (and, with the preferences, the ranking). Under
    a price cap a long prompt may also exclude some of the `stepped` entries (those with long-prompt
    prices): which, with why, is part of the view's name.
    """

    __slots__ = (
        "_at",
        "_capped",
        "_screen",
        "by_room",
        "excluded",
        "first_step",
        "passed",
        "rankings",
        "rooms",
        "stepped",
        "views",
    )

    def __init__(self, ctx: Context, pool: Sequence[EntryFacts]) -> None:
        self.passed: list[Passed] = []
        self.excluded: list[Positioned] = []
        for index, facts in enumerate(pool):
            reason = exclusion(ctx, facts, auto=True)
            if reason is None:
                reason, max_tokens = token_exclusion(ctx, facts)
                if reason is None:
                    room = math.inf if facts.context is None else facts.context - max_tokens
                    self.passed.append((index, facts, max_tokens, room))
                    continue
            self.excluded.append((index, Exclusion(facts.id, reason)))
        self.by_room = sorted(self.passed, key=_room)
        self.rooms = [room for *_, room in self.by_room]
        self.stepped = [p for p in self.passed if p[1].price_steps] if ctx.price_cap is not None else []
        self.first_step = min((p[1].price_steps[0][0] for p in self.stepped), default=0)
        self.views: dict[ViewKey, View] = {}
        self.rankings: dict[RankingKey, list[Row]] = {}
        self._capped: dict[RankingKey, list[Row]] = {}
        self._screen: Screen | None = None
        self._at: dict[int, Passed] = {}

    def view(self, ctx: Context) -> tuple[ViewKey, View]:
        """The view of this prompt, with its name: how many contexts the prompt overflows and the
        long-prompt price exclusions."""
        overflow = bisect.bisect_left(self.rooms, ctx.estimate)
        dear: tuple[Positioned, ...] = ()
        if self.stepped and ctx.bound > self.first_step:  # one whose context it overflows keeps that reason
            dear = tuple(
                (i, Exclusion(f.id, reason))
                for i, f, _, room in self.stepped
                if room >= ctx.estimate and (reason := long_prompt_price_exclusion(ctx, f)) is not None
            )
        key = (overflow, dear)
        view = self.views.get(key)
        if view is None:
            if len(self.views) >= _VIEWS_KEPT:
                self.views.clear()
            overflowed = self.by_room[:overflow]
            dropped = {p[0] for p in overflowed} | {i for i, _ in dear}
            kept = [p for p in self.passed if p[0] not in dropped]
            view = self.views[key] = View(kept, dropped, sorted(self.excluded + list(dear), key=position), overflowed)
        return key, view

    def screen(self) -> tuple[Screen, dict[int, Passed]]:
        """The float screen of the passed entries against a cost cap, keyed by pool position, and the
        passed entries by pool position: made on first use."""
        if self._screen is None:
            models = [(index, None if f.unpriced else f.worst, max_tokens) for index, f, max_tokens, _ in self.passed]
            self._screen = Screen(models)  # an unpriced model has no float prices: always worked out
            self._at = {passed[0]: passed for passed in self.passed}
        return self._screen, self._at

    def ranking(self, key: RankingKey, kept: Sequence[Passed], speed: SpeedBook) -> list[Row]:
        """`kept` ranked, by the preferences in `key` (quality, fast): kept under `key` while no speed
        is known (speed scores change as answers come in, so a ranking that reads them is never kept).
        The rankings of whole views and those of views less models a cost cap left out are kept apart,
        the second at most `_CAPPED_RANKINGS_KEPT`."""
        kept_in = self._capped if key[3] else self.rankings
        rows = None if speed.knows_any() else kept_in.get(key)
        if rows is None:
            quality, fast, *_ = key
            rows = rank([(f, max_tokens) for _, f, max_tokens, _ in kept], quality=quality, fast=fast, speed=speed)
            if not speed.knows_any():
                if len(kept_in) >= (_CAPPED_RANKINGS_KEPT if kept_in is self._capped else _VIEWS_KEPT):
                    kept_in.clear()
                kept_in[key] = rows
        return rows


class View:
    """What one prompt size makes of a shape: the entries it keeps, those it leaves out and why."""

    __slots__ = ("dropped", "kept", "overflowed", "static")

    def __init__(
        self, kept: list[Passed], dropped: set[int], static: list[Positioned], overflowed: list[Passed]
    ) -> None:
        self.kept = kept
        self.dropped = dropped
        """The pool positions of the passed entries the prompt leaves out."""
        self.static = static
        """The exclusions that do not state the prompt's estimate, in pool order."""
        self.overflowed = overflowed
        """The passed entries whose context the prompt overflows."""

    def positioned(self, ctx: Context, late: Sequence[Positioned] = ()) -> list[Positioned]:
        """Every exclusion of this prompt (`ctx`) with its pool position, and `late` (in pool order)."""
        if not self.overflowed and not late:
            return self.static
        context = [(i, Exclusion(f.id, context_reason(ctx, f, n))) for i, f, n, _ in self.overflowed]
        return sorted(self.static + context + list(late), key=position)


def position(item: Positioned) -> int:
    """The pool position of a positioned exclusion (a sort key)."""
    return item[0]


def _room(passed: Passed) -> float:
    return passed[3]
