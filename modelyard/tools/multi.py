"""`compare_models` and `execute_batch`: several routed requests in parallel under one budget."""

# Annotations are evaluated here, not left as strings: the SDK would resolve each tool's strings three
# times while building the server (about 20 ms of the cold start).

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from modelyard.errors import ModelyardError
from modelyard.routing.labels import labelled
from modelyard.routing.money import Usd
from modelyard.routing.request import RouteRequest
from modelyard.routing.result import RouteResult
from modelyard.routing.schema import ResultModel
from modelyard.server.context import AppContextOnDemand
from modelyard.tools.common import Progress, app_of, check_model, compact, tool_errors, with_keepalive
from modelyard.tools.execute import (
    CacheMode,
    Caps,
    MaxCost,
    MaxTokens,
    Messages,
    Model,
    Models,
    PricePer1K,
    Prompt,
    Provider,
    Quality,
    Reasoning,
    ResponseFormat,
    Seed,
    Speed,
    Stop,
    System,
    Temperature,
    TimeoutS,
    ToolChoice,
    Tools,
    TopP,
)
from modelyard.tools.inputs import build_messages

if TYPE_CHECKING:
    from modelyard.routing.router import Router

__all__ = ["BatchResult", "BatchTask", "CompareResult", "register"]

_MAX_PARALLEL = 8
JUDGE_MAX_TOKENS = 1024
"""What the judge may write, whatever the answers' `max_tokens`: its verdict is one label, and the rest is room
for a reasoning model's thinking, which counts toward max_tokens (4096 by default made the judge the dearest
request of a comparison)."""
_QUOTED = 200  # characters of a verdict that named no answer, quoted in `judge_error`


class Outcome(ResultModel):
    """One task's answer, or its error."""

    label: str
    result: RouteResult | None = None
    error: str | None = None
    # What a failed task was billed all the same (answers the schema rejected; None: may be, cost unknown).
    _billed: Decimal | None = PrivateAttr(default=Decimal(0))

    @property
    def request_cost(self) -> Decimal | None:
        """What this task's request was billed: the answer's `request_cost`, or the failure's bill."""
        return self.result.request_cost if self.result is not None else self._billed


class CompareResult(ResultModel):
    """Every model's answer, with cost and latency; the judge's pick when a judge was given."""

    answers: list[Outcome]
    total_cost: Usd | None = Field(
        description="USD the answers' requests (and the judge's) were billed, their `request_cost` summed, with "
        "what a failed one was billed all the same (answers the schema rejected); null if any is unknown."
    )
    best: str | None = Field(default=None, description="The label the judge picked.")
    judge: RouteResult | None = None
    judge_error: str | None = Field(
        default=None,
        description="Why the judge picked no answer: it failed, was not run (fewer than two answers came back), "
        "or its verdict (quoted) named none; the answers above stand. Null otherwise.",
    )


class BatchTask(BaseModel):
    """One independent task of a batch: `execute`'s arguments, each as `execute` reads it, but for `images`,
    `stream`, `supervisor` and the legacy `functions`/`function_call`."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field (a cost cap) is refused, not dropped

    prompt: Prompt = None
    messages: Messages = None
    system: System = None
    model: Model = None
    models: Models = None
    quality: Quality = None
    speed: Speed = None
    capabilities: Caps = None
    provider: Provider = None
    max_cost_per_1k: PricePer1K = None
    max_cost: MaxCost = None
    max_tokens: MaxTokens = None
    temperature: Temperature = None
    top_p: TopP = None
    stop: Stop = None
    seed: Seed = None
    tools: Tools = None
    tool_choice: ToolChoice = None
    response_format: ResponseFormat = None
    reasoning: Reasoning = None
    cache: CacheMode = None
    timeout_s: TimeoutS = None


class BatchResult(ResultModel):
    """Every task's answer or error, and what the tasks were billed."""

    results: list[Outcome]
    succeeded: int
    failed: int
    total_cost: Usd | None = Field(
        description="USD the tasks' requests were billed: the answered ones' `request_cost` summed, with what a "
        "failed one was billed all the same (answers the schema rejected); null if any is unknown."
    )


async def _run_all(router: "Router", labelled: list[tuple[str, RouteRequest]], parallel: int) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(labelled)
    limiter = anyio.CapacityLimiter(parallel)

    async def one(index: int, label: str, request: RouteRequest) -> None:
        async with limiter:
            try:
                outcomes[index] = Outcome(label=label, result=await router.execute(request))
            except ModelyardError as exc:
                outcomes[index] = failed = Outcome(label=label, error=str(exc))
                failed._billed = billed(exc)

    async with anyio.create_task_group() as group:
        for index, (label, request) in enumerate(labelled):
            group.start_soon(one, index, label, request)
    return [o for o in outcomes if o is not None]


def billed(error: ModelyardError) -> Decimal | None:
    """What a request that failed with `error` was billed all the same (None: it may be, at a cost not known)."""
    return error.billed


def _total(outcomes: list[Outcome], extra: Decimal | None = Decimal(0)) -> Decimal | None:
    """What the requests were billed in all (each its answer and the attempts it paid for, or what it was
    billed though it failed), with `extra` (the judge's)."""
    costs = [o.request_cost for o in outcomes] + [extra]
    return None if any(c is None for c in costs) else sum((c for c in costs if c is not None), Decimal(0))


async def _judge(
    router: "Router", question: str, outcomes: list[Outcome], judge: str, max_cost: Decimal | None
) -> tuple[str | None, RouteResult]:
    """The label the judge picks (None: its verdict named none), and its answer. It writes at most
    `JUDGE_MAX_TOKENS` and is held to `max_cost`, the cap each answer had."""
    answered = [o for o in outcomes if o.result is not None]
    listing = "\n\n".join(f"[{o.label}]\n{o.result.content if o.result else ''}" for o in answered)
    request = RouteRequest(
        model=judge,
        temperature=0,
        cache="off",
        max_tokens=JUDGE_MAX_TOKENS,
        max_cost=max_cost,
        reasoning=await _judge_reasoning(router, judge),
        messages=[
            {"role": "system", "content": "Pick the best answer. Reply with only its label, exactly as written."},
            {"role": "user", "content": f"Question:\n{question}\n\nAnswers:\n{listing}"},
        ],
    )
    with labelled(purpose="judge"):
        verdict = await router.execute(request)
    return _pick(verdict.content or "", [o.label for o in answered]), verdict


async def _judge_reasoning(router: "Router", judge: str) -> dict[str, Any] | None:
    """Low effort for a judge that reasons unasked (the catalog says it must, or does by default): its thinking
    counts toward `JUDGE_MAX_TOKENS`, and at its default effort over a dozen answers it can spend them all
    before it writes the label. None for a tier or 'auto', which may pick a model that does not reason."""
    from modelyard.routing.resolve import resolve_reference

    entry = resolve_reference(await router.catalogs.current(), judge).entry
    reasoning = (entry.info.reasoning or {}) if entry is not None else {}
    if not (reasoning.get("mandatory") or reasoning.get("default_enabled")):
        return None
    return {"effort": "low"} if "low" in reasoning.get("supported_efforts", ["low"]) else None


def _label(name: str) -> str:
    """An answer's label: the model as asked for, a lone surrogate escaped (no JSON text can carry it, so
    the result could not be sent at all)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _pick(verdict: str, labels: list[str]) -> str | None:
    """The label the judge's reply names: the reply itself when it is a label, else the longest label in it.

    The longest, so that 'gpt-4o-mini' is not read as 'gpt-4o', nor 'perspective 11' as 'perspective 1'.
    """
    text = verdict.strip()
    if text in labels:
        return text
    return max((label for label in labels if label in text), key=len, default=None)


def _no_pick(verdict: RouteResult) -> str:
    """`judge_error` for a verdict that named no answer, quoting how it starts."""
    text = (verdict.content or "").strip()
    cut = f" (cut off at its {JUDGE_MAX_TOKENS}-token limit)" if verdict.finish_reason == "length" else ""
    return f"The judge's verdict named no answer{cut}: {compact(text, _QUOTED)!r}"


async def _task_request(number: int, task: BatchTask, default_model: str) -> RouteRequest | str:
    """Task `number`'s request, or why it cannot be built (starting `task N:`), so that it fails alone."""
    try:
        with tool_errors():
            return RouteRequest(
                messages=await build_messages(task.prompt, task.messages, task.system, [], []),
                model=task.model or default_model,
                **task.model_dump(exclude={"prompt", "messages", "system", "model"}, exclude_none=True),
            )
    except ToolError as exc:
        return f"task {number}: {exc}"


def register(server: MCPServer[AppContextOnDemand]) -> None:
    """Add `compare_models` and `execute_batch`."""

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, open_world_hint=True))
    async def compare_models(
        ctx: Context[AppContextOnDemand],
        prompt: Annotated[str, Field(min_length=1, description="The prompt every model answers.")],
        models: Annotated[list[str] | None, Field(description="Models (ids, short names or tiers) to compare.")] = None,
        perspectives: Annotated[
            list[str] | None,
            Field(description="System prompts, one per answer (a 'swarm' of viewpoints); with one model or auto."),
        ] = None,
        judge: Annotated[
            str | None,
            Field(
                description=f"A model or tier that picks the best answer. It replies with a label, in at most "
                f"{JUDGE_MAX_TOKENS} tokens, and is held to `max_cost` like each answer."
            ),
        ] = None,
        max_tokens: Annotated[
            int | None,
            Field(
                ge=1,
                le=200_000,
                description="Max completion tokens per answer (default: the server's default_max_tokens).",
            ),
        ] = None,
        max_cost: Annotated[
            Decimal | None, Field(ge=0, description="USD cap per answer, and for the judge's verdict.")
        ] = None,
    ) -> CompareResult:
        """The same prompt on several models (or one model per perspective) in parallel; all answers with
        cost and latency; an optional judge picks the best."""
        app = await app_of(ctx)
        names = models or [app.settings.default_model]
        if len(names) < 2 and not perspectives:
            raise ToolError("Give at least two models, or perspectives (system prompts) to compare.")
        if len(names) * max(1, len(perspectives or [])) > 12:
            raise ToolError("At most 12 answers per comparison: fewer models or perspectives.")
        views: list[str | None] = list(perspectives) if perspectives else [None]
        with tool_errors():
            if judge:  # an unknown judge is refused before any answer is paid for
                await check_model(app.router, judge, "judge")
            labelled = [
                (
                    _label(name) + (f" / perspective {i + 1}" if perspectives else ""),
                    RouteRequest(
                        model=name,
                        max_tokens=max_tokens,
                        max_cost=max_cost,
                        messages=await build_messages(prompt, None, view, [], []),
                    ),
                )
                for name in names
                for i, view in enumerate(views)
            ]
            outcomes = await with_keepalive(app, Progress(ctx), lambda: _run_all(app.router, labelled, _MAX_PARALLEL))
        best, verdict, failure = None, None, None
        judged: Decimal | None = Decimal(0)  # what the judge's request was billed
        if judge and (answered := sum(1 for o in outcomes if o.result is not None)) < 2:
            failure = f"The judge was not run: {answered} of {len(outcomes)} answers came back, too few to compare."
        elif judge:
            try:
                best, verdict = await _judge(app.router, prompt, outcomes, judge, max_cost)
                judged = verdict.request_cost
                failure = None if best is not None else _no_pick(verdict)
            except ModelyardError as exc:  # the answers are paid for: return them, and say why there is no pick
                failure, judged = f"The judge failed: {exc}", billed(exc)
        return CompareResult(
            answers=outcomes, total_cost=_total(outcomes, judged), best=best, judge=verdict, judge_error=failure
        )

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, open_world_hint=True))
    async def execute_batch(
        ctx: Context[AppContextOnDemand],
        tasks: Annotated[list[BatchTask], Field(min_length=1, max_length=50, description="Independent tasks.")],
        max_parallel: Annotated[int, Field(ge=1, le=16, description="Tasks running at once.")] = 4,
    ) -> BatchResult:
        """Several independent tasks (each with its own prompt and model or constraints) in parallel, with
        bounded concurrency, all inside the same budget. A failed task does not stop the others, nor does a
        malformed one (no prompt, a message without a role): its error starts with its number, `task N:`. A task
        outside the input schema (an unknown field, a negative cap) refuses the batch before anything runs."""
        app = await app_of(ctx)
        built = [await _task_request(i + 1, t, app.settings.default_model) for i, t in enumerate(tasks)]
        labelled = [(f"task {i + 1}", r) for i, r in enumerate(built) if isinstance(r, RouteRequest)]
        with tool_errors():
            ran = iter(await with_keepalive(app, Progress(ctx), lambda: _run_all(app.router, labelled, max_parallel)))
        outcomes = [
            next(ran) if isinstance(r, RouteRequest) else Outcome(label=f"task {i + 1}", error=r)
            for i, r in enumerate(built)
        ]
        failed = sum(1 for o in outcomes if o.error)
        return BatchResult(
            results=outcomes, succeeded=len(outcomes) - failed, failed=failed, total_cost=_total(outcomes)
        )
