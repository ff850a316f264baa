"""Calling a tool through the MCP client: its structured result, or the text of its refusal."""

from __future__ import annotations

from typing import Any

from mcp import Client
from mcp.types import TextContent

__all__ = ["answer", "refusal"]


async def answer(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """The tool's structured result; fails the test when the tool refused."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def refusal(client: Client, tool: str, **arguments: Any) -> str:
    """The text of the tool's is_error result; fails the test when the tool answered."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    content = result.content[0]
    assert isinstance(content, TextContent)
    return content.text
