"""The OpenRouter adapter: the only code that speaks OpenRouter's HTTP and JSON."""

from modelyard.openrouter.client import DEFAULT_BASE_URL, OpenRouterClient
from modelyard.openrouter.schemas import (
    Capabilities,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EndpointsInfo,
    Generation,
    KeyInfo,
    ModelInfo,
    Pricing,
    Usage,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "Capabilities",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "EndpointsInfo",
    "Generation",
    "KeyInfo",
    "ModelInfo",
    "OpenRouterClient",
    "Pricing",
    "Usage",
]
