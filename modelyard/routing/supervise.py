"""Supervision: a stronger model reviews a cheaper model's answer, approving it or revising it.

The reviewer sees what the answering model saw (the conversation with its images, the tools it could
call, the answer format asked for) and the answer with its tool calls. A revision stands in for the
answer only where it can: never for an answer that called tools, and for an answer in JSON only when
the revision is JSON of the same format. The review spends what the answer left of the request's cap.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import Field

from modelyard.errors import NoCandidatesError, SchemaValidationError, UpstreamTimeoutError
from modelyard.routing.attempt import check_json
from modelyard.routing.fallback import tightest
from modelyard.routing.labels import labelled
from modelyard.routing.money import Usd
from modelyard.routing.request import RouteRequest
from modelyard.routing.result import RouteResult
from modelyard.routing.schema import ResultModel

if TYPE_CHECKING:
    from modelyard.routing.router import Router

__all__ = ["Supervision", "supervise"]

_APPROVED = "APPROVED"
_INSTRUCTIONS = (
    "You review another model's answer to the conversation below. If the answer is correct and complete, "
    f"reply with exactly {_APPROVED}. Otherwise reply with only the corrected, complete answer."
)
_JSON_INSTRUCTIONS = (
    " The answer must be JSON of the required answer format: a correction is that JSON alone, "
    "without a code fence or a comment."
)
_TOOL_INSTRUCTIONS = (
    " The answer calls tools: no text can stand in for those calls, so if they are wrong, "
    "reply with what is wrong in them."
)


class Supervision(ResultModel):
    """The supervisor's verdict; both calls are billed and shown."""

    model: str = Field(description="The model that reviewed.")
    approved: bool = Field(description="The reviewer approved the answer as it is.")
    revised_content: str | None = Field(
        default=None,
        description="The reviewer's reply when it did not approve: its revision (for an answer that called "
        "tools, what it finds wrong in the calls). Null when approved.",
    )
    revised: bool = Field(
        default=False,
        description="True when `content` above is the reviewer's revision, not the answer `model` gave (then "
        "that answer is in `original_content`; `model`, `usage`, `cost` and `finish_reason` above still "
        "describe it, the review's are here).",
    )
    original_content: str | None = Field(
        default=None,
        description="The answer as `model` gave it, when `revised` put the revision in `content`; null otherwise.",
    )
    revision_not_applied: str | None = Field(
        default=None,
        description="Why a revision was left out of `content`, which holds the original answer: the answer "
        "called tools, or the revision is not JSON of the requested response_format, was cut off at "
        "max_tokens, or was empty. Null otherwise.",
    )
    cost: Usd | None = Field(description="USD of the review's answer; null if unknown.")
    request_cost: Usd | None = Field(
        description="USD the review's request was billed, its answer and any attempt before it; null if unknown."
    )
    total_cost: Usd | None = Field(
        description="USD billed for the primary's request and the review's (each one's `request_cost`), the "
        "same as the top-level `request_cost`; null if either is unknown."
    )


async def supervise(
    router: Router, request: RouteRequest, primary: RouteResult, supervisor: str, *, timeout_s: float | None = None
) -> Supervision:
    """Ask `supervisor` (a model or tier) to approve or revise `primary`'s answer to `request`.

    The review may spend what `primary` left of the request's cap (`max_cost`, or the per-request
    budget): one supervised request spends no more than the cap in all.

    Raises:
        NoCandidatesError: nothing was sent, as nothing (or an unknown amount) is left of the cap, or no
            model can review within what is left.
        ModelyardError: the review failed (its `billed` says what it was billed all the same).
    """
    if timeout_s is not None and timeout_s <= 0:
        raise UpstreamTimeoutError(f"timeout_s={request.timeout_s:g} ran out with the answer: none left for a review")
    cap, spending = await _cap_left(router, request, primary)
    review = RouteRequest(
        messages=[
            {"role": "system", "content": _instructions(request, primary)},
            {"role": "user", "content": _review_content(request, primary)},
        ],
        model=supervisor,
        max_tokens=request.max_tokens,
        temperature=0,
        max_cost=cap,
        timeout_s=timeout_s,
        cache="off",
    )
    try:
        with labelled(purpose="review"):
            verdict = await router.execute(review)
    except NoCandidatesError as exc:
        if cap is None:
            raise
        raise NoCandidatesError(f"{spending}. {exc}", exc.exclusions) from exc
    return _verdict(request, primary, verdict)


async def _cap_left(router: Router, request: RouteRequest, primary: RouteResult) -> tuple[Decimal | None, str]:
    """What the request's cap leaves for the review after `primary`'s request (None when there is no cap),
    and a sentence saying so."""
    limit = tightest(request.max_cost, (await router.budgets.limits()).per_request)
    if limit is None:
        return None, "There is no cap"
    name = "max_cost" if limit == request.max_cost else "the per-request budget"
    spent = primary.request_cost
    if spent is None:
        raise NoCandidatesError(
            f"The answer's cost is not known yet, so neither is what it left of the ${_usd(limit)} cap ({name}): "
            "a review could overspend it."
        )
    if spent > limit:
        raise NoCandidatesError(
            f"The answer cost ${_usd(spent)}, more than the ${_usd(limit)} cap ({name}): nothing is left for a review."
        )
    left = limit - spent
    if not left:  # a free model can still review
        return left, f"The answer cost ${_usd(spent)}, all of the ${_usd(limit)} cap ({name}): only a free model fits"
    return (
        left,
        f"The answer cost ${_usd(spent)} of the ${_usd(limit)} cap ({name}), leaving ${_usd(left)} for the review",
    )


def _verdict(request: RouteRequest, primary: RouteResult, verdict: RouteResult) -> Supervision:
    text = (verdict.content or "").strip()
    approved = text.upper().startswith(_APPROVED)
    not_applied = None if approved else _why_not_applied(request, primary, verdict, text)
    revised = not approved and not_applied is None
    first, review_cost = primary.request_cost, verdict.request_cost
    return Supervision(
        model=verdict.model,
        approved=approved,
        revised_content=None if approved else text,
        revised=revised,
        original_content=primary.content if revised else None,
        revision_not_applied=not_applied,
        cost=verdict.cost,
        request_cost=review_cost,
        total_cost=first + review_cost if first is not None and review_cost is not None else None,
    )


def _why_not_applied(request: RouteRequest, primary: RouteResult, verdict: RouteResult, text: str) -> str | None:
    """Why the reviewer's `text` cannot stand in for `primary`'s answer; None when it can."""
    if primary.tool_calls:
        return "the answer called tools: the tool calls stand, and no text can replace them"
    if verdict.finish_reason == "length":
        return "the revision was cut off at max_tokens"
    if not text:
        return "the reviewer's reply was empty"
    try:
        check_json(text, request.response_format, verdict.model)
    except SchemaValidationError as exc:
        return f"the revision is not valid for the requested response_format: {exc}"
    return None


def _instructions(request: RouteRequest, primary: RouteResult) -> str:
    if primary.tool_calls:
        return _INSTRUCTIONS + _TOOL_INSTRUCTIONS
    if (request.response_format or {}).get("type") in ("json_object", "json_schema"):
        return _INSTRUCTIONS + _JSON_INSTRUCTIONS
    return _INSTRUCTIONS


def _review_content(request: RouteRequest, primary: RouteResult) -> str | list[dict[str, Any]]:
    """The conversation, the tools and answer format it offered, and the answer, as one user message.

    Images and other attachments stay content parts (the reviewer sees them as the model did); the rest is text.
    """
    parts: list[dict[str, Any]] = []
    for message in request.messages:
        parts += _message_parts(message)
    if request.tools:
        parts.append(_text(f"[tools the model could call]\n{_json(request.tools)}"))
    if request.response_format:
        parts.append(_text(f"[required answer format]\n{_json(request.response_format)}"))
    answer = f"[answer from {primary.model}]\n{primary.content or ''}"
    if primary.tool_calls:
        answer += f"\n[tool calls in the answer]\n{_json(primary.tool_calls)}"
    parts.append(_text(answer))
    return _merged(parts)


def _message_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One message as `[role] text` with its tool calls, followed by its non-text parts."""
    content = message.get("content")
    texts, attachments = [], []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if _is_text(part):
                texts.append(str(part.get("text", "")))
            else:
                attachments.append(part)
    if message.get("tool_calls"):
        texts.append(f"(tool calls: {_json(message['tool_calls'])})")
    return [_text(f"[{message['role']}] {' '.join(texts)}"), *attachments]


def _merged(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """`parts` with adjacent text joined; a plain string when only text is left."""
    merged: list[dict[str, Any]] = []
    for part in parts:
        if _is_text(part) and merged and _is_text(merged[-1]):
            merged[-1] = _text(f"{merged[-1]['text']}\n\n{part['text']}")
        else:
            merged.append(part)
    if len(merged) == 1 and _is_text(merged[0]):
        return str(merged[0]["text"])
    return merged


def _is_text(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "text"


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _usd(amount: Decimal) -> str:
    return f"{amount.normalize():f}"
