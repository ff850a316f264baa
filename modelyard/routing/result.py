"""What the router answers: the content, who answered, what it cost, and every attempt on the way."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from modelyard.routing.money import Usd
from modelyard.routing.schema import ResultModel

__all__ = ["AttemptRecord", "CandidateView", "ExclusionView", "PlanView", "RouteResult", "TokenUsage"]


class TokenUsage(ResultModel):
    """Token counts as OpenRouter reported them (native tokenizer)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0


class AttemptRecord(ResultModel):
    """One upstream attempt (or a candidate skipped before sending)."""

    model: str = Field(description="The model id tried.")
    outcome: Literal["ok", "error", "skipped"]
    error: str | None = Field(default=None, description="What went wrong, if anything.")
    error_kind: str | None = Field(default=None, description="Stable failure name, e.g. rate_limited.")
    latency_ms: float | None = None
    cost: Usd | None = Field(default=None, description="USD billed for this attempt; null = unknown.")


class RouteResult(ResultModel):
    """The answer to one routed request."""

    content: str | None = Field(description="The answer text (null when the model only called tools).")
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    reasoning: str | None = None
    reasoning_details: list[dict[str, Any]] | None = Field(
        default=None,
        description="The model's structured reasoning (signatures included): send back unchanged on the "
        "assistant message of the next turn, with its tool_calls, for multi-turn reasoning.",
    )
    model: str = Field(description="The model that answered, as OpenRouter reports it.")
    requested_model: str = Field(description="What the caller asked for (auto, a tier, an id).")
    resolved_model: str = Field(description="The catalog id the router sent the request to.")
    provider: str | None = None
    finish_reason: str | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)
    cost: Usd | None = Field(description="USD charged for this answer; 0 for a cache hit; null when unknown.")
    request_cost: Usd | None = Field(
        default=None,
        description="USD the whole request was billed: this answer plus the earlier attempts OpenRouter "
        "billed (answers the requested schema rejected); 0 for a cache hit; null when any part is unknown, "
        "as when an earlier attempt was abandoned after its answer began (it may be billed).",
    )
    cost_source: Literal["upstream", "computed", "cache"] | None = None
    cached: bool = False
    saved: Usd | None = Field(default=None, description="USD a cache hit saved.")
    latency_ms: float = 0.0
    attempts: list[AttemptRecord] = Field(default_factory=list)
    selection: str = Field(default="", description="Why this model was chosen.")
    generation_id: str | None = None


class CandidateView(ResultModel):
    model: str
    score: float
    tier: str
    quality: float
    quality_source: str
    prompt_per_1m: Usd
    completion_per_1m: Usd
    max_tokens: int
    worst_case_cost: Usd | None
    reason: str


class ExclusionView(ResultModel):
    model: str
    reason: str


class PlanView(ResultModel):
    """A dry run: the ranked candidates, the excluded models with reasons, the estimated cost; with no
    candidate, why none is left (`no_candidates_reason`)."""

    mode: str
    required_capabilities: list[str]
    prompt_tokens_estimate: int
    prompt_tokens_bound: int
    candidates: list[CandidateView]
    excluded: list[ExclusionView]
    excluded_total: int
    estimated_cost: Usd | None = Field(description="Worst-case USD of the first candidate.")
    no_candidates_reason: str | None = Field(
        default=None,
        description="When no model is left (candidates empty): why, grouped by kind with example models, the "
        "limit that binds and where it comes from, and a change that would let a model through (the text "
        "execute would refuse the request with). Null when there are candidates.",
    )
