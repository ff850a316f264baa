"""One upstream attempt: build the wire request, call (streamed or not), assemble and check the answer."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from modelyard.errors import SchemaValidationError
from modelyard.openrouter.schemas import (
    ChatChoice,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    Delta,
    FunctionCall,
    ToolCall,
    Usage,
)
from modelyard.routing.events import EventSink, Restart, StreamEvent, TextDelta
from modelyard.routing.request import RouteRequest

if TYPE_CHECKING:
    from modelyard.openrouter.client import GenerationHook, OpenRouterClient
    from modelyard.routing.catalog import CatalogEntry

__all__ = ["EventSink", "Restart", "StreamEvent", "TextDelta", "check_json", "stream_model", "wire_request"]


def wire_request(
    request: RouteRequest, entry: CatalogEntry, max_tokens: int, *, max_price: Mapping[str, str] | None = None
) -> ChatRequest:
    """The OpenRouter body for one attempt on `entry` (fallbacks are ours, so no `models` list).

    The cap goes in the parameter the model lists (`ModelInfo.output_cap_parameter`): one it does not
    list is dropped upstream, and the answer is then not bounded by the cap the budget reserved for.
    `max_price` (`price_cap.PriceCap.max_price`) is sent as `provider.max_price`, so that no endpoint
    dearer than the prices of that reservation serves it. (`RouteRequest.provider` is a filter on model
    authors for selection, not OpenRouter's provider object: there is nothing of the request's to merge.)
    """
    completion_cap = entry.info.output_cap_parameter == "max_completion_tokens"
    return ChatRequest(
        model=entry.wire_id,
        messages=request.messages,
        max_tokens=None if completion_cap else max_tokens,
        max_completion_tokens=max_tokens if completion_cap else None,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop,
        seed=request.seed,
        tools=request.tools,
        tool_choice=request.tool_choice,
        response_format=request.response_format,
        reasoning=request.reasoning,
        provider=None if max_price is None else {"max_price": dict(max_price)},
    )


async def stream_model(
    client: OpenRouterClient, body: ChatRequest, on_generation: GenerationHook | None = None
) -> AsyncGenerator[TextDelta | ChatResponse]:
    """Stream one attempt: its text as it arrives, then the whole answer, assembled."""
    assembler = _Assembler()
    async with aclosing(client.stream_chat(body, on_generation=on_generation)) as chunks:
        async for chunk in chunks:
            assembler.add(chunk.model, chunk.provider, chunk.id, chunk.created, chunk.usage)
            for choice in chunk.choices:
                assembler.add_choice(choice.delta, choice.finish_reason, choice.native_finish_reason)
            if text := chunk.text:
                yield TextDelta(body.model or "", text)
    yield assembler.response()


_JOINED_DETAIL_FIELDS = frozenset({"text", "summary"})
"""The `reasoning_details` fields OpenRouter streams in pieces; the others arrive whole, once."""


class _Assembler:
    """Joins stream chunks into one `ChatResponse`, as the non-streamed answer would have been.

    Tool-call fragments are joined by `index`. `reasoning_details` fragments are joined by `type` and
    `index`, as OpenRouter streams one block: its `text` (or `summary`) in pieces, the rest (`format`,
    `signature`, `id`, encrypted `data`) once, the signature often in a last text-less fragment. A
    fragment whose other fields contradict the block so far (another `id`, another `data`) starts a
    new block; a fragment without an `index` is a block of its own.
    """

    def __init__(self) -> None:
        self.model, self.id = "", ""
        self.provider: str | None = None
        self.created: int | None = None
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, ToolCall] = {}
        self.details: list[dict[str, Any]] = []
        self.open_details: dict[tuple[Any, int], dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.native_finish_reason: str | None = None
        self.usage: Usage | None = None

    def add(self, model: str, provider: str | None, chunk_id: str, created: int | None, usage: Usage | None) -> None:
        self.model, self.provider, self.id = model or self.model, provider or self.provider, chunk_id or self.id
        self.created = created or self.created
        self.usage = usage or self.usage

    def add_choice(self, delta: Delta, finish: str | None, native_finish: str | None) -> None:
        if text := delta.content:
            self.text.append(text)
        if reasoning := delta.reasoning:
            self.reasoning.append(reasoning)
        if details := delta.reasoning_details:
            self._add_details(details)
        for fragment in delta.tool_calls or []:
            key = fragment.index if fragment.index is not None else len(self.calls)
            call = self.calls.setdefault(key, ToolCall(id=fragment.id, index=key, function=FunctionCall()))
            call.id = call.id or fragment.id
            call.function.name = call.function.name or fragment.function.name
            call.function.arguments += fragment.function.arguments
        self.finish_reason = finish or self.finish_reason
        self.native_finish_reason = native_finish or self.native_finish_reason

    def _add_details(self, fragments: list[dict[str, Any]]) -> None:
        for fragment in fragments:
            index = fragment.get("index")
            key = (fragment.get("type"), index) if isinstance(index, int) else None
            block = self.open_details.get(key) if key is not None else None
            if block is None or not _continues(block, fragment):
                block = dict(fragment)
                self.details.append(block)
                if key is not None:
                    self.open_details[key] = block
                continue
            for name, value in fragment.items():
                if value is None:
                    continue
                so_far = block.get(name)
                if name in _JOINED_DETAIL_FIELDS and isinstance(value, str) and isinstance(so_far, str):
                    block[name] = so_far + value
                elif so_far is None:
                    block[name] = value

    def response(self) -> ChatResponse:
        message = ChatMessage(
            content="".join(self.text) if self.text or not self.calls else None,
            reasoning="".join(self.reasoning) or None,
            tool_calls=[self.calls[k] for k in sorted(self.calls)] or None,
            reasoning_details=self.details or None,
        )
        choice = ChatChoice(
            finish_reason=self.finish_reason, native_finish_reason=self.native_finish_reason, message=message
        )
        return ChatResponse(
            id=self.id,
            created=self.created,
            model=self.model,
            provider=self.provider,
            choices=[choice],
            usage=self.usage,
        )


def _continues(block: dict[str, Any], fragment: dict[str, Any]) -> bool:
    """True when `fragment` is another piece of `block`: no field it carries whole says otherwise."""
    for name, value in fragment.items():
        if name in _JOINED_DETAIL_FIELDS or value is None:
            continue
        so_far = block.get(name)
        if so_far is not None and so_far != value:
            return False
    return True


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
        import referencing.exceptions

        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as exc:
            raise SchemaValidationError(f"{model} answered JSON that fails the schema: {exc.message}") from None
        except jsonschema.SchemaError as exc:
            raise SchemaValidationError(f"the requested json_schema is itself invalid: {exc.message}") from None
        except referencing.exceptions.Unresolvable as exc:  # a $ref to nothing, met only where the answer goes
            raise SchemaValidationError(f"the requested json_schema has a $ref to nothing: {exc}") from None
        except RecursionError:
            raise SchemaValidationError(f"{model}'s answer is nested too deeply to check against the schema") from None
