"""Pydantic models of OpenRouter's catalog: `GET /models` and `GET /models/{id}/endpoints`, and the capabilities
derived from a model's row.

Kept apart from the chat and account models (`schemas`), on the same lenient base (`WireModel`): these
say what a model is and costs, which selection and pricing read, not what one request sends or gets back.
Quirks handled here (see shared/reference/openrouter-api.md):
- price keys are strings in USD per unit, and since 2026 zero-valued keys are left out (§2.1);
- routers such as `openrouter/auto` carry `-1` prices (§9.7).
"""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelyard.openrouter.schemas import WireModel

__all__ = [
    "Architecture",
    "Capabilities",
    "Endpoint",
    "EndpointsInfo",
    "ModelInfo",
    "ModelList",
    "PercentileStats",
    "Pricing",
    "TopProvider",
]


class Pricing(WireModel):
    """USD per token (or per request / image / search). Missing keys mean 0."""

    prompt: Decimal = Decimal(0)
    completion: Decimal = Decimal(0)
    request: Decimal = Decimal(0)
    image: Decimal = Decimal(0)
    web_search: Decimal = Decimal(0)
    internal_reasoning: Decimal = Decimal(0)
    input_cache_read: Decimal | None = None
    input_cache_write: Decimal | None = None
    input_cache_write_1h: Decimal | None = None
    discount: Decimal = Decimal(0)
    overrides: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def is_dynamic(self) -> bool:
        """True for routers (`-1` prices): the real price is only known after routing."""
        return self.prompt < 0 or self.completion < 0


class Architecture(WireModel):
    modality: str | None = None
    input_modalities: list[str] = Field(default_factory=lambda: ["text"])
    output_modalities: list[str] = Field(default_factory=lambda: ["text"])
    tokenizer: str | None = None
    instruct_type: str | None = None


class TopProvider(WireModel):
    context_length: int | None = None
    max_completion_tokens: int | None = None
    is_moderated: bool = False


class Capabilities(BaseModel):
    """What a model can do, derived from its catalog row (DESIGN §3)."""

    model_config = ConfigDict(frozen=True)

    vision: bool
    tools: bool
    json_mode: bool
    structured_outputs: bool
    reasoning: bool
    context_length: int | None
    max_completion_tokens: int | None

    def names(self) -> list[str]:
        """The capability flags that are set, by name."""
        flags = ("vision", "tools", "json_mode", "structured_outputs", "reasoning")
        return [name for name in flags if getattr(self, name)]


class ModelInfo(WireModel):
    """One row of `GET /models`."""

    id: str
    canonical_slug: str | None = None
    name: str = ""
    created: int | None = None
    description: str | None = None
    context_length: int | None = None
    architecture: Architecture = Field(default_factory=Architecture)
    pricing: Pricing = Field(default_factory=Pricing)
    top_provider: TopProvider = Field(default_factory=TopProvider)
    supported_parameters: list[str] = Field(default_factory=list)
    default_parameters: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    benchmarks: dict[str, Any] | None = None
    expiration_date: str | None = None

    @property
    def author(self) -> str:
        """The model's author (`openai` in `openai/gpt-4o`)."""
        return self.id.split("/", 1)[0].lstrip("~")

    @property
    def is_router(self) -> bool:
        """True for OpenRouter's routers (`openrouter/auto`), which pick a model themselves."""
        return self.architecture.tokenizer == "Router" or self.pricing.is_dynamic

    @property
    def intelligence_index(self) -> float | None:
        """Artificial Analysis' intelligence index, where the catalog has one."""
        analysis = (self.benchmarks or {}).get("artificial_analysis") or {}
        value = analysis.get("intelligence_index") if isinstance(analysis, dict) else None
        return float(value) if isinstance(value, int | float) else None

    @cached_property
    def capabilities(self) -> Capabilities:
        """Capabilities derived from modalities and supported parameters."""
        params = set(self.supported_parameters)
        max_completion = self.top_provider.max_completion_tokens
        return Capabilities(
            vision="image" in self.architecture.input_modalities,
            tools="tools" in params,
            json_mode="response_format" in params,
            structured_outputs="structured_outputs" in params,
            reasoning="reasoning" in params or "include_reasoning" in params or self.reasoning is not None,
            context_length=self.context_length or self.top_provider.context_length,
            max_completion_tokens=max_completion,
        )

    @cached_property
    def output_cap_parameter(self) -> Literal["max_tokens", "max_completion_tokens"]:
        """The request parameter that bounds this model's answer.

        `max_completion_tokens` when the model lists it and not the deprecated `max_tokens` (OpenRouter
        silently drops a parameter a model does not list, §3.1, leaving the answer unbounded);
        `max_tokens` otherwise, as most rows list it.
        """
        params = self.supported_parameters
        if "max_completion_tokens" in params and "max_tokens" not in params:
            return "max_completion_tokens"
        return "max_tokens"


class ModelList(WireModel):
    data: list[ModelInfo]
    total_count: int | None = None


class PercentileStats(WireModel):
    p50: float | None = None
    p75: float | None = None
    p90: float | None = None
    p99: float | None = None


class Endpoint(WireModel):
    """One provider endpoint of a model, with its recent latency (ms to first token) and throughput."""

    name: str = ""
    model_id: str | None = None
    provider_name: str = ""
    tag: str | None = None
    context_length: int | None = None
    max_completion_tokens: int | None = None
    pricing: Pricing = Field(default_factory=Pricing)
    status: int | None = None
    uptime_last_30m: float | None = None
    latency_last_30m: PercentileStats | None = None
    throughput_last_30m: PercentileStats | None = None


class EndpointsInfo(WireModel):
    id: str
    name: str = ""
    endpoints: list[Endpoint] = Field(default_factory=list)
