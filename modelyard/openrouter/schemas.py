"""Pydantic models of OpenRouter's wire format, lenient where the real service is.

Quirks handled here (see shared/reference/openrouter-api.md):
- price keys are strings in USD per unit, and since 2026 zero-valued keys are left out (§2.1);
- routers such as `openrouter/auto` carry `-1` prices (§9.7);
- `usage.cost` is a JSON number; it is read as `Decimal` via its shortest repr (§4.1);
- `error.code` is usually an int but older docs show strings (§5.3);
- unknown keys are kept (`extra="allow"`) so nothing the service adds breaks parsing.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Architecture",
    "Capabilities",
    "ChatChoice",
    "ChatChunk",
    "ChatMessage",
    "ChatRequest",
    "ChatResponse",
    "ChunkChoice",
    "CompletionTokensDetails",
    "CostDetails",
    "Credits",
    "Delta",
    "Endpoint",
    "EndpointsInfo",
    "ErrorBody",
    "ErrorEnvelope",
    "FunctionCall",
    "Generation",
    "KeyInfo",
    "ModelInfo",
    "ModelList",
    "PercentileStats",
    "Pricing",
    "PromptTokensDetails",
    "ToolCall",
    "TopProvider",
    "Usage",
]


class _Wire(BaseModel):
    # defer_build: each validator is built on first use, not at import (about 25 ms off every startup).
    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


# --------------------------------------------------------------------------- catalog


class Pricing(_Wire):
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


class Architecture(_Wire):
    modality: str | None = None
    input_modalities: list[str] = Field(default_factory=lambda: ["text"])
    output_modalities: list[str] = Field(default_factory=lambda: ["text"])
    tokenizer: str | None = None
    instruct_type: str | None = None


class TopProvider(_Wire):
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


class ModelInfo(_Wire):
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


class ModelList(_Wire):
    data: list[ModelInfo]
    total_count: int | None = None


class PercentileStats(_Wire):
    p50: float | None = None
    p75: float | None = None
    p90: float | None = None
    p99: float | None = None


class Endpoint(_Wire):
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


class EndpointsInfo(_Wire):
    id: str
    name: str = ""
    endpoints: list[Endpoint] = Field(default_factory=list)


# --------------------------------------------------------------------------- chat


class ChatRequest(_Wire):
    """The body of `POST /chat/completions`; fields the caller leaves as None are not sent."""

    model: str | None = None
    messages: list[dict[str, Any]]
    models: list[str] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    provider: dict[str, Any] | None = None
    stream: bool | None = None

    def to_body(self) -> dict[str, Any]:
        """The JSON body to send."""
        return self.model_dump(exclude_none=True)


class FunctionCall(_Wire):
    name: str | None = None
    arguments: str = ""


class ToolCall(_Wire):
    id: str | None = None
    type: str = "function"
    index: int | None = None
    function: FunctionCall = Field(default_factory=FunctionCall)


class ChatMessage(_Wire):
    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_details: list[dict[str, Any]] | None = None
    """Structured reasoning (text, summaries, encrypted signatures): send back unchanged on this
    assistant message in the next turn (§3.1)."""


class ErrorBody(_Wire):
    code: int | str | None = None
    message: str = ""
    metadata: dict[str, Any] | None = None

    @field_validator("message", mode="before")
    @classmethod
    def _message_as_text(cls, value: Any) -> str:
        return value if isinstance(value, str) else str(value)


class ChatChoice(_Wire):
    index: int = 0
    finish_reason: str | None = None
    native_finish_reason: str | None = None
    message: ChatMessage = Field(default_factory=ChatMessage)
    error: ErrorBody | None = None


class PromptTokensDetails(_Wire):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class CompletionTokensDetails(_Wire):
    reasoning_tokens: int = 0


class CostDetails(_Wire):
    upstream_inference_cost: Decimal | None = None
    upstream_inference_prompt_cost: Decimal | None = None
    upstream_inference_completions_cost: Decimal | None = None


class Usage(_Wire):
    """Token counts and the cost OpenRouter charged (USD; None when it did not say)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: Decimal | None = None
    is_byok: bool = False
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    cost_details: CostDetails | None = None

    @property
    def cached_tokens(self) -> int:
        return self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else 0

    @property
    def cache_write_tokens(self) -> int:
        return self.prompt_tokens_details.cache_write_tokens if self.prompt_tokens_details else 0

    @property
    def reasoning_tokens(self) -> int:
        details = self.completion_tokens_details
        return details.reasoning_tokens if details else 0


class ChatResponse(_Wire):
    """A non-streamed completion (or one assembled from a stream)."""

    id: str = ""
    object: str = "chat.completion"
    created: int | None = None
    model: str = ""
    provider: str | None = None
    choices: list[ChatChoice] = Field(default_factory=list)
    usage: Usage | None = None
    error: ErrorBody | None = None

    @property
    def first_choice(self) -> ChatChoice | None:
        return self.choices[0] if self.choices else None


class Delta(_Wire):
    role: str | None = None
    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_details: list[dict[str, Any]] | None = None
    """Fragments of the message's `reasoning_details`; those sharing a `type` and `index` are pieces of one."""


class ChunkChoice(_Wire):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: str | None = None
    native_finish_reason: str | None = None


class ChatChunk(_Wire):
    """One `data:` event of a stream. `usage` arrives once, in the last chunk (§5.2)."""

    id: str = ""
    object: str = "chat.completion.chunk"
    created: int | None = None
    model: str = ""
    provider: str | None = None
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None
    error: ErrorBody | None = None

    @property
    def text(self) -> str:
        """The content text this chunk adds (empty for tool-call, reasoning and usage chunks)."""
        return "".join(choice.delta.content or "" for choice in self.choices)

    @property
    def finish_reason(self) -> str | None:
        return next((c.finish_reason for c in self.choices if c.finish_reason), None)


class ErrorEnvelope(_Wire):
    error: ErrorBody
    user_id: str | None = None


# --------------------------------------------------------------------------- account


class KeyInfo(_Wire):
    """`GET /key`: the key's label, spend and credit limit (USD; limit None = unlimited)."""

    label: str = ""
    limit: Decimal | None = None
    limit_remaining: Decimal | None = None
    limit_reset: str | None = None
    usage: Decimal = Decimal(0)
    usage_daily: Decimal | None = None
    usage_monthly: Decimal | None = None
    is_free_tier: bool = False


class Credits(_Wire):
    """`GET /credits`: the account's credit, bought and used, in USD (None: not said).

    Since 2026 only a management key may read it: an ordinary key gets 403 (reference §7.2).
    """

    total_credits: Decimal | None = None
    total_usage: Decimal | None = None

    @property
    def remaining(self) -> Decimal | None:
        """What is left of the account's credit (negative once overspent); None when either part is unknown."""
        if self.total_credits is None or self.total_usage is None:
            return None
        return self.total_credits - self.total_usage


class Generation(_Wire):
    """`GET /generation?id=`: the stats OpenRouter keeps for one completion."""

    id: str
    model: str | None = None
    provider_name: str | None = None
    streamed: bool | None = None
    cancelled: bool | None = None
    finish_reason: str | None = None
    latency: float | None = None
    generation_time: float | None = None
    tokens_prompt: int | None = None
    tokens_completion: int | None = None
    native_tokens_prompt: int | None = None
    native_tokens_completion: int | None = None
    native_tokens_reasoning: int | None = None
    native_tokens_cached: int | None = None
    total_cost: Decimal | None = None
    usage: Decimal | None = None


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]
