"""Deterministic token counting and the simulated prompt cache.

Token rule (documented so that callers can bound it from above):

```
prompt_tokens = 3
              + ceil(B_tools / 4)                          if the request has `tools`
              + sum over messages (4 + ceil(B_m / 4) + 85 * images_m)
```

`B_m` is the UTF-8 byte length of the message's text: string `content`, or the `text` of its text
parts, plus the compact JSON of any other non-image part (audio, file...), plus the name and the
`arguments` of each assistant tool call. An `image_url` part counts 85 tokens whatever its URL.
`B_tools` is the byte length of the `tools` array as compact JSON. Since ceil(B / 4) <= B, the
UTF-8 byte count plus 4 per message, 3 per request and 85 per image bounds it from above.

Completions are counted piece by piece: generated text is cut into pieces of at most 6
non-space characters (with their leading whitespace) and each piece is one token.

Prompt caching: for a model with an `input_cache_read` price, `cached_tokens` is the token count of
the longest run of leading whole messages (with the same tools) that an earlier successful
request of the same key to the same model also started with, counted as 3 + tools + those
messages, when that is at least the configured threshold (default 1024).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "IMAGE_TOKENS",
    "PER_MESSAGE_TOKENS",
    "PER_REQUEST_TOKENS",
    "PrefixCache",
    "PromptCount",
    "count_prompt",
    "pieces",
    "prefix_digests",
    "text_tokens",
]

IMAGE_TOKENS = 85
PER_MESSAGE_TOKENS = 4
PER_REQUEST_TOKENS = 3
_PIECE = re.compile(r"\s*\S{1,6}|\s+")
_MAX_REMEMBERED = 200_000


def text_tokens(text: str) -> int:
    """ceil(UTF-8 bytes / 4)."""
    return (len(text.encode("utf-8")) + 3) // 4


def pieces(text: str) -> list[str]:
    """Cut generated text into one-token pieces; joining them gives the text back."""
    return _PIECE.findall(text)


_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _compact(value: Any) -> str:
    return _CANONICAL.encode(value)


def _content_size(content: Any) -> tuple[int, int]:
    """(UTF-8 bytes of text, number of images) of a message's content."""
    if isinstance(content, str):
        return len(content.encode("utf-8")), 0
    if not isinstance(content, list):
        return 0, 0
    size = images = 0
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "image_url":
            images += 1
        elif kind == "text":
            size += len(str(part.get("text", "")).encode("utf-8"))
        else:
            size += len(_compact(part).encode("utf-8"))
    return size, images


def _tool_call_size(message: Mapping[str, Any]) -> int:
    size = 0
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            size += len(str(function.get("name", "")).encode("utf-8"))
            size += len(str(function.get("arguments", "")).encode("utf-8"))
    return size


@dataclass(frozen=True, slots=True)
class PromptCount:
    """Prompt tokens of a request, with the parts the cache simulation needs."""

    total: int
    images: int
    base: int
    per_message: tuple[int, ...]

    def prefix(self, messages: int) -> int:
        """Tokens of the request's first `messages` messages, including the base (3 + tools)."""
        return self.base + sum(self.per_message[:messages])


def count_prompt(messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None) -> PromptCount:
    """Count a request's prompt tokens by the module's rule."""
    base = PER_REQUEST_TOKENS + (text_tokens(_compact(list(tools))) if tools else 0)
    per_message: list[int] = []
    images = 0
    for message in messages:
        size, message_images = _content_size(message.get("content"))
        size += _tool_call_size(message)
        images += message_images
        per_message.append(PER_MESSAGE_TOKENS + (size + 3) // 4 + IMAGE_TOKENS * message_images)
    return PromptCount(base + sum(per_message), images, base, tuple(per_message))


def prefix_digests(messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None) -> list[bytes]:
    """One digest per leading run of messages: digest i covers the tools and messages[0..i]."""
    running = hashlib.sha256(_compact(list(tools or ())).encode("utf-8"))
    digests = []
    for message in messages:
        running.update(_compact(message).encode("utf-8"))
        digests.append(running.copy().digest())
    return digests


class PrefixCache:
    """Remembers the message prefixes each (key, model) has sent, for simulated cache reads."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], set[bytes]] = {}

    def longest(self, key: str, model: str, digests: Sequence[bytes]) -> int:
        """How many leading messages match a prefix seen before (0 when none)."""
        seen = self._seen.get((key, model))
        if not seen:
            return 0
        for count in range(len(digests), 0, -1):
            if digests[count - 1] in seen:
                return count
        return 0

    def remember(self, key: str, model: str, digests: Sequence[bytes]) -> None:
        """Record every prefix of a request that was served."""
        seen = self._seen.setdefault((key, model), set())
        if len(seen) > _MAX_REMEMBERED:
            seen.clear()
        seen.update(digests)

    def clear(self) -> None:
        """Forget everything."""
        self._seen.clear()
