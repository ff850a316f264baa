"""OpenRouter's bytes: completion bodies, stream chunks and error envelopes, as recorded in 2026.

Key orders follow the recordings (reference §4.3 and §5.1): a body is
`id, object, created, model, provider, system_fingerprint, [service_tier], choices, usage` and a chunk
is `id, object, created, model, provider, [service_tier], choices, [usage]`. Non-streamed bodies start
with the keep-alive whitespace `"\\n         \\n"`; streams start with `: OPENROUTER PROCESSING`.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from modelyard.sandbox.catalog import CatalogModel
from modelyard.sandbox.http import Response
from modelyard.sandbox.pricing import json_number
from modelyard.sandbox.replies import Reply

__all__ = [
    "DONE",
    "KEEPALIVE",
    "PROCESSING",
    "USER_ID",
    "Generation",
    "WireUsage",
    "completion_body",
    "data_line",
    "dumps",
    "dumps_exact",
    "error_body",
    "error_chunk",
    "error_response",
    "finish_chunks",
    "generation_id",
    "reply_chunks",
]

KEEPALIVE = b"\n         \n"
PROCESSING = b": OPENROUTER PROCESSING\n\n"
DONE = b"data: [DONE]\n\n"
USER_ID = "user_2sandboxLocalUser0000000"

_BASE62 = string.digits + string.ascii_letters
_NATIVE_FINISH = {
    "openai": {"stop": "completed", "tool_calls": "completed", "length": "max_output_tokens"},
    "anthropic": {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"},
    "google": {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS"},
}
_REASONING_FORMAT = {
    "openai": "openai-responses-v1",
    "anthropic": "anthropic-claude-v1",
    "google": "google-gemini-v1",
}


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    """Compact JSON, UTF-8 kept as is (as OpenRouter sends it)."""
    return _ENCODER.encode(value)


_EXACT = re.compile(r'"\\u0000(-?[0-9.]+)\\u0000"')


def _exact_number(value: object) -> str:
    if isinstance(value, Decimal):
        return "\x00" + json_number(value) + "\x00"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps_exact(value: Any) -> str:
    """Compact JSON where `Decimal` values become plain JSON numbers with every digit kept."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_exact_number)
    return _EXACT.sub(r"\1", text)


def generation_id(now: int) -> str:
    """A fresh `gen-<unix>-<20 base62>` id."""
    return f"gen-{now}-" + "".join(_BASE62[byte % 62] for byte in secrets.token_bytes(20))


def error_body(status: int, message: str, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The error envelope `{"error": {"message", "code", "metadata"?}, "user_id"}`."""
    error: dict[str, Any] = {"message": message, "code": status}
    if metadata is not None:
        error["metadata"] = dict(metadata)
    return {"error": error, "user_id": USER_ID}


def error_response(
    status: int,
    message: str,
    metadata: Mapping[str, Any] | None = None,
    *,
    headers: list[tuple[str, str]] | None = None,
    user_id: bool = True,
) -> Response:
    """An error response whose HTTP status equals `error.code`."""
    body = error_body(status, message, metadata)
    if not user_id:
        del body["user_id"]
    return Response(status, dumps(body).encode("utf-8"), headers=headers or [])


@dataclass(frozen=True, slots=True)
class WireUsage:
    """The numbers of a `usage` object; money is already rounded to the wire (see pricing)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost: Decimal
    prompt_cost: Decimal
    completion_cost: Decimal

    def to_json(self) -> str:
        """The `usage` object as JSON text, with `cost` as a plain JSON number."""
        cost = json_number(self.cost)
        return (
            f'{{"prompt_tokens":{self.prompt_tokens},"completion_tokens":{self.completion_tokens},'
            f'"total_tokens":{self.prompt_tokens + self.completion_tokens},"cost":{cost},"is_byok":false,'
            f'"prompt_tokens_details":{{"cached_tokens":{self.cached_tokens},'
            f'"cache_write_tokens":{self.cache_write_tokens},"audio_tokens":0,"video_tokens":0}},'
            f'"cost_details":{{"upstream_inference_cost":{cost},'
            f'"upstream_inference_prompt_cost":{json_number(self.prompt_cost)},'
            f'"upstream_inference_completions_cost":{json_number(self.completion_cost)}}},'
            f'"completion_tokens_details":{{"reasoning_tokens":{self.reasoning_tokens},'
            f'"image_tokens":0,"audio_tokens":0}}}}'
        )


@dataclass(frozen=True, slots=True)
class Generation:
    """Who answers: the generation id, its timestamp and the model that served it."""

    id: str
    created: int
    model: CatalogModel

    def native_finish(self, finish: str) -> str:
        """The provider's own name for a finish reason."""
        return _NATIVE_FINISH.get(self.model.author, {}).get(finish, finish)

    @property
    def has_service_tier(self) -> bool:
        """OpenAI answers carry `service_tier` (as recorded)."""
        return self.model.author == "openai"

    def head(self, kind: str) -> dict[str, Any]:
        """The leading keys of a body (`chat.completion`) or a chunk (`chat.completion.chunk`)."""
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model.slug,
            "provider": self.model.provider,
        }


def _reasoning_details(generation: Generation, text: str) -> list[dict[str, Any]]:
    fmt = _REASONING_FORMAT.get(generation.model.author, "unknown")
    return [{"type": "reasoning.text", "text": text, "format": fmt, "index": 0}]


def _message(generation: Generation, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.content,
        "refusal": None,
        "reasoning": reply.reasoning,
    }
    call = reply.tool_call
    if call is not None:
        function = {"name": call.name, "arguments": call.arguments}
        message["tool_calls"] = [{"type": "function", "index": 0, "id": call.id, "function": function}]
    if reply.reasoning is not None:
        message["reasoning_details"] = _reasoning_details(generation, reply.reasoning)
    return message


def completion_body(generation: Generation, reply: Reply, usage: WireUsage, *, keepalives: int = 1) -> bytes:
    """A non-streamed completion body, keep-alive whitespace first."""
    body = generation.head("chat.completion")
    body["system_fingerprint"] = None
    if generation.has_service_tier:
        body["service_tier"] = "default"
    body["choices"] = [
        {
            "index": 0,
            "logprobs": None,
            "finish_reason": reply.finish_reason,
            "native_finish_reason": generation.native_finish(reply.finish_reason),
            "message": _message(generation, reply),
        }
    ]
    text = dumps(body)[:-1] + ',"usage":' + usage.to_json() + "}"
    return KEEPALIVE * keepalives + text.encode("utf-8")


def data_line(payload: str) -> bytes:
    """One SSE event: `data: <payload>` and a blank line."""
    return b"data: " + payload.encode("utf-8") + b"\n\n"


def _chunk(generation: Generation, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    chunk = generation.head("chat.completion.chunk")
    if finish is not None and generation.has_service_tier:
        chunk["service_tier"] = "default"
    native = generation.native_finish(finish) if finish is not None else None
    chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": native}]
    return chunk


def reply_chunks(generation: Generation, reply: Reply) -> Iterator[bytes]:
    """The content events of a stream: reasoning, then text or tool-call fragments (no finish)."""
    # Every event shares its head and tail; only the delta is serialised per event.
    head = dumps(generation.head("chat.completion.chunk"))[:-1] + ',"choices":[{"index":0,"delta":'
    tail = ',"finish_reason":null,"native_finish_reason":null}]}'

    def event(delta: dict[str, Any]) -> bytes:
        return data_line(head + dumps(delta) + tail)

    for piece in reply.reasoning_pieces:
        details = _reasoning_details(generation, piece)
        yield event({"content": "", "role": "assistant", "reasoning": piece, "reasoning_details": details})
    for piece in reply.content_pieces:
        yield event({"content": piece, "role": "assistant"})
    call = reply.tool_call
    if call is not None:
        first = {"index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        yield event({"content": None, "role": "assistant", "tool_calls": [first]})
        for piece in call.argument_pieces:
            fragment = {"index": 0, "function": {"arguments": piece}}
            yield event({"content": None, "role": "assistant", "tool_calls": [fragment]})


def finish_chunks(generation: Generation, reply: Reply, usage: WireUsage) -> tuple[bytes, bytes]:
    """The finish event and the final event that repeats it with `usage`."""
    delta: dict[str, Any] = {"content": "", "role": "assistant"}
    final = dumps(_chunk(generation, delta, reply.finish_reason))
    if generation.model.author == "google":
        delta["reasoning"] = None  # as recorded: Gemini's finish event carries a null reasoning
    finish = dumps(_chunk(generation, delta, reply.finish_reason))
    return data_line(finish), data_line(final[:-1] + ',"usage":' + usage.to_json() + "}")


def error_chunk(generation: Generation, status: int, message: str, metadata: Mapping[str, Any]) -> bytes:
    """A mid-stream error event (§5.3): top-level `error` and a choice finishing with "error"."""
    chunk = generation.head("chat.completion.chunk")
    chunk["error"] = {"code": status, "message": message, "metadata": dict(metadata)}
    chunk["choices"] = [
        {"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "error"}
    ]
    return data_line(dumps(chunk))
