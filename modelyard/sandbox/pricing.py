"""`usage.cost` exactly as OpenRouter computes it (reference §8.2), in `Decimal`.

```
prompt side     = (prompt - cached - cache_write) * prompt
                + cached * input_cache_read
                + cache_write * input_cache_write (input_cache_write_1h for a 1-hour TTL)
                + images * image + request
completion side = (completion - reasoning) * completion
                + reasoning * (internal_reasoning if it is priced, else completion)
cost            = (prompt side + completion side) * (1 - discount)
```

Prices come from the row's `pricing`, with `overrides` applied first: an override applies when
every condition it has holds (`min_prompt_tokens`: prompt tokens strictly greater; `utc_start` /
`utc_end`: HHMM, half-open, may wrap); later overrides win; keys an override lacks inherit.

OpenRouter sends `cost` as a JSON (double) number, so what a client can know is the float. The
sandbox therefore rounds each amount to the nearest double and keeps that value as a `Decimal`:
`Decimal(repr(float(json_number(x))))` is exactly the `Decimal` in the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

__all__ = ["Cost", "TokenCounts", "compute_cost", "effective_prices", "json_number", "to_wire"]

_ZERO = Decimal(0)
_PRICE_KEYS = (
    "prompt",
    "completion",
    "request",
    "image",
    "internal_reasoning",
    "input_cache_read",
    "input_cache_write",
    "input_cache_write_1h",
    "discount",
)


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """What one request used. `prompt` includes cached and cache-write tokens; `completion`
    includes reasoning tokens."""

    prompt: int
    completion: int
    cached: int = 0
    cache_write: int = 0
    reasoning: int = 0
    images: int = 0
    cache_ttl_1h: bool = False


@dataclass(frozen=True, slots=True)
class Cost:
    """A cost split into its prompt and completion sides (USD)."""

    prompt: Decimal = _ZERO
    completion: Decimal = _ZERO

    @property
    def total(self) -> Decimal:
        """Both sides together."""
        return self.prompt + self.completion


def to_wire(value: Decimal) -> Decimal:
    """The value a client reads back from the JSON number: `Decimal(repr(float(value)))`."""
    return Decimal(repr(float(value)))


def json_number(value: Decimal) -> str:
    """JSON text for a wire value, in positional notation like OpenRouter (`0.00001255`)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0.0") else text


def _price(mapping: Mapping[str, Any], key: str) -> Decimal | None:
    value = mapping.get(key)
    if value is None or value == "":
        return None
    return Decimal(str(value))


def _hhmm_in(start: int, end: int, now: int) -> bool:
    if start <= end:
        return start <= now < end
    return now >= start or now < end


def _override_applies(override: Mapping[str, Any], prompt_tokens: int, utc_hhmm: int | None) -> bool:
    minimum = override.get("min_prompt_tokens")
    if minimum is not None and not prompt_tokens > int(minimum):
        return False
    start, end = override.get("utc_start"), override.get("utc_end")
    if start is None and end is None:
        return True
    if utc_hhmm is None:
        return False
    return _hhmm_in(int(start if start is not None else 0), int(end if end is not None else 2400), utc_hhmm)


def effective_prices(
    pricing: Mapping[str, Any], prompt_tokens: int, *, utc_hhmm: int | None = None
) -> dict[str, Decimal]:
    """The prices that apply to a request with this many prompt tokens (missing keys are absent)."""
    prices = {key: value for key in _PRICE_KEYS if (value := _price(pricing, key)) is not None}
    for override in pricing.get("overrides") or ():
        if isinstance(override, Mapping) and _override_applies(override, prompt_tokens, utc_hhmm):
            prices.update({key: value for key in _PRICE_KEYS if (value := _price(override, key)) is not None})
    return prices


def compute_cost(pricing: Mapping[str, Any], tokens: TokenCounts, *, utc_hhmm: int | None = None) -> Cost:
    """The exact cost of one request under `pricing` (not yet rounded to the wire)."""
    prices = effective_prices(pricing, tokens.prompt, utc_hhmm=utc_hhmm)

    def price(key: str) -> Decimal:
        return prices.get(key, _ZERO)

    with localcontext() as ctx:
        ctx.prec = 60
        uncached = tokens.prompt - tokens.cached - tokens.cache_write
        write_key = "input_cache_write_1h" if tokens.cache_ttl_1h else "input_cache_write"
        write_price = prices.get(write_key, price("input_cache_write"))
        prompt_side = (
            uncached * price("prompt")
            + tokens.cached * price("input_cache_read")
            + tokens.cache_write * write_price
            + tokens.images * price("image")
            + price("request")
        )
        reasoning_price = price("internal_reasoning") or price("completion")
        completion_side = (tokens.completion - tokens.reasoning) * price(
            "completion"
        ) + tokens.reasoning * reasoning_price
        keep = 1 - price("discount")
        return Cost(prompt=prompt_side * keep, completion=completion_side * keep)
