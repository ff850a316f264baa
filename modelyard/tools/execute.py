"""`execute` and `plan_route`: run one prompt on the right model, or show which model that would be."""

# Annotations are evaluated here, not left as strings: the SDK would resolve each tool's strings three
# times while building the server (about 20 ms of the cold start).

from decimal import Decimal
from typing import Annotated, Any, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from pydantic import Field

from modelyard.errors import BudgetExceededError, ModelyardError, NoCandidatesError
from modelyard.routing.money import Usd
from modelyard.routing.request import Capability, RouteRequest
from modelyard.routing.result import PlanView, RouteResult
from modelyard.routing.supervise import Supervision, supervise
from modelyard.server.context import AppContext, AppContextOnDemand
from modelyard.tools.common import Progress, app_of, check_model, tool_errors, with_keepalive
from modelyard.tools.inputs import build_messages, translate_functions

__all__ = ["ExecuteResult", "register"]

Prompt = Annotated[str | None, Field(description="The user prompt. Give this or `messages`.")]
Messages = Annotated[
    list[dict[str, Any]] | None,
    Field(
        description="OpenAI-format chat messages (roles system/developer/user/assistant/tool; content may hold "
        "image_url parts). Use instead of, or before, `prompt`."
    ),
]
System = Annotated[str | None, Field(description="A system prompt put first.")]
Model = Annotated[
    str | None,
    Field(
        description="'auto' (chosen by capabilities, cost, speed, quality), a model id "
        "('openai/gpt-4o-mini'), a short name ('gpt-4o-mini'), a tier ('economy', 'balanced', "
        "'premium': chosen within it, ranked by default for quality 'low', 'medium' and 'high' "
        "respectively, so premium leads with the tier's strongest models) or 'openrouter/auto' "
        "(OpenRouter's own router). Default: the server's default model (MODELYARD_DEFAULT_MODEL, "
        "'auto' unless set)."
    ),
]
Models = Annotated[list[str] | None, Field(description="Explicit fallback chain tried after `model`, in order.")]
Caps = Annotated[
    list[Capability] | None,
    Field(description="Capabilities the model must have: vision, tools, json_mode, structured_outputs, reasoning."),
]
PricePer1K = Annotated[
    Decimal | None,
    Field(ge=0, description="USD per 1K tokens; both the prompt and completion price must be at or under it."),
]
MaxCost = Annotated[Decimal | None, Field(ge=0, description="USD cap for this request (worst case reserved).")]
MaxTokens = Annotated[
    int | None,
    Field(
        ge=1,
        le=200_000,
        description="Max completion tokens (default: the server's default_max_tokens, 4096 unless set).",
    ),
]
Images = Annotated[
    list[str] | None,
    Field(description="Images for the last user message: URLs, data URIs, or local files under allowed dirs."),
]
Quality = Annotated[
    Literal["low", "medium", "high"] | None,
    Field(
        description="Quality vs cost: 'high' favours the strongest models, 'low' the cheapest. Default: the "
        "tier's when `model` is a tier (premium: high, balanced: medium, economy: low), else the server's."
    ),
]
Speed = Annotated[
    Literal["any", "fast"] | None, Field(description="'fast' favours the models answering fastest (observed).")
]
Provider = Annotated[list[str] | None, Field(description="Allowed model authors, e.g. ['openai', 'anthropic'].")]
Tools = Annotated[
    list[dict[str, Any]] | None,
    Field(description="OpenAI-format tool definitions; only models that call tools are considered."),
]
ResponseFormat = Annotated[
    dict[str, Any] | None,
    Field(
        description="{'type':'json_object'} or {'type':'json_schema','json_schema':{'name':..,'schema':..}};"
        " the answer is validated."
    ),
]
Reasoning = Annotated[
    dict[str, Any] | None, Field(description="Reasoning settings, e.g. {'effort': 'high'}; needs a reasoning model.")
]
Temperature = Annotated[
    float | None,
    Field(ge=0, le=2, description="Sampling temperature, 0-2. 0 (or a seed) makes the answer cacheable."),
]
TopP = Annotated[float | None, Field(gt=0, le=1, description="Nucleus sampling: the probability mass kept.")]
Stop = Annotated[str | list[str] | None, Field(description="Stop sequence(s).")]
Seed = Annotated[
    int | None, Field(description="Sampling seed, where the model supports one; makes the answer cacheable.")
]
ToolChoice = Annotated[str | dict[str, Any] | None, Field(description="auto, none, required or a tool.")]
Functions = Annotated[list[dict[str, Any]] | None, Field(description="Legacy; use tools.")]
FunctionCall = Annotated[str | dict[str, Any] | None, Field(description="Legacy; use tool_choice.")]
Stream = Annotated[bool, Field(description="Send the text as progress notifications as it arrives.")]
CacheMode = Annotated[Literal["auto", "on", "off"] | None, Field(description="auto: deterministic only.")]
TimeoutS = Annotated[float | None, Field(gt=0, le=3600, description="Seconds for the whole request.")]
Supervisor = Annotated[
    str | None,
    Field(
        description="A model or tier that reviews the answer: it approves it or returns a revision, "
        "which replaces `content` unless the answer called tools or the revision fails the "
        "response_format. The review spends only what the answer left of `max_cost` (or of the "
        "per_request budget)."
    ),
]


class ExecuteResult(RouteResult):
    """The answer, plus the supervisor's review when `supervisor` was given."""

    content: str | None = Field(
        description="The answer text (null when the model only called tools); the supervisor's revision "
        "instead when `supervision.revised` is true."
    )
    request_cost: Usd | None = Field(
        default=None,
        description="USD the whole call was billed: this answer, the earlier attempts OpenRouter billed "
        "(answers the requested schema rejected) and the supervisor's review, if any; 0 for a cache hit "
        "without review; null when any part is unknown, as when an earlier attempt was abandoned after its "
        "answer began (it may be billed). `max_cost` caps this whole amount.",
    )
    supervision: Supervision | None = None
    supervision_error: str | None = Field(
        default=None,
        description="Why there is no supervisor's review (it failed, or was not run because too little of "
        "`max_cost` was left after the answer); the answer above stands, unreviewed. Null otherwise.",
    )


async def _request(app: AppContext, **fields: Any) -> RouteRequest:
    settings = app.settings
    messages = await build_messages(
        fields.pop("prompt"),
        fields.pop("messages"),
        fields.pop("system"),
        fields.pop("images") or [],
        settings.allowed_image_dirs,
    )
    tools, tool_choice = fields.pop("tools"), fields.pop("tool_choice")
    functions, function_call = fields.pop("functions"), fields.pop("function_call")
    if functions and not tools:
        tools, tool_choice = translate_functions(functions, function_call)
    cleaned = {k: v for k, v in fields.items() if v is not None}
    cleaned.setdefault("model", settings.default_model)
    return RouteRequest(messages=messages, tools=tools, tool_choice=tool_choice, **cleaned)


async def _reviewed(
    app: AppContext, request: RouteRequest, result: RouteResult, supervisor: str, began: float
) -> ExecuteResult:
    """`result` with `supervisor`'s review, in what is left of `timeout_s` since `began`: its revision in
    `content` where one applies, its cost in `request_cost`; or, when the review failed or was not run,
    why (the answer is paid for: it is returned)."""
    review, failure, billed = None, None, None
    clock = app.router.clock.monotonic
    left = None if request.timeout_s is None else request.timeout_s - (clock() - began)
    try:
        review = await supervise(app.router, request, result, supervisor, timeout_s=left)
        billed = review.request_cost
    except (NoCandidatesError, BudgetExceededError) as exc:  # refused before sending
        failure, billed = f"The supervisor's review was not run: {exc}", exc.billed
    except ModelyardError as exc:
        failure, billed = f"The supervisor's review failed: {exc}", exc.billed
    spent = result.request_cost
    answer = ExecuteResult.model_construct(**dict(result), supervision=review, supervision_error=failure)
    answer.request_cost = spent + billed if spent is not None and billed is not None else None
    if review is not None and review.revised:
        answer.content = review.revised_content
    return answer


def register(server: MCPServer[AppContextOnDemand]) -> None:
    """Add `execute` and `plan_route` to the server."""

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, open_world_hint=True))
    async def execute(
        ctx: Context[AppContextOnDemand],
        prompt: Prompt = None,
        messages: Messages = None,
        system: System = None,
        model: Model = None,
        models: Models = None,
        quality: Quality = None,
        speed: Speed = None,
        capabilities: Caps = None,
        provider: Provider = None,
        max_cost_per_1k: PricePer1K = None,
        max_cost: MaxCost = None,
        max_tokens: MaxTokens = None,
        temperature: Temperature = None,
        top_p: TopP = None,
        stop: Stop = None,
        seed: Seed = None,
        tools: Tools = None,
        tool_choice: ToolChoice = None,
        functions: Functions = None,
        function_call: FunctionCall = None,
        response_format: ResponseFormat = None,
        reasoning: Reasoning = None,
        images: Images = None,
        stream: Stream = False,
        cache: CacheMode = None,
        timeout_s: TimeoutS = None,
        supervisor: Supervisor = None,
    ) -> ExecuteResult:
        """Run a prompt on the best model for it (or the one named), with fallback, budget and cache.

        Returns the answer, the model that gave it, token usage, the exact cost in USD (the answer's, and
        the whole call's with any attempt billed before it and any review), every attempt, and why the model
        was selected.
        """
        app = await app_of(ctx)
        arguments = dict(locals())
        for name in ("ctx", "app", "supervisor", "server"):
            arguments.pop(name, None)
        with tool_errors():
            request = await _request(app, **arguments)
            if supervisor:  # an unknown supervisor is refused before the answer is paid for
                await check_model(app.router, supervisor, "supervisor")
            reporter = Progress(ctx)
            sink = reporter.on_event if stream else None
            began = app.router.clock.monotonic()
            result = await with_keepalive(app, reporter, lambda: app.router.execute(request, on_event=sink))
        if not supervisor:
            # The router's result is already valid: copy its fields over instead of validating them again.
            return ExecuteResult.model_construct(**dict(result))
        # The review is a second model call: the host hears keep-alive notes through it too.
        return await with_keepalive(app, reporter, lambda: _reviewed(app, request, result, supervisor, began))

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False))
    async def plan_route(
        ctx: Context[AppContextOnDemand],
        prompt: Prompt = None,
        messages: Messages = None,
        system: System = None,
        model: Model = None,
        models: Models = None,
        quality: Quality = None,
        speed: Speed = None,
        capabilities: Caps = None,
        provider: Provider = None,
        max_cost_per_1k: PricePer1K = None,
        max_cost: MaxCost = None,
        max_tokens: MaxTokens = None,
        temperature: Temperature = None,
        top_p: TopP = None,
        stop: Stop = None,
        seed: Seed = None,
        tools: Tools = None,
        tool_choice: ToolChoice = None,
        functions: Functions = None,
        function_call: FunctionCall = None,
        response_format: ResponseFormat = None,
        reasoning: Reasoning = None,
        images: Images = None,
        stream: Stream = False,
        cache: CacheMode = None,
        timeout_s: TimeoutS = None,
        supervisor: Supervisor = None,
    ) -> PlanView:
        """Dry run of execute: the ranked candidate models with their worst-case cost, and why every other
        model was excluded. Sends nothing upstream and spends nothing. Takes execute's arguments as they
        are; those that do not change the choice (sampling, streaming, cache, timeout, supervisor) are
        checked and otherwise ignored.

        When no model meets the constraints it still returns the plan, with no candidates, and
        `no_candidates_reason`: why, by kind, and a change that would let a model through (execute refuses
        such a request with that text)."""
        app = await app_of(ctx)
        with tool_errors():
            if supervisor:  # refused as execute refuses it: the plan is what execute would do
                await check_model(app.router, supervisor, "supervisor")
            request = await _request(
                app,
                prompt=prompt,
                messages=messages,
                system=system,
                model=model,
                models=models,
                quality=quality,
                speed=speed,
                capabilities=capabilities,
                provider=provider,
                max_cost_per_1k=max_cost_per_1k,
                max_cost=max_cost,
                max_tokens=max_tokens,
                tools=tools,
                tool_choice=tool_choice,
                functions=functions,
                function_call=function_call,
                response_format=response_format,
                reasoning=reasoning,
                images=images,
            )
            return await app.router.plan(request)
