"""Answering an accepted chat request: usage and cost, billing, the generation record, the bytes."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import anyio

from modelyard.sandbox.catalog import CatalogModel
from modelyard.sandbox.fault_replies import fault_reply
from modelyard.sandbox.faults import Fault
from modelyard.sandbox.http import Reply, Response, StreamResponse
from modelyard.sandbox.pricing import TokenCounts, compute_cost, effective_prices, to_wire
from modelyard.sandbox.replies import Reply as Answer
from modelyard.sandbox.replies import plan_reply
from modelyard.sandbox.state import LedgerEntry, SandboxState
from modelyard.sandbox.tokens import PromptCount, prefix_digests
from modelyard.sandbox.wire import (
    DONE,
    KEEPALIVE,
    PROCESSING,
    Generation,
    WireUsage,
    completion_body,
    finish_chunks,
    generation_id,
    reply_chunks,
)

__all__ = ["Turn", "answer"]


@dataclass(slots=True)
class Turn:
    """One chat request on its way through the sandbox."""

    state: SandboxState
    body: Mapping[str, Any]
    messages: list[Mapping[str, Any]]
    stream: bool
    max_tokens: int | None
    prompt: PromptCount
    entry: LedgerEntry
    headers: Mapping[str, str]
    started: float = field(default_factory=time.monotonic)
    router: str | None = None
    max_price: Mapping[str, Decimal] | None = None
    """The request's `provider.max_price` (`endpoints.read_max_price`); None: it sets none."""
    _digests: list[bytes] | None = None

    @property
    def digests(self) -> list[bytes]:
        """The prompt's prefix digests (computed once, only when a cache needs them)."""
        if self._digests is None:
            self._digests = prefix_digests(self.messages, self.body.get("tools"))
        return self._digests


def _utc_hhmm() -> int:
    now = datetime.now(UTC)
    return now.hour * 100 + now.minute


def _cache_control(turn: Turn) -> tuple[int, bool]:
    """(messages covered by a cache breakpoint, whether any asks for a 1-hour TTL)."""
    top = turn.body.get("cache_control")
    covered = len(turn.messages) if isinstance(top, Mapping) else 0
    ttls = [top.get("ttl")] if isinstance(top, Mapping) else []
    for index, message in enumerate(turn.messages):
        content = message.get("content")
        marks = (
            [part["cache_control"] for part in content if isinstance(part, Mapping) and "cache_control" in part]
            if isinstance(content, list)
            else []
        )
        if "cache_control" in message:
            marks.append(message["cache_control"])
        if marks:
            covered = max(covered, index + 1)
            ttls += [mark.get("ttl") for mark in marks if isinstance(mark, Mapping)]
    return covered, "1h" in ttls


def _cache_tokens(turn: Turn, model: CatalogModel) -> tuple[int, int, bool]:
    """(cached tokens, cache-write tokens, 1-hour TTL) for this request on `model`."""
    pricing = model.pricing
    threshold = turn.state.config.cache_threshold
    cached = 0
    if "input_cache_read" in pricing:
        matched = turn.state.prefix_cache.longest(turn.state.api_key, model.id, turn.digests)
        cached = turn.prompt.prefix(matched) if matched else 0
        cached = cached if cached >= threshold else 0
    written, ttl_1h = 0, False
    if "input_cache_write" in pricing:
        covered, ttl_1h = _cache_control(turn)
        tokens = turn.prompt.prefix(covered) if covered else 0
        written = tokens - cached if tokens >= threshold and tokens > cached else 0
    return cached, written, ttl_1h


def usage_for(turn: Turn, model: CatalogModel, reply: Answer) -> WireUsage:
    """Token counts and cost of `reply`, with money rounded to the wire."""
    cached, written, ttl_1h = _cache_tokens(turn, model)
    counts = TokenCounts(
        prompt=turn.prompt.total,
        completion=reply.completion_tokens,
        cached=cached,
        cache_write=written,
        reasoning=reply.reasoning_tokens,
        images=turn.prompt.images,
        cache_ttl_1h=ttl_1h,
    )
    cost = compute_cost(model.pricing, counts, utc_hhmm=_utc_hhmm())
    return WireUsage(
        prompt_tokens=counts.prompt,
        completion_tokens=counts.completion,
        cached_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=counts.reasoning,
        cost=to_wire(cost.total),
        prompt_cost=to_wire(cost.prompt),
        completion_cost=to_wire(cost.completion),
    )


def _fill_entry(entry: LedgerEntry, usage: WireUsage) -> None:
    entry.prompt_tokens = usage.prompt_tokens
    entry.completion_tokens = usage.completion_tokens
    entry.cached_tokens = usage.cached_tokens
    entry.cache_write_tokens = usage.cache_write_tokens
    entry.reasoning_tokens = usage.reasoning_tokens


def settle(turn: Turn, generation: Generation, reply: Answer, usage: WireUsage) -> None:
    """Bill a served answer and keep its generation record and its prompt for the cache."""
    state, entry, model = turn.state, turn.entry, generation.model
    _fill_entry(entry, usage)
    entry.finish_reason = reply.finish_reason
    state.charge(entry, usage.cost)
    state.prefix_cache.remember(state.api_key, model.id, turn.digests)
    state.store_generation(generation.id, _generation_record(turn, generation, reply, usage))


def _cache_discount(model: CatalogModel, usage: WireUsage) -> float | None:
    if not usage.cached_tokens and not usage.cache_write_tokens:
        return None
    prices = effective_prices(model.pricing, usage.prompt_tokens)
    prompt = prices.get("prompt", 0)
    saved = usage.cached_tokens * (prompt - prices.get("input_cache_read", prompt))
    extra = usage.cache_write_tokens * (prices.get("input_cache_write", prompt) - prompt)
    return float(saved - extra)


def _generation_record(turn: Turn, generation: Generation, reply: Answer, usage: WireUsage) -> dict[str, Any]:
    model, elapsed_ms = generation.model, round((time.monotonic() - turn.started) * 1000)
    native = generation.native_finish(reply.finish_reason)
    created_at = datetime.fromtimestamp(generation.created, UTC).isoformat()
    provider = {
        "status": 200,
        "provider_name": model.provider,
        "model_permaslug": model.slug,
        "latency": elapsed_ms,
        "is_byok": False,
    }
    return {
        "id": generation.id,
        "upstream_id": "chatcmpl-" + generation.id[-20:],
        "created_at": created_at,
        "model": model.slug,
        "api_type": "completions",
        "app_id": None,
        "external_user": turn.body.get("user"),
        "http_referer": turn.headers.get("http-referer"),
        "origin": "",
        "user_agent": turn.headers.get("user-agent"),
        "router": turn.router,
        "preset_id": None,
        "session_id": turn.body.get("session_id"),
        "request_id": None,
        "workspace_id": None,
        "data_region": "global",
        "provider_name": model.provider,
        "is_byok": False,
        "streamed": turn.stream,
        "cancelled": turn.entry.client_disconnected,
        "finish_reason": reply.finish_reason,
        "native_finish_reason": native,
        "latency": elapsed_ms,
        "generation_time": elapsed_ms,
        "moderation_latency": None,
        "tokens_prompt": usage.prompt_tokens,
        "tokens_completion": usage.completion_tokens,
        "native_tokens_prompt": usage.prompt_tokens,
        "native_tokens_completion": usage.completion_tokens,
        "native_tokens_completion_images": 0,
        "native_tokens_reasoning": usage.reasoning_tokens,
        "native_tokens_cached": usage.cached_tokens,
        "num_media_prompt": turn.prompt.images,
        "num_input_audio_prompt": 0,
        "num_media_completion": 0,
        "num_search_results": 0,
        "num_fetches": 0,
        "web_search_engine": None,
        "total_cost": float(usage.cost),
        "usage": float(usage.cost),
        "upstream_inference_cost": float(usage.cost),
        "cache_discount": _cache_discount(model, usage),
        "service_tier": "default",
        "provider_responses": [provider],
    }


async def _success_stream(
    turn: Turn, generation: Generation, reply: Answer, usage: WireUsage, delay_s: float
) -> AsyncGenerator[bytes, None]:
    pause_s = turn.state.config.stream_chunk_delay_ms / 1000
    finish, final = finish_chunks(generation, reply, usage)
    if not pause_s and not delay_s:
        # Nothing to wait for: the same events in one write, which is much cheaper.
        settle(turn, generation, reply, usage)
        yield b"".join((PROCESSING, *reply_chunks(generation, reply), finish, final, DONE))
        return
    yield PROCESSING
    if delay_s:
        await anyio.sleep(delay_s)
    for index, line in enumerate(reply_chunks(generation, reply)):
        if index and pause_s:
            await anyio.sleep(pause_s)
        yield line
    yield finish
    settle(turn, generation, reply, usage)
    yield final
    yield DONE


async def _answer_later(
    turn: Turn, generation: Generation, reply: Answer, usage: WireUsage, delay_s: float
) -> AsyncGenerator[bytes, None]:
    """A non-streamed answer sent as OpenRouter sends one: a keep-alive block at once, the body when it
    is ready. Billed then, even if the client has left (nothing watches for it: no chunk is written
    between the two)."""
    yield KEEPALIVE
    await anyio.sleep(delay_s)
    turn.entry.status = 200  # answered (until then it counts as pending, as an answer not begun does)
    settle(turn, generation, reply, usage)
    yield completion_body(generation, reply, usage, keepalives=max(0, turn.state.config.keepalive_blocks - 1))


def _mark_disconnected(entry: LedgerEntry) -> None:
    entry.client_disconnected = True


def _disconnected(turn: Turn, generation: Generation, reply: Answer, usage: WireUsage) -> None:
    """The client left: an answer not billed by then is cancelled, and its record says so (billed 0)."""
    _mark_disconnected(turn.entry)
    if turn.state.generations.get(generation.id) is None:
        turn.state.store_generation(generation.id, _unbilled_record(turn, generation, reply, usage))


def _unbilled_record(turn: Turn, generation: Generation, reply: Answer, usage: WireUsage) -> dict[str, Any]:
    """The generation record of an answer that began but was broken or cancelled: billed 0, nothing completed."""
    record = _generation_record(turn, generation, reply, usage)
    record.update(
        total_cost=0.0,
        usage=0.0,
        upstream_inference_cost=0.0,
        cache_discount=None,
        finish_reason=None,
        native_finish_reason=None,
        tokens_completion=0,
        native_tokens_completion=0,
        native_tokens_reasoning=0,
    )
    return record


async def answer(turn: Turn, model: CatalogModel, fault: Fault | None) -> Reply:
    """Answer with `model`, or break the answer as `fault` says (billed 0)."""
    state, entry = turn.state, turn.entry
    delay_s = (state.config.default_latency_ms + state.faults.take_latency_ms(model)) / 1000
    now = int(state.now())
    generation = Generation(generation_id(now), now, model)
    reply = plan_reply(turn.body, turn.messages, model, turn.max_tokens)
    usage = usage_for(turn, model, reply)
    entry.generation_id = generation.id
    headers = [("X-Generation-Id", generation.id)]
    if not turn.stream and delay_s and fault is None and state.config.headers_first:
        later = _answer_later(turn, generation, reply, usage, delay_s)
        gone = partial(_disconnected, turn, generation, reply, usage)
        return StreamResponse(200, later, "application/json", headers, gone, watch=False)
    if not turn.stream and delay_s:
        await anyio.sleep(delay_s)
        delay_s = 0.0
    if fault is not None:
        entry.fault = fault.kind
        entry.prompt_tokens = turn.prompt.total
        broken, entry.status = fault_reply(
            fault,
            generation=generation,
            answer=reply,
            usage=usage,
            stream=turn.stream,
            pause_s=state.config.stream_chunk_delay_ms / 1000,
            delay_s=delay_s,
            on_disconnect=lambda: _mark_disconnected(entry),
        )
        if entry.status == 200:  # the answer began: OpenRouter keeps a record of it, billed 0 here
            state.store_generation(generation.id, _unbilled_record(turn, generation, reply, usage))
        return broken
    entry.status = 200
    if turn.stream:
        chunks = _success_stream(turn, generation, reply, usage, delay_s)
        at_once = not delay_s and not state.config.stream_chunk_delay_ms  # see _success_stream
        gone = partial(_disconnected, turn, generation, reply, usage)
        return StreamResponse(200, chunks, headers=headers, on_disconnect=gone, watch=not at_once)
    settle(turn, generation, reply, usage)
    body = completion_body(generation, reply, usage, keepalives=state.config.keepalive_blocks)
    return Response(200, body, headers=headers)
