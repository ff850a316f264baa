"""A model's endpoints (the providers serving it, each at its own prices) and the one that serves a chat.

OpenRouter lists a model at its cheapest endpoint's prices (reference §2.3), and its default routing,
weighted by the inverse square of price, sends some requests to dearer endpoints all the same. The
sandbox serves every model from one endpoint at its listed prices, under the provider `provider_for`
names, and a few models from dearer endpoints too (`DEARER`). A request's `provider.max_price` leaves
out every endpoint priced above it (reference §3.3: `prompt` and `completion` in USD per million tokens,
`request` per request, `image` per image); when none is left the answer is OpenRouter's 404. Of those
left the cheapest serves, so bills are at the listed prices, or the dearest with
`SandboxConfig.serve_dearest`, as OpenRouter's load balancing sometimes does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from modelyard.sandbox.catalog import CatalogModel
from modelyard.sandbox.http import Response
from modelyard.sandbox.wire import dumps, error_body

__all__ = [
    "DEARER",
    "PRICE_FILTERED",
    "Endpoint",
    "endpoints_of",
    "no_endpoint_response",
    "read_max_price",
    "serving",
]

PRICE_FILTERED = (
    "No endpoints found matching your price limits (provider.max_price). To learn more about provider "
    "routing, visit: https://openrouter.ai/docs/provider-routing"
)
"""The 404's message. OpenRouter's exact wording for it is not recorded anywhere we found; this follows
its other "No endpoints found ..." answers (reference §6.5), and says what filtered the endpoints out."""
_PER_MILLION = frozenset({"prompt", "completion"})
_CAPPED = ("prompt", "completion", "request", "image")
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One provider serving a model: its name, its routing tag and its prices (USD strings, per token)."""

    provider: str
    tag: str
    pricing: Mapping[str, Any]


DEARER: dict[str, tuple[Endpoint, ...]] = {
    # The prices of the real endpoints of gpt-4o-mini (reference §2.3: $0.15/$0.60, $0.165/$0.66 and
    # $0.20/$0.90 per million), the cheapest under the sandbox's own provider for the model.
    "openai/gpt-4o-mini": (
        Endpoint(
            "Azure (Sweden Central)",
            "azure/swedencentral",
            {"prompt": "0.000000165", "completion": "0.00000066", "input_cache_read": "0.0000000825"},
        ),
        Endpoint("Azure", "azure", {"prompt": "0.0000002", "completion": "0.0000009", "input_cache_read": "0.0000001"}),
    ),
}
"""The dearer endpoints of some packaged models, beside the one at their listed prices."""


def _tag(provider: str) -> str:
    return provider.lower().replace(" ", "-").replace(".", "")


def endpoints_of(model: CatalogModel) -> tuple[Endpoint, ...]:
    """The model's endpoints, the one at its listed prices first."""
    listed = Endpoint(model.provider, _tag(model.provider), model.pricing)
    return (listed, *DEARER.get(model.id, ()))


def read_max_price(provider: object) -> dict[str, Decimal] | None:
    """The request's `provider.max_price` as USD per unit of each price key it caps (per million tokens for
    `prompt` and `completion`); None when it sets none. Keys other than those four are not applied.

    Raises:
        ValueError: a cap that is not a number at or above 0.
    """
    caps = provider.get("max_price") if isinstance(provider, Mapping) else None
    if caps is None:
        return None
    if not isinstance(caps, Mapping):
        raise ValueError("provider.max_price must be an object")
    read = {}
    for key in _CAPPED:
        if (value := caps.get(key)) is not None:
            read[key] = _cap(key, value)
    return read


def _cap(key: str, value: object) -> Decimal:
    try:
        cap = Decimal(str(value)) if isinstance(value, str | int | float) and not isinstance(value, bool) else None
    except InvalidOperation:
        cap = None
    if cap is None or not cap.is_finite() or cap < 0:
        raise ValueError(f"provider.max_price.{key} must be a number at or above 0, not {value!r}")
    return cap


def _price(endpoint: Endpoint, key: str) -> Decimal:
    """The endpoint's price of `key` in max_price's unit (per million tokens for prompt and completion)."""
    price = Decimal(str(endpoint.pricing.get(key) or "0"))
    return price * _MILLION if key in _PER_MILLION else price


def _allowed(endpoint: Endpoint, caps: Mapping[str, Decimal]) -> bool:
    return all(_price(endpoint, key) <= cap for key, cap in caps.items())


def _dearness(endpoint: Endpoint) -> Decimal:
    return _price(endpoint, "prompt") + _price(endpoint, "completion")


def serving(model: CatalogModel, caps: Mapping[str, Decimal] | None, *, dearest: bool) -> CatalogModel | None:
    """The model as served by the cheapest endpoint `caps` allows (the dearest with `dearest`): the model
    itself for the endpoint at its listed prices, else a view at that endpoint's prices and provider.
    None when `caps` leaves no endpoint."""
    endpoints = endpoints_of(model)
    listed = endpoints[0]
    if not dearest and _listed_is_cheapest(model, endpoints) and (caps is None or _allowed(listed, caps)):
        # The listed endpoint is the cheapest (a loaded catalog may list a model above its `DEARER` endpoints)
        # and allowed: no other need be checked against the caps.
        return model
    allowed = [e for e in endpoints if caps is None or _allowed(e, caps)]
    if not allowed:
        return None
    # max/min keep the first of equals: of endpoints at one price, the listed one.
    chosen = max(allowed, key=_dearness) if dearest else min(allowed, key=_dearness)
    if chosen.pricing is model.pricing:
        return model
    return dataclasses.replace(model, row={**model.row, "pricing": dict(chosen.pricing)}, served_by=chosen.provider)


_CHEAPEST: dict[tuple[str, str], bool] = {}
"""Per model row (id and JSON text), whether its listed endpoint is the cheapest: worked out once."""


def _listed_is_cheapest(model: CatalogModel, endpoints: tuple[Endpoint, ...]) -> bool:
    key = (model.id, model.text)
    known = _CHEAPEST.get(key)
    if known is None:
        listed, *others = endpoints
        known = _CHEAPEST[key] = all(_dearness(listed) <= _dearness(other) for other in others)
    return known


def no_endpoint_response(model: CatalogModel) -> Response:
    """OpenRouter's 404 for a request whose `provider.max_price` left none of the model's endpoints: the
    error envelope, with a 2026 availability block saying which constraint did it (reference §6.1)."""
    body = error_body(404, PRICE_FILTERED)
    body["error"]["availability"] = {
        "code": "constraint_filtered",
        "retryable": False,
        "requested_models": [model.id],
        "constraint": {"field": "provider.max_price", "detail": "every endpoint is priced above max_price"},
        "docs_url": "https://openrouter.ai/docs/guides/routing/provider-selection",
    }
    return Response(404, dumps(body).encode("utf-8"))
