"""The OpenRouter adapter: the only code that speaks OpenRouter's HTTP and JSON."""

from typing import TYPE_CHECKING, Any

from modelyard.openrouter.catalog_schemas import Capabilities, EndpointsInfo, ModelInfo, Pricing
from modelyard.openrouter.schemas import ChatChunk, ChatRequest, ChatResponse, Generation, KeyInfo, Usage

if TYPE_CHECKING:
    from modelyard.openrouter.client import DEFAULT_BASE_URL, OpenRouterClient

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


def __getattr__(name: str) -> Any:
    # The client (and its HTTP stack) loads when first named, not with the package: the wire models
    # are needed to describe the server's tools long before anything is sent.
    if name in ("DEFAULT_BASE_URL", "OpenRouterClient"):
        from modelyard.openrouter import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
