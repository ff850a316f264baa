"""Turning tool arguments into a RouteRequest: prompt/messages/system, images, legacy functions."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver.exceptions import ToolError

__all__ = ["build_messages", "image_part", "translate_functions"]

_MAX_IMAGE_BYTES = 20 * 1024 * 1024
_ACCEPTED = "PNG, JPEG, GIF or WebP"
_SNIFF_BYTES = 12  # enough for every signature below (WebP's is at bytes 8-11)


async def build_messages(
    prompt: str | None,
    messages: Sequence[dict[str, Any]] | None,
    system: str | None,
    images: Sequence[str],
    allowed_dirs: Sequence[Path],
) -> list[dict[str, Any]]:
    """OpenAI-format messages from the tool's `prompt`/`messages`/`system`/`images` arguments.

    Local image files are read in a worker thread, so a large file never blocks the event loop.

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
        _attach_images(result, [await image_part(ref, allowed_dirs) for ref in images])
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


async def image_part(reference: str, allowed_dirs: Sequence[Path]) -> dict[str, Any]:
    """An `image_url` part from a URL, a data URI, or a local file under an allowed directory.

    A local file is read in a worker thread; its type is told by its first bytes (PNG, JPEG, GIF or
    WebP), never by its name, and a file over 20 MB is refused before it is read.

    Raises:
        ToolError: a local path outside the allowed directories, missing, too large, or not an image.
    """
    if reference.startswith(("http://", "https://", "data:")):
        return {"type": "image_url", "image_url": {"url": reference}}
    return await anyio.to_thread.run_sync(_local_image_part, reference, allowed_dirs)


def _local_image_part(reference: str, allowed_dirs: Sequence[Path]) -> dict[str, Any]:
    """`image_part` for a local path: blocking file I/O, run in a worker thread."""
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
    try:
        if not resolved.is_file():
            raise ToolError(f"Image file {reference!r} does not exist.")
        mime, data = _read_image(resolved, reference)
    except OSError as exc:  # also a name too long for the file system, which `is_file` raises
        raise ToolError(f"Image file {reference!r} cannot be read ({exc.strerror or type(exc).__name__}).") from None
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def _read_image(path: Path, reference: str) -> tuple[str, bytes]:
    """The image's MIME type and bytes: its size is checked before reading, and at most the limit is read.

    Opened non-blocking, so a FIFO swapped in after the `is_file` check is refused instead of hanging.
    """
    too_large = f"Image file {reference!r} is larger than 20 MB. Shrink or compress it, or pass a URL."
    with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"Image file {reference!r} is not a regular file.")
        if info.st_size > _MAX_IMAGE_BYTES:
            raise ToolError(too_large)
        head = file.read(_SNIFF_BYTES)
        mime = _sniff(head)
        if mime is None:
            raise ToolError(
                f"Image file {reference!r} is not a {_ACCEPTED} image (told by its first bytes, not its name). "
                "Convert it to one of those, or pass a URL."
            )
        data = head + file.read(_MAX_IMAGE_BYTES + 1 - len(head))
    if len(data) > _MAX_IMAGE_BYTES:  # the file grew after its size was read
        raise ToolError(too_large)
    return mime, data


def _sniff(head: bytes) -> str | None:
    """The MIME type the file's first bytes announce, or None when they are none of the accepted images."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def translate_functions(
    functions: Sequence[dict[str, Any]] | None, function_call: str | dict[str, Any] | None
) -> tuple[list[dict[str, Any]] | None, str | dict[str, Any] | None]:
    """Legacy OpenAI `functions`/`function_call` as `tools`/`tool_choice`."""
    tools = [{"type": "function", "function": dict(f)} for f in functions] if functions else None
    if isinstance(function_call, dict) and "name" in function_call:
        return tools, {"type": "function", "function": {"name": function_call["name"]}}
    return tools, function_call
