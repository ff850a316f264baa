"""Turning tool arguments into a RouteRequest: prompt/messages/system, images, legacy functions."""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

__all__ = ["build_messages", "image_part", "translate_functions"]

_MAX_IMAGE_BYTES = 20 * 1024 * 1024


def build_messages(
    prompt: str | None,
    messages: Sequence[dict[str, Any]] | None,
    system: str | None,
    images: Sequence[str],
    allowed_dirs: Sequence[Path],
) -> list[dict[str, Any]]:
    """OpenAI-format messages from the tool's `prompt`/`messages`/`system`/`images` arguments.

    Raises:
        ToolError: neither prompt nor messages, or an image that may not be read.
    """
    if not prompt and not messages:
        raise ToolError("Give either 'prompt' (a string) or 'messages' (OpenAI-format chat messages).")
    result: list[dict[str, Any]] = [dict(m) for m in messages or []]
    if system and not any(m.get("role") == "system" for m in result):
        result.insert(0, {"role": "system", "content": system})
    if prompt:
        result.append({"role": "user", "content": prompt})
    if images:
        _attach_images(result, [image_part(ref, allowed_dirs) for ref in images])
    return result


def _attach_images(messages: list[dict[str, Any]], parts: list[dict[str, Any]]) -> None:
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        messages.append({"role": "user", "content": parts})
        return
    last = users[-1]
    content = last.get("content")
    if not isinstance(content, str | list | None):
        raise ToolError("The last user message's content must be a string or a list of content parts to add images.")
    text_parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
    last["content"] = text_parts + parts


def image_part(reference: str, allowed_dirs: Sequence[Path]) -> dict[str, Any]:
    """An `image_url` part from a URL, a data URI, or a local file under an allowed directory.

    Raises:
        ToolError: a local path outside the allowed directories, missing, or too large.
    """
    if reference.startswith(("http://", "https://", "data:")):
        return {"type": "image_url", "image_url": {"url": reference}}
    try:
        resolved = Path(reference).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):  # a NUL byte, an unknown ~user, a symlink loop
        raise ToolError(f"Image {reference[:200]!r} is not a usable file path, a URL or a data URI.") from None
    allowed = [d.expanduser().resolve() for d in allowed_dirs]
    if not any(resolved.is_relative_to(d) for d in allowed):
        where = ", ".join(str(d) for d in allowed) or "none are configured"
        raise ToolError(
            f"Image {reference!r} is a local path outside the allowed directories ({where}). Pass a URL or a "
            "data URI, or ask the operator to add the directory to MODELYARD_ALLOWED_IMAGE_DIRS."
        )
    if not resolved.is_file():
        raise ToolError(f"Image file {reference!r} does not exist.")
    try:
        data = resolved.read_bytes()
    except OSError as exc:
        raise ToolError(f"Image file {reference!r} cannot be read ({exc.strerror or type(exc).__name__}).") from None
    if len(data) > _MAX_IMAGE_BYTES:
        raise ToolError(f"Image file {reference!r} is larger than 20 MB.")
    mime = mimetypes.guess_type(resolved.name)[0] or "image/png"
    if not mime.startswith("image/"):
        raise ToolError(f"{reference!r} is not an image ({mime}).")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def translate_functions(
    functions: Sequence[dict[str, Any]] | None, function_call: str | dict[str, Any] | None
) -> tuple[list[dict[str, Any]] | None, str | dict[str, Any] | None]:
    """Legacy OpenAI `functions`/`function_call` as `tools`/`tool_choice`."""
    tools = [{"type": "function", "function": dict(f)} for f in functions] if functions else None
    if isinstance(function_call, dict) and "name" in function_call:
        return tools, {"type": "function", "function": {"name": function_call["name"]}}
    return tools, function_call
