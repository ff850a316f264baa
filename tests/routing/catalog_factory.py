"""A small hand-made catalog with known prices, capabilities and scores, built in code.

Prices are OpenRouter's units: USD per token, as the strings `/models` sends.

| id                              | $/M in / out | quality          | tier     | notes                          |
|---------------------------------|--------------|------------------|----------|--------------------------------|
| anthropic/claude-sonnet-4.5     | 3 / 15       | 60 benchmark     | premium  | canonical slug, >200K override |
| black-forest-labs/flux-2        | 0 / 0        | 20 estimate      | economy  | outputs images only            |
| google/gemma-4-31b-it           | 0.1 / 0.3    | 35 benchmark     | balanced | no structured outputs          |
| google/gemma-4-31b-it:free      | 0 / 0        | 35 estimate      | balanced | the free twin                  |
| meta-llama/llama-3.1-8b-instruct| 0.02 / 0.05  | 11.6 estimate    | economy  | 16K context, no vision         |
| mistralai/mistral-small         | 0.1 / 0.3    | 25 benchmark     | economy  | no tools, 2,048 completion max |
| openai/gpt-4o-mini              | 0.15 / 0.6   | 30 benchmark     | balanced |                                |
| openai/o1-pro                   | 150 / 600    | 55 benchmark     | premium  | the dearest                    |
| openrouter/auto                 | -1 / -1      | (router)         |          | OpenRouter's router            |
| x-ai/grok-4.1-fast              | 0.2 / 0.5    | 50 benchmark     | premium  | no vision                      |

Tier cuts over the nine non-router scores (11.6, 20, 25, 30, 35, 35, 50, 55, 60) are 30 and 50.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from modelyard.openrouter.catalog_schemas import ModelInfo
from modelyard.routing.catalog import Catalog

__all__ = [
    "AUTO",
    "FETCHED_AT",
    "FLUX",
    "GEMMA",
    "GEMMA_FREE",
    "GPT_4O_MINI",
    "GROK",
    "LLAMA",
    "MISTRAL",
    "O1_PRO",
    "SONNET",
    "SONNET_CANONICAL",
    "catalog",
    "model",
    "rows",
    "small_catalog",
]

FETCHED_AT = 1_787_000_000.0  # 2026-08-17, UTC

SONNET = "anthropic/claude-sonnet-4.5"
SONNET_CANONICAL = "anthropic/claude-4.5-sonnet-20250929"
FLUX = "black-forest-labs/flux-2"
GEMMA = "google/gemma-4-31b-it"
GEMMA_FREE = "google/gemma-4-31b-it:free"
LLAMA = "meta-llama/llama-3.1-8b-instruct"
MISTRAL = "mistralai/mistral-small"
GPT_4O_MINI = "openai/gpt-4o-mini"
O1_PRO = "openai/o1-pro"
AUTO = "openrouter/auto"
GROK = "x-ai/grok-4.1-fast"

_ALL_CAPS = ("tools", "response_format", "structured_outputs", "reasoning")


def model(
    model_id: str,
    *,
    prompt: str = "0",
    completion: str = "0",
    index: float | None = None,
    params: Sequence[str] = ("max_tokens", "temperature"),
    vision: bool = False,
    context: int | None = 128_000,
    max_completion: int | None = 16_384,
    canonical: str | None = None,
    output: Sequence[str] = ("text",),
    tokenizer: str = "Other",
    expiration_date: str | None = None,
    **pricing: Any,
) -> ModelInfo:
    """One `/models` row, shaped as the wire sends it (2026 format: zero price keys left out)."""
    row: dict[str, Any] = {
        "id": model_id,
        "canonical_slug": canonical or model_id,
        "name": model_id,
        "context_length": context,
        "architecture": {
            "input_modalities": ["text", "image"] if vision else ["text"],
            "output_modalities": list(output),
            "tokenizer": tokenizer,
        },
        "pricing": {"prompt": prompt, "completion": completion, **pricing},
        "top_provider": {"context_length": context, "max_completion_tokens": max_completion, "is_moderated": False},
        "supported_parameters": list(params),
        "expiration_date": expiration_date,
    }
    if index is not None:
        row["benchmarks"] = {"artificial_analysis": {"intelligence_index": index, "coding_index": None}}
    return ModelInfo.model_validate(row)


def rows() -> list[ModelInfo]:
    """The ten rows of the table above."""
    return [
        model(
            SONNET, prompt="0.000003", completion="0.000015", index=60, params=_ALL_CAPS, vision=True,
            context=1_000_000, max_completion=64_000, canonical=SONNET_CANONICAL, tokenizer="Claude",
            input_cache_read="0.0000003", input_cache_write="0.00000375", input_cache_write_1h="0.000006",
            overrides=[{"min_prompt_tokens": 200_000, "prompt": "0.000006", "completion": "0.0000225"}],
        ),
        model(FLUX, output=("image",), context=None, max_completion=None),
        model(GEMMA, prompt="0.0000001", completion="0.0000003", index=35, params=("tools", "response_format"),
              vision=True, context=262_144, max_completion=32_768),
        model(GEMMA_FREE, params=("tools", "response_format"), vision=True, context=262_144, max_completion=32_768),
        model(LLAMA, prompt="0.00000002", completion="0.00000005", params=("tools", "response_format",
              "structured_outputs"), context=16_384, max_completion=16_384),
        model(MISTRAL, prompt="0.0000001", completion="0.0000003", index=25, params=("response_format",),
              context=32_768, max_completion=2_048),
        model(GPT_4O_MINI, prompt="0.00000015", completion="0.0000006", index=30,
              params=("tools", "response_format", "structured_outputs"), vision=True, max_completion=16_384,
              input_cache_read="0.000000075"),
        model(O1_PRO, prompt="0.00015", completion="0.0006", index=55, params=_ALL_CAPS, vision=True,
              context=200_000, max_completion=100_000),
        model(AUTO, prompt="-1", completion="-1", params=_ALL_CAPS, vision=True, context=2_000_000,
              max_completion=None, tokenizer="Router"),
        model(GROK, prompt="0.0000002", completion="0.0000005", index=50, params=_ALL_CAPS, context=2_000_000,
              max_completion=30_000, input_cache_read="0.00000005"),
    ]  # fmt: skip


def catalog(
    models: Iterable[ModelInfo], *, fetched_at: float = FETCHED_AT, overrides: Mapping[str, float] | None = None
) -> Catalog:
    """A `Catalog` of `models`."""
    return Catalog(models, fetched_at=fetched_at, quality_overrides=overrides)


def small_catalog(*, fetched_at: float = FETCHED_AT, overrides: Mapping[str, float] | None = None) -> Catalog:
    """The ten-model catalog of the table above."""
    return catalog(rows(), fetched_at=fetched_at, overrides=overrides)
