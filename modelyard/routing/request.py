"""What a caller asks the router for: the prompt, the constraints, and the sampling parameters."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CAPABILITIES", "Capability", "RouteRequest"]

Capability = Literal["vision", "tools", "json_mode", "structured_outputs", "reasoning"]
CAPABILITIES: tuple[Capability, ...] = ("vision", "tools", "json_mode", "structured_outputs", "reasoning")
Quality = Literal["low", "medium", "high"]
Speed = Literal["any", "fast"]
CacheMode = Literal["auto", "on", "off"]


class RouteRequest(BaseModel):
    """One request to route. `messages` are OpenAI-format chat messages (image parts included)."""

    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]] = Field(min_length=1)
    model: str = "auto"
    models: list[str] = Field(default_factory=list)
    quality: Quality | None = None
    speed: Speed | None = None
    capabilities: list[Capability] = Field(default_factory=list)
    provider: list[str] = Field(default_factory=list)
    tier: Literal["economy", "balanced", "premium"] | None = None
    max_cost_per_1k: Decimal | None = Field(default=None, ge=0)
    max_cost: Decimal | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    stream: bool = False
    cache: CacheMode | None = None
    timeout_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_messages(self) -> RouteRequest:
        for index, message in enumerate(self.messages):
            if not isinstance(message.get("role"), str):
                raise ValueError(f"messages[{index}] needs a 'role' (system, user, assistant or tool)")
        return self

    def required_capabilities(self) -> set[Capability]:
        """Explicit capabilities plus those the request implies (tools, images, JSON, reasoning)."""
        needed: set[Capability] = set(self.capabilities)
        if self.tools:
            needed.add("tools")
        if self.has_images():
            needed.add("vision")
        kind = (self.response_format or {}).get("type")
        if kind == "json_object":
            needed.add("json_mode")
        elif kind == "json_schema":
            needed.add("structured_outputs")
        if self.reasoning and self.reasoning.get("enabled", True) and self.reasoning.get("effort") != "none":
            needed.add("reasoning")
        return needed

    def has_images(self) -> bool:
        return self.image_count() > 0

    def image_count(self) -> int:
        """Image parts across all messages."""
        return sum(
            1
            for message in self.messages
            if isinstance(message.get("content"), list)
            for part in message["content"]
            if isinstance(part, dict) and part.get("type") == "image_url"
        )
