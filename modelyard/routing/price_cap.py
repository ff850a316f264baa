"""`provider.max_price`: what keeps OpenRouter to the prices a budget hold was worked out at.

OpenRouter lists a model at its cheapest endpoint's prices (reference §2.3), and its default routing,
weighted by the inverse square of price, sends some requests to dearer endpoints. A worst case reserved at
the listed prices is a true bound only if no dearer endpoint may serve the attempt: so whenever a limit is
in force, each attempt carries `provider.max_price` at the model's listed prices, each no more than what its
worst case charged (`pricing.listed_prices`: the prompt and completion prices at the dearest override its
prompt may meet, not the dearer cache-write or reasoning prices the worst case charges every token at, which
max_price cannot cap), and OpenRouter uses no endpoint above them. When that leaves none (the cheapest
provider is down, or dearer now than the catalog says) OpenRouter answers 404 (`PriceFilteredError`): the
fallback moves on, and `PriceCap.explained` says why.

With no limit in force nothing is sent: the request asked for nothing to hold, and any provider may serve it.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, TypeVar

from modelyard.error_text import usd
from modelyard.errors import PriceFilteredError
from modelyard.routing.catalog import Catalog, CatalogEntry
from modelyard.routing.catalog_facts import facts_of
from modelyard.routing.pricing import listed_prices, per_million, prompt_thresholds
from modelyard.routing.request import RouteRequest
from modelyard.store.base import BudgetLimits

__all__ = ["FLOAT_SLACK", "PriceCap", "limits_in_force", "on_the_wire", "period_budgets", "price_cap"]

FLOAT_SLACK: Final = Decimal("1.000000001")
"""The caps sent are the held prices times (1 + 1e-9). OpenRouter may compare a cap per million with a price
per token in binary floats, where 0.289 / 1e6 < 0.000000289 (20 of the 1,414 prices in the August 2026
catalog fail such a test): without the slack a model's own cheapest endpoint could be filtered out. No two
real prices differ by a billionth, so the slack admits no dearer endpoint; the bound moves by at most a
billionth of the price."""

_E = TypeVar("_E", bound=BaseException)
_UNITS = {
    "prompt": "per million prompt tokens",
    "completion": "per million completion tokens",
    "request": "per request",
    "image": "per image",
}


def limits_in_force(request: RouteRequest, limits: BudgetLimits, price_cap: Decimal | None) -> tuple[str, ...]:
    """The limits `request` is held to, named as messages say them; empty when there is none.

    Args:
        limits: the budget limits in force (`BudgetManager.limits`).
        price_cap: the `max_cost_per_1k` its plan was selected under (the request's or the server's default).
    """
    named = ["the request's max_cost"] if request.max_cost is not None else []
    if price_cap is not None:
        named.append("max_cost_per_1k")
    named += [f"the {name} budget" for name in ("per_request", "daily", "monthly") if getattr(limits, name) is not None]
    return tuple(named)


def period_budgets(limits: BudgetLimits) -> str | None:
    """The daily and monthly budgets in force, named ("the daily budget"); None when neither is set.

    A model that lists no price has a worst case of $0, which is no bound on what these count.
    """
    periods = [name for name in ("daily", "monthly") if getattr(limits, name) is not None]
    if not periods:
        return None
    return f"the {periods[0]} budget" if len(periods) == 1 else "the daily and monthly budgets"


@dataclass(frozen=True, slots=True)
class PriceCap:
    """The `provider.max_price` one candidate's attempts carry, and the limits that call for it.

    Attributes:
        model: the candidate's model id.
        max_price: OpenRouter's units as decimal strings: USD per million tokens for `prompt` and
            `completion`, per request for `request`, per image for `image`.
        limits: the limits in force (`limits_in_force`).
        wire: `max_price` as sent: with `FLOAT_SLACK`.
    """

    model: str
    max_price: dict[str, str]
    limits: tuple[str, ...]
    wire: dict[str, str]

    def explained(self, error: _E) -> _E:
        """`error` as it is, or, for OpenRouter's 404 that no endpoint is priced within `max_price`, the same
        error saying so plainly: the price the budget held for, why it was sent, and what would change it."""
        if not isinstance(error, PriceFilteredError):
            return error
        prices = ", ".join(f"${value} {_UNITS[key]}" for key, value in self.max_price.items())
        held = f"{' and '.join(self.limits)} {'is' if len(self.limits) == 1 else 'are'} in force"
        explained = copy.copy(error)
        explained.message = (
            f"No provider serves {self.model} at or below the price the budget held for it, its listed price: "
            f"{prices} (sent as provider.max_price, as {held}). OpenRouter said: {error.message}. Its cheapest "
            "provider may be down or dearer than listed: retry later, pick another model, or send the request "
            "with no limit in force so that a dearer provider may serve it."
        )
        explained.args = (explained.message,)
        return explained


def price_cap(
    entry: CatalogEntry, *, prompt_tokens: int, images: int, catalog: Catalog, limits: tuple[str, ...]
) -> PriceCap | None:
    """The cap of an attempt on `entry` whose worst case was worked out for `prompt_tokens` (the plan's bound)
    and `images`; None when no limit is in force.

    A router (`-1` prices) was held at the catalog's dearest prices (`RouterBound`), so it is capped at the
    dearest listed ones. A price of 0 is a cap of 0: a `:free` model's endpoints are free, and for a paid one a price
    the catalog lists as 0 (per request, say) is what its hold assumed.

    The prompt and completion caps are the listed prices (`pricing.listed_prices`), not the cache-write or
    reasoning prices the worst case charges when they are dearer: an endpoint whose prompt price lies between
    the two would pass such a cap, and its cache writes (1.25 or 2 times its own prompt price) be billed above
    the hold.
    """
    if not limits:
        return None
    caps, wire = _caps(entry, prompt_tokens, bool(images), catalog)
    return PriceCap(entry.id, caps, limits, wire)


_Caps = tuple[dict[str, str], dict[str, str]]
_CAPS: weakref.WeakKeyDictionary[Catalog, dict[tuple[str, int, bool], _Caps]] = weakref.WeakKeyDictionary()
"""Per catalog, the caps of each model for each prompt-size band and with or without images: worked out once,
as parsing the prices each time cost about 7 µs per attempt."""


def _caps(entry: CatalogEntry, prompt_tokens: int, images: bool, catalog: Catalog) -> _Caps:
    """The caps of `entry` for a prompt of `prompt_tokens`, and as sent (shared: callers do not change them)."""
    pricing = entry.info.pricing
    band = sum(1 for threshold in prompt_thresholds(pricing) if prompt_tokens > threshold) if pricing.overrides else 0
    known = _CAPS.get(catalog)
    if known is None:
        known = _CAPS[catalog] = {}
    key = (entry.id, band, images)
    caps = known.get(key)
    if caps is None:
        held = _worked_out(entry, prompt_tokens, images, catalog)
        caps = known[key] = (held, on_the_wire(held))
    return caps


def _worked_out(entry: CatalogEntry, prompt_tokens: int, images: bool, catalog: Catalog) -> dict[str, str]:
    if entry.info.pricing.is_dynamic:  # held at the catalog's dearest prices: capped at them
        prompt, completion, request, image = facts_of(catalog).router_bound.listed
    else:
        prompt, completion, request, image = listed_prices(entry.info.pricing, prompt_tokens)
    caps = {
        "prompt": _plain(per_million(prompt)),
        "completion": _plain(per_million(completion)),
        "request": _plain(request),
    }
    if images:  # the image price is in the worst case only when the request has images
        caps["image"] = _plain(image)
    return caps


def on_the_wire(max_price: Mapping[str, str]) -> dict[str, str]:
    """Each cap times `FLOAT_SLACK`, as a plain decimal string (0 stays 0)."""
    return {key: _plain(Decimal(value) * FLOAT_SLACK) for key, value in max_price.items()}


def _plain(amount: Decimal) -> str:
    """A decimal string without exponent or trailing zeros, exactly `amount`: "0.15", "17.5", "0"."""
    return usd(amount)
