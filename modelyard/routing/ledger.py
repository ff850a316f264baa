"""Turning answers, failures and plans into ledger rows and result views."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from modelyard.errors import UpstreamError
from modelyard.openrouter.schemas import ChatResponse, Usage
from modelyard.routing.catalog import Catalog
from modelyard.routing.pricing import asks_for_1h_cache, cost_of_usage, per_million
from modelyard.routing.request import RouteRequest
from modelyard.routing.result import (
    AttemptRecord,
    CandidateView,
    ExclusionView,
    PlanView,
    RouteResult,
    TokenUsage,
)
from modelyard.routing.selection import Candidate, Plan
from modelyard.store.base import LedgerRow, new_id

__all__ = ["attempt_record", "failure_row", "rejected_row", "success_row", "view_of_plan"]

_PLAN_EXCLUSIONS_SHOWN = 60


def attempt_record(model: str, error: BaseException, latency_ms: float) -> AttemptRecord:
    kind = error.kind if isinstance(error, UpstreamError) else "schema_validation"
    return AttemptRecord(
        model=model, outcome="error", error=str(error), error_kind=kind, latency_ms=round(latency_ms, 3)
    )


def _cost(
    catalog: Catalog,
    candidate: Candidate,
    response: ChatResponse,
    usage: Usage | None,
    request: RouteRequest,
    now: float,
) -> tuple[Decimal | None, Literal["upstream", "computed"] | None]:
    """OpenRouter's `usage.cost` when given, else computed at the served model's prices, else unknown.

    The served model is the answer's `model`: the candidate itself when that is the candidate's id or
    canonical slug (a canonical slug is shared by a model and its `:free`/`:batch` rows, and the one asked
    for is the one that answered), else the catalog's model of that name (a router's pick), else the candidate.

    A computed cost uses the prices in force when the answer was made: its `created` time, else `now`
    (else, when `now` is 0 as from a caller without a clock, the current time), and the 1-hour cache-write
    price when the request marked a breakpoint with a 1-hour TTL.
    """
    if usage is None:
        return None, None
    if usage.cost is not None:
        return usage.cost, "upstream"
    own = {candidate.id, candidate.entry.wire_id, candidate.entry.info.canonical_slug}
    served = candidate.entry if response.model in own else catalog.get(response.model) or candidate.entry
    if served.info.pricing.is_dynamic:
        return None, None
    at = float(response.created) if response.created is not None else now or None
    cost = cost_of_usage(
        served.info.pricing,
        usage,
        images=request.image_count(),
        cache_ttl_1h=asks_for_1h_cache(request.messages),
        at=at,
    )
    return cost, "computed"


def success_row(
    request: RouteRequest,
    plan: Plan,
    catalog: Catalog,
    candidate: Candidate,
    response: ChatResponse,
    attempts: list[AttemptRecord],
    *,
    latency_ms: float,
    total_ms: float,
    now: float,
    billed_before: Decimal | None = Decimal(0),
) -> tuple[LedgerRow, RouteResult]:
    """The ledger row and the result for an answered request.

    `billed_before` is what its earlier attempts were billed (None: unknown), added to the answer's cost
    in the result's `request_cost`; the row holds the answer's cost alone (they have rows of their own).
    """
    usage = response.usage
    cost, source = _cost(catalog, candidate, response, usage, request, now)
    attempts.append(AttemptRecord(model=candidate.id, outcome="ok", latency_ms=round(latency_ms, 3), cost=cost))
    tokens = _tokens(usage)
    choice = response.choices[0]
    result = RouteResult(
        content=choice.message.content,
        tool_calls=[c.model_dump(exclude_none=True) for c in choice.message.tool_calls or []],
        reasoning=choice.message.reasoning,
        reasoning_details=choice.message.reasoning_details,
        model=response.model or candidate.id,
        requested_model=request.model,
        resolved_model=candidate.id,
        provider=response.provider,
        finish_reason=choice.finish_reason,
        usage=tokens,
        cost=cost,
        request_cost=None if cost is None or billed_before is None else cost + billed_before,
        cost_source=source,
        latency_ms=round(total_ms, 3),
        attempts=list(attempts),
        selection=f"{plan.mode}: {candidate.reason}",
        generation_id=response.id or None,
    )
    row = LedgerRow(
        id=new_id(),
        ts=now,
        requested_model=request.model,
        model=result.model,
        provider=response.provider,
        prompt_tokens=tokens.prompt_tokens,
        completion_tokens=tokens.completion_tokens,
        cached_tokens=tokens.cached_tokens,
        reasoning_tokens=tokens.reasoning_tokens,
        cost=cost,
        cost_source=source,
        latency_ms=round(total_ms, 3),
        attempts=len(attempts),
        streamed=request.stream,
        detail={
            "resolved": candidate.id,
            "generation_id": response.id,
            "attempts": [a.model_dump(mode="json") for a in attempts],
        },
    )
    return row, result


def failure_row(
    request: RouteRequest,
    plan: Plan,
    attempts: list[AttemptRecord],
    error: BaseException,
    now: float,
    *,
    status: Literal["error", "refused", "cancelled"] = "error",
    unrecorded: bool = False,
) -> LedgerRow:
    """The ledger row for a request that got no answer (refused before sending, or all attempts failed).

    Its cost is 0, not unknown: the row itself was billed nothing. What its attempts were billed (answers
    the JSON schema rejected, answers abandoned after they began) is in rows of their own, so that a null
    cost in the ledger always means a bill still to be found out. With `unrecorded` (an attempt may have
    been billed and no row of its own will say what: no reconciler took it, `RequestSpend.unrecorded`),
    that bill is this row's, and unknown: its cost is None."""
    return LedgerRow(
        id=new_id(),
        ts=now,
        requested_model=request.model,
        model=plan.candidates[0].id if plan.candidates else None,
        attempts=sum(1 for a in attempts if a.outcome != "skipped"),
        status=status,
        error=str(error)[:2000],
        streamed=request.stream,
        cost=None if unrecorded else Decimal(0),
        detail={"attempts": [a.model_dump(mode="json") for a in attempts]},
    )


def _tokens(usage: Usage | None) -> TokenUsage:
    if usage is None:
        return TokenUsage()
    return TokenUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        total_tokens=usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    )


def view_of_plan(plan: Plan) -> PlanView:
    """The plan as `plan_route` shows it."""
    candidates = [
        CandidateView(
            model=c.id,
            score=c.score,
            tier=c.entry.tier,
            quality=c.entry.quality,
            quality_source=c.entry.quality_source,
            prompt_per_1m=per_million(c.entry.info.pricing.prompt).normalize(),
            completion_per_1m=per_million(c.entry.info.pricing.completion).normalize(),
            max_tokens=c.max_tokens,
            worst_case_cost=c.worst_case,
            reason=c.reason,
        )
        for c in plan.candidates
    ]
    return PlanView(
        mode=plan.mode,
        required_capabilities=sorted(plan.required),
        prompt_tokens_estimate=plan.prompt_tokens_estimate,
        prompt_tokens_bound=plan.prompt_tokens_bound,
        candidates=candidates,
        excluded=[ExclusionView(model=e.model, reason=e.reason) for e in plan.exclusions[:_PLAN_EXCLUSIONS_SHOWN]],
        excluded_total=len(plan.exclusions),
        estimated_cost=candidates[0].worst_case_cost if candidates else None,
    )


def rejected_row(
    request: RouteRequest,
    plan: Plan,
    catalog: Catalog,
    candidate: Candidate,
    response: ChatResponse,
    rejected: BaseException,
    *,
    now: float,
) -> LedgerRow:
    """The ledger row of an answer OpenRouter billed but the request rejected (it failed the JSON schema):
    its money and tokens, marked `billed_attempt` (money of its request, not a request of its own)."""
    row, _ = success_row(request, plan, catalog, candidate, response, [], latency_ms=0.0, total_ms=0.0, now=now)
    billed = failure_row(request, plan, [], rejected, now)
    billed.model, billed.provider, billed.attempts = row.model, row.provider, 1
    billed.cost, billed.cost_source = row.cost, row.cost_source
    billed.prompt_tokens, billed.completion_tokens = row.prompt_tokens, row.completion_tokens
    billed.cached_tokens, billed.reasoning_tokens = row.cached_tokens, row.reasoning_tokens
    billed.detail = {"billed_attempt": True, "resolved": candidate.id, "generation_id": response.id}
    return billed
