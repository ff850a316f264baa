"""One upstream attempt: build the wire request, call (streamed or not), assemble and check the answer."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from modelyard.errors import SchemaValidationError
from modelyard.openrouter.schemas import (
    ChatChoice,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    FunctionCall,
    ToolCall,
    Usage,
)
from modelyard.routing.events import EventSink, Restart, StreamEvent, TextDelta
from modelyard.routing.request import RouteRequest

if TYPE_CHECKING:
    from modelyard.openrouter.client import GenerationHook, OpenRouterClient

__all__ = ["EventSink", "Restart", "StreamEvent", "TextDelta", "check_json", "stream_model", "wire_request"]


def wire_request(request: RouteRequest, model: str, max_tokens: int) -> ChatRequest:
    """The OpenRouter body for one attempt on `model` (fallbacks are ours, so no `models` list)."""
    return ChatRequest(
        model=model,
        messages=request.messages,
        max_tokens=max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop,
        seed=request.seed,
        tools=request.tools,
        tool_choice=request.tool_choice,
        response_format=request.response_format,
        reasoning=request.reasoning,
    )


async def stream_model(
    client: OpenRouterClient, body: ChatRequest, on_generation: GenerationHook | None = None
) -> AsyncGenerator[TextDelta | ChatResponse]:
    """Stream one attempt: its text as it arrives, then the whole answer, assembled."""
    assembler = _Assembler()
    async with aclosing(client.stream_chat(body, on_generation=on_generation)) as chunks:
        async for chunk in chunks:
            assembler.add(chunk.model, chunk.provider, chunk.id, chunk.usage)
            for choice in chunk.choices:
                assembler.add_choice(
                    choice.delta.content, choice.delta.reasoning, choice.delta.tool_calls, choice.finish_reason
                )
            if text := chunk.text:
                yield TextDelta(body.model or "", text)
    yield assembler.response()


class _Assembler:
    """Joins stream chunks into one `ChatResponse` (tool-call fragments by index)."""

    def __init__(self) -> None:
        self.model, self.id = "", ""
        self.provider: str | None = None
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, ToolCall] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    def add(self, model: str, provider: str | None, chunk_id: str, usage: Usage | None) -> None:
        self.model, self.provider, self.id = model or self.model, provider or self.provider, chunk_id or self.id
        self.usage = usage or self.usage

    def add_choice(
        self, text: str | None, reasoning: str | None, calls: list[ToolCall] | None, finish: str | None
    ) -> None:
        if text:
            self.text.append(text)
        if reasoning:
            self.reasoning.append(reasoning)
        for fragment in calls or []:
            key = fragment.index if fragment.index is not None else len(self.calls)
            call = self.calls.setdefault(key, ToolCall(id=fragment.id, index=key, function=FunctionCall()))
            call.id = call.id or fragment.id
            call.function.name = call.function.name or fragment.function.name
            call.function.arguments += fragment.function.arguments
        self.finish_reason = finish or self.finish_reason

    def response(self) -> ChatResponse:
        message = ChatMessage(
            content="".join(self.text) if self.text or not self.calls else None,
            reasoning="".join(self.reasoning) or None,
            tool_calls=[self.calls[k] for k in sorted(self.calls)] or None,
        )
        choice = ChatChoice(finish_reason=self.finish_reason, message=message)
        return ChatResponse(id=self.id, model=self.model, provider=self.provider, choices=[choice], usage=self.usage)


def check_json(content: str | None, response_format: dict[str, Any] | None, model: str) -> None:
    """Raise `SchemaValidationError` when JSON was asked for and the answer is not (valid) JSON."""
    kind = (response_format or {}).get("type")
    if kind not in ("json_object", "json_schema"):
        return
    try:
        value = json.loads(content or "")
    except json.JSONDecodeError as exc:
        raise SchemaValidationError(f"{model} did not answer with JSON ({exc.msg})") from None
    except RecursionError:
        raise SchemaValidationError(f"{model} answered JSON nested too deeply to read") from None
    schema = (response_format or {}).get("json_schema", {}).get("schema") if kind == "json_schema" else None
    if kind == "json_object" and not isinstance(value, dict):
        raise SchemaValidationError(f"{model} answered JSON that is not an object")
    if schema:
        import jsonschema  # lazily: most requests carry no schema

        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as exc:
            raise SchemaValidationError(f"{model} answered JSON that fails the schema: {exc.message}") from None
        except jsonschema.SchemaError as exc:
            raise SchemaValidationError(f"the requested json_schema is itself invalid: {exc.message}") from None
        except RecursionError:
            raise SchemaValidationError(f"{model}'s answer is nested too deeply to check against the schema") from None
