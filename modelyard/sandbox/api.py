"""The read-only part of `/api/v1`: models, endpoints, key, credits and generations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelyard.sandbox.catalog import CatalogModel
from modelyard.sandbox.chat import authenticate
from modelyard.sandbox.endpoints import Endpoint, endpoints_of
from modelyard.sandbox.http import Request, Response
from modelyard.sandbox.state import SandboxState
from modelyard.sandbox.wire import USER_ID, dumps, dumps_exact, error_response

__all__ = ["handle_get"]

_DEFAULT_LIMIT = 500


def _json(data: Any) -> Response:
    return Response(200, dumps_exact(data).encode("utf-8"))


def _csv(query: Mapping[str, str], name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    raw = query.get(name)
    if raw is None:
        return default
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _int(query: Mapping[str, str], name: str, default: int) -> int | None:
    try:
        return int(query[name]) if name in query else default
    except ValueError:
        return None


def _selected(state: SandboxState, query: Mapping[str, str]) -> list[CatalogModel]:
    return state.catalog.select(
        supported_parameters=_csv(query, "supported_parameters"),
        output_modalities=_csv(query, "output_modalities", ("text",)),
        input_modalities=_csv(query, "input_modalities"),
    )


def list_models(state: SandboxState, request: Request) -> Response:
    """`GET /models` with `supported_parameters`, `output_modalities`, `input_modalities`, `offset`/`limit`."""
    query = request.query
    models = _selected(state, query)
    offset, limit = _int(query, "offset", 0), _int(query, "limit", _DEFAULT_LIMIT)
    if offset is None or limit is None or offset < 0 or not 1 <= limit <= 1000:
        return error_response(400, "Invalid pagination parameters: offset >= 0, 1 <= limit <= 1000")
    paginated = "offset" in query or "limit" in query
    page = models[offset : offset + limit] if paginated else models
    following = offset + limit if paginated and offset + limit < len(models) else None
    next_link = f"/api/v1/models?offset={following}&limit={limit}" if following is not None else None
    rows = ",".join(model.text for model in page)
    text = f'{{"data":[{rows}],"total_count":{len(models)},"links":{{"next":{dumps(next_link)}}}}}'
    return Response(200, text.encode("utf-8"))


def _endpoint(state: SandboxState, model: CatalogModel, endpoint: Endpoint, authenticated: bool) -> dict[str, Any]:
    latency, throughput = state.stats_for(model) if authenticated else (None, None)
    open_weights = bool(model.row.get("hugging_face_id"))
    return {
        "name": f"{endpoint.provider} | {model.slug}",
        "model_id": model.slug,
        "model_name": model.name,
        "context_length": model.context_length,
        "pricing": dict(endpoint.pricing),
        "provider_name": endpoint.provider,
        "tag": endpoint.tag,
        "quantization": "fp8" if open_weights else None,
        "max_completion_tokens": model.max_completion_tokens,
        "max_prompt_tokens": None,
        "supported_parameters": list(model.row.get("supported_parameters") or []),
        "status": 0,
        "uptime_last_30m": 100,
        "uptime_last_5m": 100,
        "uptime_last_1d": 100,
        "supports_implicit_caching": "input_cache_read" in model.pricing,
        "latency_last_30m": latency,
        "throughput_last_30m": throughput,
    }


def model_endpoints(state: SandboxState, request: Request, reference: str) -> Response:
    """`GET /models/{author}/{slug}/endpoints`, the one at the listed prices first (`endpoints.endpoints_of`);
    latency/throughput are null without a valid key."""
    model = state.catalog.get(reference)
    if model is None:
        return error_response(404, f"No endpoints found for {reference}.")
    authenticated = authenticate(state, request.headers) is None
    row = model.row
    data = {
        "id": model.id,
        "name": model.name,
        "created": row.get("created"),
        "description": row.get("description"),
        "architecture": row.get("architecture"),
        "endpoints": [_endpoint(state, model, endpoint, authenticated) for endpoint in endpoints_of(model)],
    }
    return _json({"data": data})


def one_model(state: SandboxState, reference: str) -> Response:
    """`GET /model/{author}/{slug}`."""
    model = state.catalog.get(reference)
    if model is None:
        return error_response(404, f"Model {reference} not found")
    return _json({"data": model.row})


def key_info(state: SandboxState) -> Response:
    """`GET /key` (and `/auth/key`): the masked label, limit and usage; never the key."""
    used = state.billed_total()
    return _json(
        {
            "data": {
                "label": state.key_label,
                "limit": state.key_limit,
                "limit_remaining": state.limit_remaining,
                "limit_reset": None,
                "include_byok_in_limit": False,
                "usage": used,
                "usage_daily": used,
                "usage_weekly": used,
                "usage_monthly": used,
                "byok_usage": 0,
                "byok_usage_daily": 0,
                "byok_usage_weekly": 0,
                "byok_usage_monthly": 0,
                "is_free_tier": False,
                "is_management_key": False,
                "is_provisioning_key": False,
                "creator_user_id": USER_ID,
                "expires_at": None,
                "rate_limit": {
                    "requests": -1,
                    "interval": "10s",
                    "note": "This field is deprecated and safe to ignore.",
                },
            }
        }
    )


def credits(state: SandboxState) -> Response:
    """`GET /credits`: bought and used, in USD; 403 for an ordinary key when `credits_need_management_key`."""
    if state.config.credits_need_management_key:
        return error_response(403, "Only management keys can perform this operation")
    return _json({"data": {"total_credits": state.config.total_credits, "total_usage": state.billed_total()}})


def generation(state: SandboxState, request: Request) -> Response:
    """`GET /generation?id=`: the stored record, or 404."""
    generation_id = request.query.get("id", "")
    if not generation_id:
        return error_response(400, "Missing generation id")
    record = state.generations.get(generation_id)
    if record is None:
        return error_response(404, f"Generation {generation_id} not found")
    return _json({"data": record})


def handle_get(state: SandboxState, request: Request, path: str) -> Response:
    """Serve a GET under `/api/v1` (`path` is what follows it)."""
    if path == "/models":
        return list_models(state, request)
    if path.startswith("/models/") and path.endswith("/endpoints"):
        return model_endpoints(state, request, path[len("/models/") : -len("/endpoints")])
    if path.startswith("/model/"):
        return one_model(state, path[len("/model/") :])
    denied = authenticate(state, request.headers)
    if path == "/models/count":
        return _json({"data": {"count": len(_selected(state, request.query))}})
    if denied is not None:
        return denied
    if path == "/models/user":
        return list_models(state, request)
    if path in ("/key", "/auth/key"):
        return key_info(state)
    if path == "/credits":
        return credits(state)
    if path == "/generation":
        return generation(state, request)
    return error_response(404, "Not Found", user_id=False)
