"""Cost maths, in the units OpenRouter uses: prices are USD per *token* (strings in `/models`).

Three different numbers, kept apart on purpose:
- `prompt_token_bound`: a true upper bound of prompt tokens, for budget reservations. A byte-level
  BPE token covers at least one byte, so UTF-8 bytes plus a per-message allowance bound any tokenizer.
- `prompt_token_estimate`: a realistic count (~4 bytes a token), for context-window checks.
- `worst_case_cost` / `cost_of_usage`: USD, exact `Decimal`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.openrouter.schemas import Pricing, Usage

__all__ = [
    "PER_1K",
    "cost_of_usage",
    "per_1k",
    "per_million",
    "prompt_token_bound",
    "prompt_token_counts",
    "prompt_token_estimate",
    "worst_case_cost",
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


def _effective(pricing: Pricing, prompt_tokens: int) -> dict[str, Decimal]:
    """Base prices with every matching `min_prompt_tokens` override applied (later entries win)."""
    prices = {
        "prompt": pricing.prompt,
        "completion": pricing.completion,
        "internal_reasoning": pricing.internal_reasoning,
        "input_cache_read": pricing.input_cache_read if pricing.input_cache_read is not None else pricing.prompt,
        "input_cache_write": pricing.input_cache_write if pricing.input_cache_write is not None else pricing.prompt,
        "input_cache_write_1h": (
            pricing.input_cache_write_1h if pricing.input_cache_write_1h is not None else pricing.prompt
        ),
        "request": pricing.request,
        "image": pricing.image,
    }
    for override in pricing.overrides:
        threshold = override.get("min_prompt_tokens")
        if isinstance(threshold, int | float) and prompt_tokens > threshold:
            prices.update({k: Decimal(str(v)) for k, v in override.items() if k in prices})
    return prices


def _dearest(pricing: Pricing, prompt_tokens: int) -> dict[str, Decimal]:
    """The highest price of each kind that may apply: the base, every time-of-day override (the hour
    the provider bills at is not known in advance) and every `min_prompt_tokens` override passed."""
    prices = _effective(pricing, 0)
    for override in pricing.overrides:
        threshold = override.get("min_prompt_tokens")
        if threshold is None or (isinstance(threshold, int | float) and prompt_tokens > threshold):
            prices.update({k: max(prices[k], Decimal(str(v))) for k, v in override.items() if k in prices})
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
    prices = _dearest(pricing, prompt_tokens)
    completion = max(prices["completion"], prices["internal_reasoning"])
    prompt = max(prices["prompt"], prices["input_cache_write"], prices["input_cache_write_1h"])
    return prompt_tokens * prompt + max_tokens * completion + prices["request"] + images * prices["image"]


def cost_of_usage(pricing: Pricing, usage: Usage, *, images: int = 0) -> Decimal:
    """What OpenRouter charges for `usage` at `pricing` (reference §8.2), for when `usage.cost` is absent."""
    prices = _effective(pricing, usage.prompt_tokens)
    cached, written = usage.cached_tokens, usage.cache_write_tokens
    uncached = max(0, usage.prompt_tokens - cached - written)
    prompt_cost = uncached * prices["prompt"] + cached * prices["input_cache_read"]
    prompt_cost += written * prices["input_cache_write"]
    reasoning = usage.reasoning_tokens if prices["internal_reasoning"] > 0 else 0
    completion_cost = (usage.completion_tokens - reasoning) * prices["completion"]
    completion_cost += reasoning * prices["internal_reasoning"]
    total = prompt_cost + completion_cost + prices["request"] + images * prices["image"]
    return total * (1 - pricing.discount)
