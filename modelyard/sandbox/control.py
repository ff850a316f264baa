"""The sandbox control API, under `/_sandbox/` (no auth; answered for loopback clients only).

- `GET /_sandbox/state` -> `{"models", "api_key_label", "config", "key", "faults", "requests", "billed"}`
- `POST /_sandbox/faults` with `{"model": "*" or an id, "kind", "count": N or null, "status",
  "retry_after", "latency_ms", "after_chunks", "message", "platform"}` -> 201 `{"fault": {...}}`
- `DELETE /_sandbox/faults` (`?model=ID` clears only that model's) -> `{"cleared": N}`
- `GET /_sandbox/ledger` -> `{"entries": [...], "totals": {...}}`
- `POST /_sandbox/key` with `{"limit": "1.00" or null}` -> `{"key": {label, limit, limit_remaining, usage}}`
- `POST /_sandbox/stats` with `{"model", "latency_ms": p50 or {p50, p75, p90, p99}, "throughput": p50 or
  {...}}` -> the model's `latency_last_30m` and `throughput_last_30m` (a bare p50 derives the others)
- `POST /_sandbox/config` with any of `{"cache_threshold", "stream_chunk_delay_ms", "default_latency_ms",
  "keepalive_blocks", "headers_first", "total_credits", "credits_need_management_key", "default_model",
  "serve_dearest"}` -> `{"config": {...}}` (`serve_dearest: true` serves each answer from the dearest endpoint
  its `provider.max_price` allows: see `modelyard.sandbox.endpoints`)
- `POST /_sandbox/reset` -> `{"reset": true}` (faults, ledger, key limit, stats, cache memory, config)

Money is always a decimal string here. Errors are 400 with `{"error": {"message", "code"}}`.

Fault kinds: `rate_limit`, `server_error`, `bad_gateway`, `unavailable`, `timeout`, `moderation`,
`payload_too_large`, `hang`, `reset`, `error_in_200`, `mid_stream_error`, `truncated_stream`,
`malformed_json`, `latency` (see `modelyard.sandbox.faults`). `count` is how many matching requests a
fault hits before it vanishes; null (or absent) keeps it until cleared. Example: the next 2 requests
to `openai/gpt-4o-mini` get a 429 with `Retry-After: 1`:

    curl -X POST localhost:PORT/_sandbox/faults \\
         -d '{"model": "openai/gpt-4o-mini", "kind": "rate_limit", "count": 2, "retry_after": 1}'

Ledger entries: `time`, `key_label`, `requested_model`, `served_model`, `stream`, `prompt_tokens`,
`completion_tokens`, `cached_tokens`, `cache_write_tokens`, `reasoning_tokens`, `cost` (decimal
string), `status`, `fault`, `failed_attempts`, `client_disconnected`, `generation_id`,
`finish_reason`. Totals: `requests`, `billed` (decimal string), `served` (answered without a fault)
and their `prompt_tokens`, `completion_tokens`, `cached_tokens`, `reasoning_tokens`; `faults`,
`client_disconnected`.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from modelyard.sandbox.http import Request, Response
from modelyard.sandbox.state import SandboxState
from modelyard.sandbox.wire import dumps, error_response

__all__ = ["handle_control", "is_loopback", "ledger_view", "state_view"]

_LOOPBACK = ("127.", "::1", "::ffff:127.", "localhost")


def is_loopback(host: str) -> bool:
    """True for a loopback client address."""
    return host.startswith(_LOOPBACK)


def _ok(data: Any, status: int = 200) -> Response:
    return Response(status, dumps(data).encode("utf-8"))


def _body(request: Request) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    data = json.loads(request.body)
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def key_view(state: SandboxState) -> dict[str, Any]:
    """The key's label, limit and spend (decimal strings)."""
    remaining = state.limit_remaining
    return {
        "label": state.key_label,
        "limit": None if state.key_limit is None else str(state.key_limit),
        "limit_remaining": None if remaining is None else str(remaining),
        "usage": str(state.billed_total()),
    }


def state_view(state: SandboxState) -> dict[str, Any]:
    """`GET /_sandbox/state`."""
    return {
        "models": len(state.catalog),
        "api_key_label": state.key_label,
        "config": state.config.to_json(),
        "key": key_view(state),
        "faults": [fault.to_json() for fault in state.faults],
        "requests": state.request_count,
        "billed": str(state.billed_total()),
    }


def ledger_view(state: SandboxState) -> dict[str, Any]:
    """`GET /_sandbox/ledger`: every request kept, with totals (money as decimal strings)."""
    entries = state.ledger
    served = [e for e in entries if e.status == 200 and e.fault is None]
    totals = {
        "requests": state.request_count,
        "billed": str(state.billed_total()),
        "served": len(served),
        "prompt_tokens": sum(e.prompt_tokens for e in served),
        "completion_tokens": sum(e.completion_tokens for e in served),
        "cached_tokens": sum(e.cached_tokens for e in served),
        "reasoning_tokens": sum(e.reasoning_tokens for e in served),
        "faults": sum(1 for e in entries if e.fault),
        "client_disconnected": sum(1 for e in entries if e.client_disconnected),
    }
    return {"entries": [entry.to_json() for entry in entries], "totals": totals}


def _add_fault(state: SandboxState, body: dict[str, Any]) -> Response:
    body.setdefault("model", "*")
    fault = state.faults.add(**body)
    return _ok({"fault": fault.to_json()}, 201)


def _set_key(state: SandboxState, body: dict[str, Any]) -> Response:
    limit = body.get("limit")
    state.set_key_limit(None if limit is None else Decimal(str(limit)))
    return _ok({"key": key_view(state)})


def _set_stats(state: SandboxState, body: dict[str, Any]) -> Response:
    model = body.get("model")
    if not isinstance(model, str) or state.catalog.get(model) is None:
        raise ValueError(f"unknown model {model!r}")
    state.set_stats(model, latency_ms=body.get("latency_ms"), throughput=body.get("throughput"))
    found = state.catalog.get(model)
    assert found is not None
    latency, throughput = state.stats_for(found)
    return _ok({"model": found.id, "latency_last_30m": latency, "throughput_last_30m": throughput})


def _route(state: SandboxState, request: Request) -> Response:
    method, path = request.method, request.path
    if method == "GET" and path == "/_sandbox/state":
        return _ok(state_view(state))
    if method == "GET" and path == "/_sandbox/ledger":
        return _ok(ledger_view(state))
    if method == "DELETE" and path == "/_sandbox/faults":
        return _ok({"cleared": state.faults.clear(request.query.get("model"))})
    if method != "POST":
        return error_response(404, f"No control endpoint {method} {path}", user_id=False)
    body = _body(request)
    if path == "/_sandbox/faults":
        return _add_fault(state, body)
    if path == "/_sandbox/key":
        return _set_key(state, body)
    if path == "/_sandbox/stats":
        return _set_stats(state, body)
    if path == "/_sandbox/config":
        state.config.update(body)
        return _ok({"config": state.config.to_json()})
    if path == "/_sandbox/reset":
        state.reset()
        return _ok({"reset": True})
    return error_response(404, f"No control endpoint POST {path}", user_id=False)


def handle_control(state: SandboxState, request: Request) -> Response:
    """Serve a `/_sandbox/` request (403 for non-loopback clients, 400 for bad bodies)."""
    if request.client_host and not is_loopback(request.client_host):
        return error_response(403, "The sandbox control API only answers loopback clients", user_id=False)
    try:
        return _route(state, request)
    except (ValueError, TypeError, InvalidOperation) as exc:
        return error_response(400, str(exc) or type(exc).__name__, user_id=False)
