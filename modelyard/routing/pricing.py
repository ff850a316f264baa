"""Cost maths, in the units OpenRouter uses: prices are USD per *token* (strings in `/models`).

Three different numbers, kept apart on purpose:
- `prompt_token_bound`: a true upper bound of prompt tokens, for budget reservations. A byte-level
  BPE token covers at least one byte, so UTF-8 bytes plus a per-message allowance bound any tokenizer.
- `prompt_token_estimate`: a realistic count (~4 bytes a token), for context-window checks.
- `worst_case_cost` / `cost_of_usage`: USD, exact `Decimal`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.openrouter.catalog_schemas import Pricing
    from modelyard.openrouter.schemas import Usage

__all__ = [
    "PER_1K",
    "WorstPrices",
    "asks_for_1h_cache",
    "cost_of_usage",
    "listed_prices",
    "per_1k",
    "per_million",
    "prompt_thresholds",
    "prompt_token_bound",
    "prompt_token_counts",
    "prompt_token_estimate",
    "worst_case_cost",
    "worst_prices",
]

PER_1K = Decimal(1000)
_PER_MESSAGE_ALLOWANCE = 16  # role markers and chat-template tokens, generously
_REQUEST_ALLOWANCE = 32
_TEXT_KEY_BYTES = len(', "text": ""')
# An image's prompt tokens, for the context estimate only (images are billed by `pricing.image`
# or as image tokens at the prompt price; the bound below covers both).
_IMAGE_TOKENS_ESTIMATE = 1_000
_IMAGE_TOKENS_BOUND = 6_500


def per_1k(price_per_token: Decimal) -> Decimal:
    """USD per 1K tokens, from OpenRouter's USD per token."""
    return price_per_token * PER_1K


def per_million(price_per_token: Decimal) -> Decimal:
    """USD per 1M tokens, from OpenRouter's USD per token."""
    return price_per_token * 1_000_000


def _text_bytes(messages: Sequence[Mapping[str, Any]], extras: Sequence[Any]) -> tuple[int, int]:
    """(UTF-8 bytes of all text, number of image parts)."""
    size, images = 0, 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            size += _utf8_len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and part.get("type") == "image_url":
                    images += 1
                else:
                    size += _part_bytes(part)
        rest = {k: v for k, v in message.items() if k not in ("content", "role")}
        if rest:
            size += _json_bytes(rest)
    size += sum(_json_bytes(extra) for extra in extras if extra)
    return size, images


def _part_bytes(part: Any) -> int:
    """A content part's bytes: a text part's text as it is (its JSON escapes add no tokens), the rest as JSON."""
    if isinstance(part, Mapping) and isinstance(text := part.get("text"), str):
        return _utf8_len(text) + _json_bytes({k: v for k, v in part.items() if k != "text"}) + _TEXT_KEY_BYTES
    return _json_bytes(part)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def prompt_token_bound(messages: Sequence[Mapping[str, Any]], *extras: Any) -> int:
    """An upper bound of the prompt tokens of `messages` plus `extras` (tools, response_format)."""
    return prompt_token_counts(messages, *extras)[0]


def prompt_token_estimate(messages: Sequence[Mapping[str, Any]], *extras: Any) -> int:
    """A realistic prompt token count (about 4 bytes a token), for context-window checks."""
    return prompt_token_counts(messages, *extras)[1]


def prompt_token_counts(messages: Sequence[Mapping[str, Any]], *extras: Any) -> tuple[int, int]:
    """`(prompt_token_bound, prompt_token_estimate)`, measuring the text once."""
    size, images = _text_bytes(messages, extras)
    bound = size + images * _IMAGE_TOKENS_BOUND + len(messages) * _PER_MESSAGE_ALLOWANCE + _REQUEST_ALLOWANCE
    estimate = -(-size // 4) + images * _IMAGE_TOKENS_ESTIMATE + len(messages) * 4 + 3
    return bound, estimate


# The prices an override may change; `discount` is kept apart (a worst case assumes none).
_PRICE_KEYS = (
    "prompt",
    "completion",
    "internal_reasoning",
    "input_cache_read",
    "input_cache_write",
    "input_cache_write_1h",
    "request",
    "image",
)
_ONE_HOUR = "1h"


def asks_for_1h_cache(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any message, or any part of one, marks a cache breakpoint with a 1-hour TTL
    (`cache_control: {"type": "ephemeral", "ttl": "1h"}`): its cache writes cost `input_cache_write_1h`."""
    for message in messages:
        marks = [message.get("cache_control")]
        content = message.get("content")
        if isinstance(content, list):
            marks += [part.get("cache_control") for part in content if isinstance(part, Mapping)]
        if any(isinstance(mark, Mapping) and mark.get("ttl") == _ONE_HOUR for mark in marks):
            return True
    return False


def _utc_hhmm(at: float) -> int:
    """The UTC time of day of epoch second `at` as HHMM (14:05 is 1405), as overrides' windows write it."""
    moment = datetime.fromtimestamp(at, UTC)
    return moment.hour * 100 + moment.minute


def _decimal(value: object) -> Decimal | None:
    """A catalog number (string, int or float) as a Decimal; None when absent or not a number."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return None
    return number if number.is_finite() else None


def _listed(pricing: Pricing) -> dict[str, Decimal]:
    """The base prices the catalog lists (the optional cache prices only when it lists them)."""
    prices = {key: getattr(pricing, key) for key in _PRICE_KEYS}
    return {key: value for key, value in prices.items() if value is not None}


def _resolved(listed: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Every price: unlisted cache reads and writes at the prompt price, an unlisted 1-hour cache write
    at the (5-minute) cache-write price."""
    prices = dict(listed)
    prices.setdefault("input_cache_read", prices["prompt"])
    prices.setdefault("input_cache_write", prices["prompt"])
    prices.setdefault("input_cache_write_1h", prices["input_cache_write"])
    return prices


def _within(start: int, end: int, hhmm: int) -> bool:
    """Whether `hhmm` is in the half-open window [start, end), which wraps past midnight when end < start."""
    if start <= end:
        return start <= hhmm < end
    return hhmm >= start or hhmm < end


def _applies(override: Mapping[str, Any], prompt_tokens: int, hhmm: int) -> bool:
    """Whether every condition `override` has holds (reference §2.1): more prompt tokens than its
    `min_prompt_tokens`, and a time of day inside its `utc_start`/`utc_end` window (one bound alone is
    open to the start or the end of the day). A condition that is not a number never holds."""
    if not _passes_minimum(override, prompt_tokens):
        return False
    start, end = override.get("utc_start"), override.get("utc_end")
    if start is None and end is None:
        return True
    first, last = _decimal(0 if start is None else start), _decimal(2400 if end is None else end)
    return first is not None and last is not None and _within(int(first), int(last), hhmm)


def _passes_minimum(override: Mapping[str, Any], prompt_tokens: int) -> bool:
    """Whether `prompt_tokens` is strictly more than the override's `min_prompt_tokens`, if it has one."""
    if override.get("min_prompt_tokens") is None:
        return True
    minimum = _decimal(override["min_prompt_tokens"])
    return minimum is not None and prompt_tokens > minimum


def _effective(pricing: Pricing, prompt_tokens: int, hhmm: int) -> tuple[dict[str, Decimal], Decimal]:
    """The prices and the discount for this many prompt tokens at UTC time of day `hhmm`: the base ones
    with every override whose conditions hold applied in order (later entries win; keys an override
    lacks are inherited)."""
    listed, discount = _listed(pricing), pricing.discount
    for override in pricing.overrides:
        if not _applies(override, prompt_tokens, hhmm):
            continue
        for key, value in override.items():
            price = _decimal(value)
            if price is None:
                continue
            if key in _PRICE_KEYS:
                listed[key] = price
            elif key == "discount":
                discount = price
    return _resolved(listed), discount


def _dearest(pricing: Pricing, prompt_tokens: int) -> dict[str, Decimal]:
    """The highest price of each kind that may apply: the base, every time-of-day override (the hour
    the provider bills at is not known in advance) and every `min_prompt_tokens` override passed."""
    prices = _resolved(_listed(pricing))
    for override in pricing.overrides:
        if not _passes_minimum(override, prompt_tokens):
            continue
        for key, value in override.items():
            price = _decimal(value)
            if key in prices and price is not None:
                prices[key] = max(prices[key], price)
    return prices


def worst_case_cost(pricing: Pricing, *, prompt_tokens: int, max_tokens: int, images: int = 0) -> Decimal:
    """The most a request can cost: every prompt token at the dearest prompt or cache-write price,
    `max_tokens` at the dearer of the completion and reasoning prices, plus per-request and per-image
    prices, each at the dearest override that may apply. No discount assumed.

    Raises:
        ValueError: for dynamic (`-1`) router prices, which have no bound of their own.
    """
    if pricing.is_dynamic:
        raise ValueError("a router's price is only known after it routes")
    prompt, completion, request, image = worst_prices(pricing, prompt_tokens)
    return prompt_tokens * prompt + max_tokens * completion + request + images * image


WorstPrices = tuple[Decimal, Decimal, Decimal, Decimal]
"""(per prompt token, per completion token, per request, per image): the prices a worst case reads."""


def worst_prices(pricing: Pricing, prompt_tokens: int) -> WorstPrices:
    """The prices `worst_case_cost` charges a prompt of `prompt_tokens`: the dearest of the prompt and
    cache-write prices, the dearer of the completion and reasoning prices, the request and image prices,
    each at the dearest override that may apply."""
    prices = _dearest(pricing, prompt_tokens)
    completion = max(prices["completion"], prices["internal_reasoning"])
    prompt = max(prices["prompt"], prices["input_cache_write"], prices["input_cache_write_1h"])
    return prompt, completion, prices["request"], prices["image"]


def listed_prices(pricing: Pricing, prompt_tokens: int) -> WorstPrices:
    """The prices `provider.max_price` caps (prompt, completion, request, image), each at the dearest override
    that may apply to a prompt of `prompt_tokens`, as `worst_prices` reads them, but the prompt and completion
    prices as listed: not the dearer cache-write or reasoning prices the worst case charges every token at,
    which no max_price key caps (a cap at those would let in an endpoint dearer than the listed one, whose own
    cache writes or reasoning then cost more than the worst case held)."""
    prices = _dearest(pricing, prompt_tokens)
    return prices["prompt"], prices["completion"], prices["request"], prices["image"]


def prompt_thresholds(pricing: Pricing) -> list[int]:
    """The `min_prompt_tokens` thresholds of the overrides, lowest first, as whole numbers: a prompt
    passes one when it has more tokens than it (`_passes_minimum`), which for a whole number of tokens
    is more than its floor."""
    minimums = (_decimal(override.get("min_prompt_tokens")) for override in pricing.overrides)
    return sorted({math.floor(minimum) for minimum in minimums if minimum is not None})


def cost_of_usage(
    pricing: Pricing, usage: Usage, *, images: int = 0, cache_ttl_1h: bool = False, at: float | None = None
) -> Decimal:
    """What OpenRouter charges for `usage` at `pricing` (reference §8.2), for when `usage.cost` is absent.

    Args:
        pricing: the served model's catalog prices, `overrides` and `discount` included.
        usage: the answer's token counts.
        images: image parts in the request (each costs `pricing.image`).
        cache_ttl_1h: the request asked for a 1-hour cache TTL (`asks_for_1h_cache`): its cache writes
            cost `input_cache_write_1h` (the 5-minute `input_cache_write` when that is not listed).
        at: epoch seconds the answer was made at (its `created`), which decides the time-of-day
            overrides that apply; None: now.
    """
    moment = time.time() if at is None else at
    prices, discount = _effective(pricing, usage.prompt_tokens, _utc_hhmm(moment))
    cached, written = usage.cached_tokens, usage.cache_write_tokens
    uncached = max(0, usage.prompt_tokens - cached - written)
    prompt_cost = uncached * prices["prompt"] + cached * prices["input_cache_read"]
    prompt_cost += written * prices["input_cache_write_1h" if cache_ttl_1h else "input_cache_write"]
    reasoning = usage.reasoning_tokens if prices["internal_reasoning"] > 0 else 0
    completion_cost = (usage.completion_tokens - reasoning) * prices["completion"]
    completion_cost += reasoning * prices["internal_reasoning"]
    total = prompt_cost + completion_cost + prices["request"] + images * prices["image"]
    return total * (1 - discount)
