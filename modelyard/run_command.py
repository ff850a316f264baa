"""The terminal command `run`: one prompt answered, streamed to a terminal, then who answered, the tokens, the
cost and every fallback on stderr.

Kept apart from the other terminal commands (`modelyard.commands`), which only read and print the router's
state: `run` builds a request from the command line (naming the option behind each invalid value), streams
the answer as it arrives, and renews its budget hold while it runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio
from pydantic import ValidationError

from modelyard.commands import NO_KEY, ms, usd
from modelyard.errors import ConfigurationError
from modelyard.routing.events import Restart, StreamEvent, TextDelta
from modelyard.routing.request import RouteRequest
from modelyard.routing.result import RouteResult
from modelyard.server.context import AppContext, open_app_context
from modelyard.settings import Settings

__all__ = ["footer", "run"]


def _dim(text: str) -> str:
    return f"\x1b[2m{text}\x1b[0m" if sys.stderr.isatty() else text


def _prompt(args: argparse.Namespace) -> str:
    text: str = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not text.strip():
        raise ConfigurationError("The prompt is empty (give it as an argument, or '-' to read it from stdin).")
    return text


_OPTIONS = {
    "messages": "the prompt or --system",
    "model": "--model",
    "models": "--models",
    "capabilities": "--capability",
    "max_tokens": "--max-tokens",
    "max_cost": "--max-cost",
    "max_cost_per_1k": "--max-cost-per-1k",
    "temperature": "--temperature",
}
"""The `run` argument behind each `RouteRequest` field it sets."""


def _route_request(settings: Settings, args: argparse.Namespace) -> RouteRequest:
    """The request `run` sends.

    Raises:
        ConfigurationError: an option's value is out of range (`--max-tokens 0`, `--temperature 5`); the
            message names the option, what it accepts, and the value given.
    """
    messages: list[dict[str, Any]] = [{"role": "user", "content": _prompt(args)}]
    if args.system:
        messages.insert(0, {"role": "system", "content": args.system})
    fields = {
        "max_tokens": args.max_tokens,
        "max_cost": args.max_cost,
        "max_cost_per_1k": args.max_cost_per_1k,
        "temperature": args.temperature,
    }
    try:
        return RouteRequest(
            messages=messages,
            model=args.model or settings.default_model,
            models=list(args.models or []),
            capabilities=list(args.capabilities or []),
            **{name: value for name, value in fields.items() if value is not None},
        )
    except ValidationError as exc:
        raise ConfigurationError(_invalid_options(exc)) from None


def _invalid_options(exc: ValidationError) -> str:
    """`--max-tokens should be greater than or equal to 1 (got 0)`, for each invalid value.

    An error with no field comes from the checks on the whole request, of which `run` sets only the messages.
    """
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "messages"
        message = error["msg"].removeprefix("Value error, ")
        message = message.removeprefix("Input") if message.startswith("Input should") else f": {message}"
        shown = "" if field == "messages" else f" (got {error['input']!r})"  # the prompt may be long
        lines.append(f"{_OPTIONS.get(field, field)}{message}{shown}")
    return "; ".join(lines)


async def _print_event(event: StreamEvent) -> None:
    if isinstance(event, TextDelta):
        sys.stdout.write(event.text)
        sys.stdout.flush()
    elif isinstance(event, Restart):
        sys.stdout.write("\n")  # the failed answer's text stays on the screen: the new one starts below it
        note = f"[{event.failed_model} failed ({event.reason[:160]}); restarting on the next model]"
        print(_dim(note), file=sys.stderr, flush=True)


def footer(result: RouteResult) -> list[str]:
    """Who answered, the tokens, the cost (and the request's, when earlier attempts were billed too), the
    latency and every failed attempt."""
    usage = result.usage
    cost = usd(result.cost)
    if result.cached:
        cost += f" (cache hit, saved {usd(result.saved)})"
    elif result.cost_source:
        cost += f" ({result.cost_source})"
    finish = result.finish_reason
    lines = [
        f"model     {result.model}" + (f" via {result.provider}" if result.provider else ""),
        f"tokens    prompt {usage.prompt_tokens}, completion {usage.completion_tokens}, "
        f"cached {usage.cached_tokens}, reasoning {usage.reasoning_tokens}",
        f"cost      {cost}",
        f"latency   {ms(result.latency_ms)} ms",
    ]
    if not result.cached and result.request_cost != result.cost:
        lines.append(f"billed    {usd(result.request_cost)} in all, with the attempts billed before the answer")
    if finish not in (None, "stop", "tool_calls"):
        lines.append(f"finish    {finish}" + (" (the answer hit max_tokens)" if finish == "length" else ""))
    if result.selection:
        lines.append(f"selected  {result.selection}")
    failed = [a for a in result.attempts if a.outcome != "ok"]
    for attempt in failed:
        lines.append(f"fallback  {attempt.model}: {attempt.outcome}: {attempt.error or '-'}")
    return lines


async def _answer(app: AppContext, request: RouteRequest, streamed: bool) -> RouteResult:
    """The answer, with its budget hold renewed while it runs (a long answer outlives the hold's lifetime)."""
    outcome: list[RouteResult | Exception] = []
    async with anyio.create_task_group() as background:
        await background.start(app.router.budgets.renewal.run)
        try:
            outcome.append(await app.router.execute(request, on_event=_print_event if streamed else None))
        except Exception as exc:  # raised below, as it is: the task group would wrap it in a group
            outcome.append(exc)
        background.cancel_scope.cancel()
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


async def run(settings: Settings, args: argparse.Namespace) -> None:
    """Answer one prompt: stream the text to a terminal (unless `--no-stream`), then model, tokens, cost and
    fallbacks on stderr, so that stdout holds the answer alone (`run ... > answer.txt`). Piped or
    redirected, the answer is printed once it is whole: a stream that broke and fell back would otherwise
    leave the failed answer's text in the output."""
    if settings.api_key is None:
        raise ConfigurationError(NO_KEY)
    request = _route_request(settings, args)
    streamed = not args.no_stream and sys.stdout.isatty()
    async with open_app_context(settings) as app:
        result = await _answer(app, request, streamed)
    if not streamed:
        print(result.content or "")
    elif result.content and not result.content.endswith("\n"):
        print()
    for call in result.tool_calls:
        function = call.get("function", {})
        print(f"tool call {function.get('name')}({function.get('arguments', '')})")
    sys.stdout.flush()  # the answer first, where both go to one terminal
    print("-" * 60, file=sys.stderr)
    print("\n".join(footer(result)), file=sys.stderr)
