"""Worst cases with the prices worked out once per catalog, and a float screen against a cost cap.

`pricing.worst_case_cost` reads every override of a model's pricing on each call. The prices it charges
change only where a prompt passes one of the model's `min_prompt_tokens` thresholds (time-of-day
overrides always count at their dearest), so `WorstCase` keeps them per prompt-size class, and a
request's worst case is the same Decimal sums in the same order: the same number to the last digit.

Under a per-request cap most models are far below it or far above it. A `Screen` tells, in one pass
of float maths over many models, which are surely within the cap, and leaves the exact Decimal maths
to the others: those above it (whose exclusion states their worst case) and those within a hair of it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from modelyard.routing.pricing import WorstPrices, prompt_thresholds, worst_prices

if TYPE_CHECKING:
    from modelyard.openrouter.catalog_schemas import Pricing

__all__ = ["Screen", "WorstCase", "float_cap"]

_MARGIN = 1e-9
"""Relative margin of the float test: far above the float estimate's error (a few parts in 1e16)."""
_TINY, _HUGE = 1e-250, 1e250
"""Non-zero prices and caps outside this range are left to the exact maths (no float underflow or overflow)."""

_Floats = tuple[float, float, float, float]


class WorstCase:
    """`worst_case_cost` of one (non-dynamic) pricing, its prices kept per prompt-size class (worked
    out on first use: most models' worst cases are never read).

    Class `k` holds the prompts of more tokens than the `k` lowest thresholds and no more than the next.
    """

    __slots__ = ("_classes", "_floats", "_pricing", "thresholds")

    def __init__(self, pricing: Pricing) -> None:
        self._pricing = pricing
        self.thresholds: Sequence[int] = prompt_thresholds(pricing)
        self._classes: list[WorstPrices] = []
        self._floats: list[_Floats | None] = []

    def _class(self, prompt_tokens: int) -> int:
        if not self._classes:
            sizes = [self.thresholds[0] if self.thresholds else 0, *(t + 1 for t in self.thresholds)]
            classes = [worst_prices(self._pricing, size) for size in sizes]
            self._floats = [_as_floats(prices) for prices in classes]
            self._classes = classes
        return bisect.bisect_left(self.thresholds, prompt_tokens) if self.thresholds else 0

    def cost(self, prompt_tokens: int, max_tokens: int, images: int = 0) -> Decimal:
        """The worst case, equal to `worst_case_cost(pricing, ...)` for the same arguments."""
        index = self._class(prompt_tokens)  # first: it works the classes out
        prompt, completion, request, image = self._classes[index]
        return prompt_tokens * prompt + max_tokens * completion + request + images * image

    def floats(self, prompt_tokens: int) -> _Floats | None:
        """The prices `cost` reads for a prompt of `prompt_tokens`, as floats; None when one is negative
        or out of range (the float test's error bound holds for sums of non-negative terms only)."""
        index = self._class(prompt_tokens)
        return self._floats[index]


class Screen:
    """The float test against a cap for several models: (a key, its `WorstCase`, the max_tokens it
    would be sent) each.

    Which prices apply changes only at the models' thresholds, so the terms of each model's estimate
    are kept per range of prompt sizes between two of them, as columns (one pass of list
    comprehensions per request).
    """

    __slots__ = ("_columns", "_models", "_thresholds")

    def __init__(self, models: Sequence[tuple[int, WorstCase | None, int]]) -> None:
        self._models = models
        self._thresholds = sorted({t for _, worst, _ in models if worst is not None for t in worst.thresholds})
        self._columns: dict[int, _Columns] = {}

    def split(self, cap: float | None, prompt_tokens: int, images: int) -> tuple[list[int], list[int]]:
        """(the keys of the models whose worst case for this prompt is surely above `cap`, those of the
        models it cannot place surely at most `cap` or surely above it), each in the models' order.
        `cap` is from `float_cap`; None leaves every model unsure."""
        if cap is None or not (prompt_tokens <= _HUGE and images <= _HUGE):  # counts a float cannot hold
            return [], [key for key, _, _ in self._models]
        keys, prompt, fixed, image = self._terms(prompt_tokens)
        if images:
            estimates = [prompt_tokens * p + f + images * i for p, f, i in zip(prompt, fixed, image, strict=True)]
        else:
            estimates = [prompt_tokens * p + f for p, f in zip(prompt, fixed, strict=True)]
        below, above = cap / (1 + _MARGIN), cap * (1 + _MARGIN)
        # Not surely below: near the cap, above it, or without float prices (infinite, or NaN for 0 x inf).
        rest = [(key, estimate) for key, estimate in zip(keys, estimates, strict=True) if not estimate < below]
        over = [key for key, estimate in rest if above < estimate < math.inf]
        return over, [key for key, estimate in rest if not above < estimate < math.inf]

    def _terms(self, prompt_tokens: int) -> _Columns:
        """The estimate's terms for prompts of the size of `prompt_tokens`, made on first use."""
        regime = bisect.bisect_left(self._thresholds, prompt_tokens)
        columns = self._columns.get(regime)
        if columns is None:
            lines = [_line(worst, max_tokens, prompt_tokens) for _, worst, max_tokens in self._models]
            prompt, fixed, image = ([line[k] for line in lines] for k in range(3))
            columns = self._columns[regime] = ([key for key, _, _ in self._models], prompt, fixed, image)
        return columns


_Columns = tuple[list[int], list[float], list[float], list[float]]
"""(keys, price per prompt token, the part of the estimate the prompt does not change, price per image)."""


def _line(worst: WorstCase | None, max_tokens: int, prompt_tokens: int) -> tuple[float, float, float]:
    """A model's estimate terms for prompts of the size class of `prompt_tokens`; infinite (never
    surely within a cap) for a model without float prices."""
    prices = None if worst is None else worst.floats(prompt_tokens)
    if prices is None or max_tokens > _HUGE:  # past _HUGE, max_tokens may not even convert to a float
        return math.inf, math.inf, 0.0
    prompt, completion, request, image = prices
    return prompt, max_tokens * completion + request, image


def float_cap(cap: Decimal) -> float | None:
    """`cap` as a float for `Screen.split`, or None when it is out of the range that test holds for."""
    return value if _in_range(cap, value := float(cap)) else None


def _as_floats(prices: WorstPrices) -> _Floats | None:
    prompt, completion, request, image = floats = tuple(float(price) for price in prices)
    in_range = all(_in_range(price, value) for price, value in zip(prices, floats, strict=True))
    return (prompt, completion, request, image) if in_range else None


def _in_range(exact: Decimal, value: float) -> bool:
    """Whether `value`, the float of `exact`, is zero because `exact` is (not because it underflowed:
    1e-400 is 0.0 as a float), or within the range the float test holds for."""
    if exact == 0:
        return True
    return math.isfinite(value) and _TINY <= value <= _HUGE
