"""Pydantic models of OpenRouter's wire format for chat and the account, lenient where the real service is.

The catalog's (`GET /models`, `/models/{id}/endpoints`) are in `catalog_schemas`, on the same base.
Quirks handled here (see shared/reference/openrouter-api.md):
- `usage.cost` is a JSON number; it is read as `Decimal` via its shortest repr (§4.1);
- `error.code` is usually an int but older docs show strings (§5.3);
- unknown keys are kept (`extra="allow"`) so nothing the service adds breaks parsing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
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
    "ErrorBody",
    "ErrorEnvelope",
    "FunctionCall",
    "Generation",
    "KeyInfo",
    "PromptTokensDetails",
    "ToolCall",
    "Usage",
    "WireModel",
]


class WireModel(BaseModel):
    """The base of every wire model (here and in `catalog_schemas`): unknown keys kept, fields by name or alias."""

    # defer_build: each validator is built on first use, not at import (about 25 ms off every startup).
    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


# --------------------------------------------------------------------------- chat


class ChatRequest(WireModel):
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


class FunctionCall(WireModel):
    name: str | None = None
    arguments: str = ""


class ToolCall(WireModel):
    id: str | None = None
    type: str = "function"
    index: int | None = None
    function: FunctionCall = Field(default_factory=FunctionCall)


class ChatMessage(WireModel):
    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_details: list[dict[str, Any]] | None = None
    """Structured reasoning (text, summaries, encrypted signatures): send back unchanged on this
    assistant message in the next turn (§3.1)."""


class ErrorBody(WireModel):
    code: int | str | None = None
    message: str = ""
    metadata: dict[str, Any] | None = None

    @field_validator("message", mode="before")
    @classmethod
    def _message_as_text(cls, value: Any) -> str:
        return value if isinstance(value, str) else str(value)


class ChatChoice(WireModel):
    index: int = 0
    finish_reason: str | None = None
    native_finish_reason: str | None = None
    message: ChatMessage = Field(default_factory=ChatMessage)
    error: ErrorBody | None = None


class PromptTokensDetails(WireModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class CompletionTokensDetails(WireModel):
    reasoning_tokens: int = 0


class CostDetails(WireModel):
    upstream_inference_cost: Decimal | None = None
    upstream_inference_prompt_cost: Decimal | None = None
    upstream_inference_completions_cost: Decimal | None = None


class Usage(WireModel):
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


class ChatResponse(WireModel):
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


class Delta(WireModel):
    role: str | None = None
    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_details: list[dict[str, Any]] | None = None
    """Fragments of the message's `reasoning_details`; those sharing a `type` and `index` are pieces of one."""


class ChunkChoice(WireModel):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: str | None = None
    native_finish_reason: str | None = None


class ChatChunk(WireModel):
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


class ErrorEnvelope(WireModel):
    error: ErrorBody
    user_id: str | None = None


# --------------------------------------------------------------------------- account


class KeyInfo(WireModel):
    """`GET /key`: the key's label, spend and credit limit (USD; limit None = unlimited)."""

    label: str = ""
    limit: Decimal | None = None
    limit_remaining: Decimal | None = None
    limit_reset: str | None = None
    usage: Decimal = Decimal(0)
    usage_daily: Decimal | None = None
    usage_monthly: Decimal | None = None
    is_free_tier: bool = False


class Credits(WireModel):
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


class Generation(WireModel):
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
