"""modelyard: an MCP server and library that routes each request to the right OpenRouter model."""

__version__ = "0.1.0"

__all__ = ["__version__"]
