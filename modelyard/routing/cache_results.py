"""What the response cache gives a request, beside the answer it computes: the key a request is found by, a
hit's result and ledger row, and the failure shared by identical requests that waited on one call.

Kept apart from `Router`, which only decides when the cache is asked (`cache_allowed`) and does the I/O
(the event sink, the ledger), and from `cache`, the mechanism itself (entries, TTL, single flight), which
knows nothing of requests, results or bills.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from modelyard.errors import (
    AllCandidatesFailedError,
    BudgetExceededError,
    ModelyardError,
    NoCandidatesError,
    UpstreamTimeoutError,
)
from modelyard.routing.request import RouteRequest
from modelyard.routing.result import RouteResult
from modelyard.store.base import LedgerRow, new_id

__all__ = ["cache_payload", "coalesced_failure", "coalesced_row", "failure_sharer", "hit_result", "hit_row"]


def cache_payload(request: RouteRequest, default: int) -> dict[str, Any]:
    """What a request's cache key is computed from: the model or the selection constraints, not the plan."""
    payload = request.keyed_fields()
    payload["max_tokens"] = request.max_tokens or default
    if request.max_tokens == default:
        # Asked for, it excludes models whose limit is lower; by default it is capped to their limit,
        # so the two may be answered by different models. (Only this case needs the mark: every
        # other key is the one earlier releases computed.)
        payload["max_tokens_asked"] = True
    payload["capabilities"] = sorted(request.capabilities)
    if request.max_cost is not None:
        # A cap can exclude the model an uncapped request would get: the answer is not the same one.
        # (Keyed only when set, so every other key is the one earlier releases computed.)
        payload["max_cost"] = request.max_cost.normalize()
    return payload


def hit_result(original: RouteResult, latency_ms: float) -> RouteResult:
    """A hit's result: the stored answer, free, marked cached with the money it saved and no attempts."""
    return original.model_copy(
        update={
            "cached": True,
            "cost": Decimal(0),
            "request_cost": Decimal(0),
            "cost_source": "cache",
            "saved": original.cost,
            "attempts": [],
            "latency_ms": latency_ms,
        }
    )


def hit_row(request: RouteRequest, result: RouteResult, original: RouteResult, now: float) -> LedgerRow:
    """A hit's ledger row: no cost, the money it saved, the model that had answered."""
    return LedgerRow(
        id=new_id(),
        ts=now,
        requested_model=request.model,
        model=result.resolved_model,
        provider=result.provider,
        cost=Decimal(0),
        cost_source="cache",
        latency_ms=result.latency_ms,
        cache_hit=True,
        saved=original.cost,
        streamed=request.stream,
        detail={"served": result.model},
    )


def coalesced_failure(request: RouteRequest, error: Exception) -> Exception:
    """The error of a request that waited for an identical one which failed (or did not finish within this
    request's `timeout_s`)."""
    if isinstance(error, TimeoutError):
        error = UpstreamTimeoutError(
            f"No complete answer within timeout_s={request.timeout_s:g}: an identical request was still being answered"
        )
    return _unbilled(error)


def coalesced_row(request: RouteRequest, error: Exception, *, now: float, latency_ms: float) -> LedgerRow:
    """The ledger row of a request that waited for an identical one which failed: it spent nothing."""
    refused = isinstance(error, BudgetExceededError | NoCandidatesError)
    return LedgerRow(
        id=new_id(),
        ts=now,
        requested_model=request.model,
        cost=Decimal(0),
        latency_ms=latency_ms,
        status="refused" if refused else "error",
        error=str(error)[:2000],
        streamed=request.stream,
        detail={"coalesced": True},
    )


def _unbilled(error: Exception) -> Exception:
    """The error of a request that waited for an identical one which failed: what that one was billed (its
    rejected or abandoned answers) was billed to it, once, so this one's error says $0, not the same bill."""
    if not isinstance(error, ModelyardError) or error.billed == 0:
        return error
    if isinstance(error, AllCandidatesFailedError):  # its message was written with the bill
        return error.with_billed(Decimal(0))
    unbilled = copy.copy(error)
    unbilled.billed = Decimal(0)
    return unbilled


def failure_sharer(request: RouteRequest) -> Callable[[Exception], bool]:
    """Whether this request's failure is also the answer for identical requests waiting on it: only
    when nothing outside the cache key (its own deadline or cost cap) may have caused it."""
    if request.timeout_s is not None or request.max_cost is not None:
        return _share_nothing
    return _is_routing_failure


def _share_nothing(error: Exception) -> bool:
    return False


def _is_routing_failure(error: Exception) -> bool:
    return isinstance(error, ModelyardError)
