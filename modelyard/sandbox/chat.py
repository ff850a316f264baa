"""`POST /chat/completions`: authenticate, read the body, resolve the models, pick the endpoint its
`provider.max_price` allows, pre-check credit, apply faults (falling back along `models` on status
faults), then answer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import anyio

from modelyard.sandbox.answers import Turn, answer
from modelyard.sandbox.catalog import CatalogModel
from modelyard.sandbox.endpoints import no_endpoint_response, read_max_price, serving
from modelyard.sandbox.fault_replies import status_response
from modelyard.sandbox.faults import FALLBACK_KINDS, STATUS_KINDS
from modelyard.sandbox.http import Reply, Request, Response
from modelyard.sandbox.pricing import effective_prices
from modelyard.sandbox.state import LedgerEntry, SandboxState
from modelyard.sandbox.tokens import count_prompt
from modelyard.sandbox.wire import error_response

__all__ = ["authenticate", "handle_chat"]

_CREDIT_MESSAGE = (
    "This request requires more credits, or fewer max_tokens. You requested up to {wanted} tokens, but can "
    "only afford {afford}. To increase, visit https://openrouter.ai/settings/keys and create a key with a "
    "higher monthly limit"
)
_CONTEXT_MESSAGE = (
    "This endpoint's maximum context length is {limit} tokens. However, you requested about {total} tokens "
    "({prompt} of text input, {output} in the output). Please reduce the length of either one, or use the "
    '"middle-out" transform to compress your prompt automatically.'
)


def authenticate(state: SandboxState, headers: Mapping[str, str]) -> Response | None:
    """None when the bearer key is the sandbox's key, else the 401 OpenRouter sends."""
    scheme, _, key = headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return error_response(401, "No auth credentials found", user_id=False)
    if key != state.api_key:
        return error_response(401, "User not found.", user_id=False)
    return None


def _fail(entry: LedgerEntry, response: Response) -> Response:
    entry.status = response.status
    return response


async def handle_chat(state: SandboxState, request: Request) -> Reply:
    """Serve one chat completion request; every request lands in the ledger."""
    entry = state.record(LedgerEntry(time=state.now()))
    denied = authenticate(state, request.headers)
    if denied is not None:
        return _fail(entry, denied)
    entry.key_label = state.key_label
    turn = _read(state, request, entry)
    if isinstance(turn, Response):
        return _fail(entry, turn)
    models = _resolve(turn)
    if isinstance(models, Response):
        return _fail(entry, models)
    return await _attempt(turn, models)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _read(state: SandboxState, request: Request, entry: LedgerEntry) -> Turn | Response:
    try:
        body = json.loads(request.body)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return error_response(400, "Invalid JSON in request body")
    messages = body.get("messages")
    if messages is None and isinstance(body.get("prompt"), str):
        messages = [{"role": "user", "content": body["prompt"]}]
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return error_response(400, 'Input required: specify "prompt" or "messages"')
    max_tokens = body.get("max_completion_tokens")
    max_tokens = body.get("max_tokens") if max_tokens is None else max_tokens
    if max_tokens is not None and not _positive_int(max_tokens):
        return error_response(400, "max_tokens must be a positive integer")
    tools = body.get("tools") if isinstance(body.get("tools"), list) else None
    try:
        max_price = read_max_price(body.get("provider"))
    except ValueError as exc:
        return error_response(400, str(exc))
    entry.stream = bool(body.get("stream"))
    entry.max_tokens = max_tokens
    return Turn(
        state=state,
        body=body,
        messages=messages,
        stream=entry.stream,
        max_tokens=max_tokens,
        prompt=count_prompt(messages, tools),
        entry=entry,
        headers=request.headers,
        max_price=max_price,
    )


def _resolve(turn: Turn) -> list[CatalogModel] | Response:
    names: list[str] = []
    for name in [turn.body.get("model"), *(turn.body.get("models") or [])]:
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    names = names or [turn.state.config.default_model]
    turn.entry.requested_model = names[0]
    models = []
    for name in names:
        model = turn.state.catalog.get(name)
        if model is None:
            return error_response(400, f"{name} is not a valid model ID")
        models.append(model)
    return models


def _fits(turn: Turn, model: CatalogModel) -> bool:
    limit = model.context_length
    return not limit or turn.prompt.total + (turn.max_tokens or 0) <= limit


def _pick_for_router(turn: Turn, router: CatalogModel) -> CatalogModel:
    """`openrouter/auto` (and `openrouter/free`): a deterministic pick among fitting models."""
    body = turn.body
    needs = [name for name in ("tools", "response_format") if body.get(name)]
    free = router.id == "openrouter/free"
    models = [m for m in turn.state.catalog.models if not m.is_router]
    eligible = [
        m
        for m in models
        if m.is_free == free
        and m.supports(*needs)
        and (not turn.prompt.images or "image" in m.input_modalities)
        and _fits(turn, m)
    ]
    pool = eligible or models or [router]
    return pool[int.from_bytes(turn.digests[-1][:4], "big") % len(pool)]


def _context_error(turn: Turn, model: CatalogModel) -> Response | None:
    if _fits(turn, model):
        return None
    output = turn.max_tokens or 0
    message = _CONTEXT_MESSAGE.format(
        limit=model.context_length, total=turn.prompt.total + output, prompt=turn.prompt.total, output=output
    )
    return error_response(400, message)


def _credit_error(turn: Turn, model: CatalogModel) -> Response | None:
    """The 402 pre-check: worst-case completion cost against the key's remaining limit."""
    remaining = turn.state.limit_remaining
    if remaining is None:
        return None
    wanted = turn.max_tokens or model.max_completion_tokens or model.context_length or 0
    price = effective_prices(model.pricing, turn.prompt.total).get("completion", Decimal(0))
    if price <= 0 or wanted * price <= remaining:
        return None
    afford = int(remaining / price) if remaining > 0 else 0
    message = _CREDIT_MESSAGE.format(wanted=wanted, afford=afford)
    return error_response(402, message, {"provider_name": None})


async def _attempt(turn: Turn, models: list[CatalogModel]) -> Reply:
    state, entry = turn.state, turn.entry
    failure: Response | None = None
    served = models[0]
    for model in models:
        served = _pick_for_router(turn, model) if model.is_router else model
        entry.served_model = served.id
        problem = _context_error(turn, served)
        if problem is not None:
            failure, entry.fault = problem, None
            continue
        endpoint = serving(served, turn.max_price, dearest=state.config.serve_dearest)
        if endpoint is None:  # as for any failure before an answer, OpenRouter moves along `models`
            failure, entry.fault = no_endpoint_response(served), None
            continue
        served = endpoint
        refused = _credit_error(turn, served)
        if refused is not None:
            return _fail(entry, refused)
        fault = state.faults.take(served)
        if fault is None or fault.kind not in STATUS_KINDS:
            entry.fault = None
            turn.router = model.id if model.is_router else None
            return await answer(turn, served, fault)
        failure = status_response(fault, served, turn.messages, state.now())
        entry.fault, entry.prompt_tokens = fault.kind, turn.prompt.total
        entry.failed_attempts.append({"model": served.id, "fault": fault.kind, "status": failure.status})
        if fault.kind not in FALLBACK_KINDS:
            break
    delay_ms = state.config.default_latency_ms + state.faults.take_latency_ms(served)
    if delay_ms and entry.fault is not None:
        await anyio.sleep(delay_ms / 1000)
    assert failure is not None
    return _fail(entry, failure)
