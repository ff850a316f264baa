"""`modelyard demo`: an offline tour of the server through a real MCP client session.

It starts the sandbox upstream in this process, starts `python -m modelyard serve` as a subprocess
over stdio (pointed at the sandbox, with a throw-away store and config), and calls the tools the
way a host would. Each step checks what it shows; a step that does not behave as described stops
the tour with `DemoFailedError` (the CLI prints it and exits 1) instead of printing something misleading.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import anyio
from mcp import Client, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

import modelyard
from modelyard.commands import metrics_lines, model_table, table, usd
from modelyard.errors import ModelyardError
from modelyard.routing.metrics import Metrics
from modelyard.sandbox import Sandbox
from modelyard.tools import TOOL_NAMES

__all__ = ["DemoFailedError", "run_demo"]

PRIMARY = "openai/gpt-4o-mini"
BACKUP = "mistralai/mistral-small-3.2-24b-instruct"
CONSTRAINTS: dict[str, Any] = {"capabilities": ["vision"], "max_cost_per_1k": "0.001"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}
STEP_TIMEOUT_S = 30.0
STEPS = 9


class DemoFailedError(ModelyardError):
    """A demo step did not behave as described."""


def check(condition: bool, message: str) -> None:
    """Stop the demo with `message` unless `condition` holds."""
    if not condition:
        raise DemoFailedError(message)


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _say(text: str = "") -> None:
    print(f"  {text}" if text else "", flush=True)


def _text(result: CallToolResult) -> str:
    return " ".join(part.text for part in result.content if isinstance(part, TextContent))


def _table(*args: Any, **kwargs: Any) -> None:
    print("\n".join("  " + line for line in table(*args, **kwargs).splitlines()))


class _Collector:
    """The streamed text from progress notifications, echoed to the terminal as it arrives."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self._changed = anyio.Event()

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        if message:
            self.pieces.append(message)
            sys.stdout.write(message)
            sys.stdout.flush()
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for(self, text: str, timeout_s: float) -> None:
        """Wait until the pieces add up to `text` (over stdio, notifications may trail the result)."""
        with anyio.move_on_after(timeout_s):
            while "".join(self.pieces) != text:
                await self._changed.wait()


class Tour:
    """The nine steps, sharing one MCP client session and the in-process sandbox."""

    def __init__(self, client: Client, sandbox: Sandbox) -> None:
        self.client = client
        self.sb = sandbox
        self.top_candidate = ""

    def steps(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """(title, step) in the order they run."""
        return [
            ("Tools and connection", self.connection),
            ("Plan a route (dry run: nothing is sent, nothing is spent)", self.plan),
            ("Execute with automatic selection under the same constraints", self.execute_auto),
            ("Fallback around an injected failure", self.fallback),
            ("Response cache", self.cache),
            ("Tool calling", self.tool_call),
            ("A streamed answer (progress notifications)", self.stream),
            ("Budget refusal", self.budget),
            ("Metrics", self.metrics),
        ]

    async def call(self, tool: str, arguments: dict[str, Any], **options: Any) -> dict[str, Any]:
        """The structured result of a tool call that must succeed."""
        result = await self.client.call_tool(tool, arguments, **options)
        check(not result.is_error, f"{tool} returned an error: {_text(result)}")
        content = result.structured_content
        if not isinstance(content, dict):
            raise DemoFailedError(f"{tool} returned no structured result")
        return content

    async def connection(self) -> None:
        names = [tool.name for tool in (await self.client.list_tools()).tools]
        check(set(names) == set(TOOL_NAMES), f"expected the tools {sorted(TOOL_NAMES)}, got {sorted(names)}")
        _say(f"{len(names)} tools: {', '.join(names)}")
        report = await self.call("test_connection", {})
        check(report["sandbox"] and report["key_valid"] is True, f"the sandbox key was not accepted: {report}")
        check((report["catalog_models"] or 0) > 0 and report["store_healthy"], f"catalog or store missing: {report}")
        check(not report["problems"], f"test_connection reported problems: {report['problems']}")
        _say(
            f"test_connection: sandbox yes, key valid ({report['key_label']}), catalog {report['catalog_models']} "
            f"models, round trip {report['round_trip_ms']} ms, store healthy"
        )

    async def plan(self) -> None:
        _say("constraints: capabilities ['vision'], max_cost_per_1k $0.001 (prompt and completion price)")
        plan = await self.call("plan_route", {"prompt": "Describe this photo of a lighthouse.", **CONSTRAINTS})
        candidates, excluded = plan["candidates"], plan["excluded"]
        check(len(candidates) >= 3 and plan["excluded_total"] > 0, f"expected 3+ candidates and exclusions: {plan}")
        rows = [
            [
                str(i),
                c["model"],
                str(c["prompt_per_1m"]),
                str(c["completion_per_1m"]),
                usd(_money(c["worst_case_cost"])),
            ]
            for i, c in enumerate(candidates[:3], 1)
        ]
        _table(["#", "candidate", "$/1M in", "$/1M out", "worst case"], rows, right=frozenset({2, 3, 4}))
        self.top_candidate = candidates[0]["model"]
        samples = [excluded[0]]
        samples += [e for e in excluded if e["reason"].split()[0] != excluded[0]["reason"].split()[0]][:1]
        _say(f"{plan['excluded_total']} models excluded, for example:")
        for exclusion in samples:
            _say(f"  {exclusion['model']}: {exclusion['reason']}")

    async def execute_auto(self) -> None:
        answer = await self.call("execute", {"prompt": "Describe this photo of a lighthouse.", **CONSTRAINTS})
        cost, billed = _money(answer["cost"]), self.sb.state.ledger[-1].cost
        check(answer["resolved_model"] == self.top_candidate, f"expected the plan's first choice: {answer}")
        check(cost is not None and cost > 0 and cost == billed, f"cost {cost} differs from the billed {billed}")
        usage = answer["usage"]
        _say(f"answer: {answer['content']}")
        _say(f"model:  {answer['model']} (the plan's first choice)")
        _say(f"why:    {answer['selection']}")
        _say(f"tokens: {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion")
        _say(f"cost:   {usd(cost)} ({answer['cost_source']} usage.cost; the sandbox billed exactly {usd(billed)})")

    async def fallback(self) -> None:
        self.sb.state.faults.add(model=PRIMARY, kind="server_error")
        _say(f"injected: a persistent server_error (HTTP 500) on {PRIMARY}")
        _say(f"execute(model={PRIMARY!r}, models=[{BACKUP!r}])")
        try:
            answer = await self.call(
                "execute", {"prompt": "Summarise the tides in one line.", "model": PRIMARY, "models": [BACKUP]}
            )
        finally:
            self.sb.state.faults.clear(PRIMARY)
        attempts = answer["attempts"]
        failed, last = attempts[:-1], attempts[-1]
        check(last["model"] == BACKUP and last["outcome"] == "ok", f"expected {BACKUP} to answer: {attempts}")
        check(bool(failed) and all(a["model"] == PRIMARY and a["outcome"] == "error" for a in failed), str(attempts))
        for attempt in attempts:
            mark = "ok" if attempt["outcome"] == "ok" else f"failed: {attempt['error']} ({attempt['error_kind']})"
            _say(f"  attempt {attempt['model']}: {mark}")
        _say(f"answered by {answer['model']} after {len(failed)} failed attempts on {PRIMARY} (retried with backoff)")
        _say(f"cost {usd(_money(answer['cost']))}: failed attempts are not billed")

    async def cache(self) -> None:
        request = {"prompt": "Name three colours of the sea.", "model": "openai/gpt-4.1-nano", "temperature": 0}
        first = await self.call("execute", request)
        sent = self.sb.state.request_count
        second = await self.call("execute", request)
        cost = _money(first["cost"])
        check(not first["cached"] and cost is not None and cost > 0, f"the first call should be upstream: {first}")
        check(second["cached"] is True and _money(second["cost"]) == 0, f"the second call should hit: {second}")
        check(_money(second["saved"]) == cost, f"a hit saves what the first call cost: {second}")
        check(self.sb.state.request_count == sent, "the cache hit still sent a request upstream")
        _say(f"1st call: cached={json.dumps(first['cached'])}, cost {usd(cost)}")
        _say(f"2nd call: cached={json.dumps(second['cached'])}, cost {usd(_money(second['cost']))}, saved {usd(cost)}")
        _say("no second upstream request (the sandbox's request count did not move)")

    async def tool_call(self) -> None:
        answer = await self.call("execute", {"prompt": "What's the weather in Lisbon?", "tools": [WEATHER_TOOL]})
        calls = answer["tool_calls"]
        check(bool(calls), f"expected a tool call: {answer}")
        function = calls[0]["function"]
        arguments = json.loads(function["arguments"])
        check(function["name"] == "get_weather" and isinstance(arguments, dict), f"bad tool call: {calls}")
        _say(f"model {answer['model']} (a `tools` definition makes the tools capability required)")
        _say(f"tool call: {function['name']}({json.dumps(arguments)})  finish_reason={answer['finish_reason']}")
        _say(f"cost {usd(_money(answer['cost']))}")

    async def stream(self) -> None:
        streamed = _Collector()
        self.sb.state.config.stream_chunk_delay_ms = 25.0  # slow enough to see it arrive
        sys.stdout.write("  > ")
        try:
            request = {"prompt": "Write one line about a lighthouse at dawn.", "model": BACKUP, "stream": True}
            answer = await self.call("execute", request, progress_callback=streamed.on_progress)
        finally:
            self.sb.state.config.stream_chunk_delay_ms = 0.0
        await streamed.wait_for(answer["content"] or "", 2.0)
        print()
        pieces = streamed.pieces
        check(len(pieces) >= 2, f"expected the text in several progress notifications, got {len(pieces)}")
        check("".join(pieces) == answer["content"], "the streamed text differs from the final answer")
        _say(f"{len(pieces)} progress notifications; final: {answer['model']}, cost {usd(_money(answer['cost']))}")

    async def budget(self) -> None:
        spent = _money((await self.call("get_budget", {}))["spent_today"]) or Decimal(0)
        daily = spent + Decimal("0.00001")
        status = await self.call("set_budget", {"daily": str(daily)})
        left = _money(status["remaining_today"])
        _say(f"set_budget(daily={usd(daily)}): spent today {usd(spent)}, remaining {usd(left)}")
        sent = self.sb.state.request_count
        request = {"prompt": "Write a long essay on lighthouses.", "model": "openai/gpt-4o", "max_tokens": 1000}
        worst = _money((await self.call("plan_route", request))["estimated_cost"])
        check(worst is not None and left is not None and worst > left, f"the worst case {worst} should not fit")
        _say(f"execute(model='openai/gpt-4o', max_tokens=1000): worst case {usd(worst)} (plan_route) > {usd(left)}")
        result = await self.client.call_tool("execute", request)
        message = _text(result)
        check(result.is_error and "Refused" in message, f"expected a budget refusal, got: {message[:300]}")
        check(self.sb.state.request_count == sent, "a refused request was sent upstream")
        _say(f"refused (is_error): {message}")
        _say("nothing was sent upstream")

    async def metrics(self) -> None:
        found = Metrics.model_validate(await self.call("get_metrics", {"window": "all"}))
        check(found.cache_hits == 1 and found.refused == 1, f"expected 1 cache hit and 1 refusal: {found}")
        check(found.successes >= 6, f"expected at least 6 answered requests: {found}")
        for line in metrics_lines(found)[1:]:
            print(line)
        _say()
        print("\n".join("  " + line for line in model_table(found).splitlines()))
        billed = self.sb.state.billed_total()
        check(found.total_cost == billed, f"the server's total {found.total_cost} != the sandbox's billed {billed}")
        _say()
        _say(f"server total_cost {usd(found.total_cost)} == sandbox billed_total() {usd(billed)}: exact match")


def _server_params(sandbox: Sandbox, workdir: Path) -> StdioServerParameters:
    config = workdir / "demo.toml"
    config.write_text("# the demo's own (empty) config: the user's config file is not read\n")
    env = {
        "OPENROUTER_API_KEY": sandbox.api_key,
        "OPENROUTER_BASE_URL": sandbox.base_url,
        "MODELYARD_STORE": f"sqlite:///{workdir / 'demo.db'}",
        "PYTHONPATH": str(Path(modelyard.__file__).resolve().parents[1]),  # the same modelyard as this one
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(workdir)),
    }
    return StdioServerParameters(
        command=sys.executable, args=["-m", "modelyard", "--config", str(config), "serve"], env=env
    )


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


async def _tour(sandbox: Sandbox, params: StdioServerParameters, errlog: TextIO) -> None:
    failure: BaseException | None = None
    try:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            tour = Tour(client, sandbox)
            for number, (title, step) in enumerate(tour.steps(), 1):
                print(f"\n[{number}/{STEPS}] {title}", flush=True)
                try:
                    with anyio.fail_after(STEP_TIMEOUT_S):
                        await step()
                except Exception as exc:
                    if isinstance(_leaf(exc), BrokenPipeError):  # our own stdout's reader left: not a step's failure
                        raise
                    failure = DemoFailedError(f"step {number} ({title}) failed: {_leaf(exc)}")
                    break
    except Exception as exc:
        if isinstance(leaf := _leaf(exc), BrokenPipeError):  # the CLI ends quietly with 141
            raise leaf from None
        failure = failure or DemoFailedError(f"the MCP session with `modelyard serve` failed: {_leaf(exc)!r}")
    if failure is not None:
        raise failure


@contextlib.contextmanager
def _server_log(path: Path, verbose: bool) -> Iterator[TextIO]:
    if verbose:
        yield sys.stderr
        return
    with path.open("w") as log:
        yield log


async def run_demo(verbose: bool) -> None:
    """Run the tour; raises `DemoFailedError` when a step does not behave as described."""
    began = time.perf_counter()
    print("modelyard demo: sandbox upstream + `modelyard serve` over stdio + a real MCP client, all offline.")
    with tempfile.TemporaryDirectory(prefix="modelyard-demo-") as tmp:
        workdir = Path(tmp)
        log_path = workdir / "server.log"
        async with Sandbox.running(port=0) as sandbox:
            print(f"sandbox on {sandbox.base_url}; server: {sys.executable} -m modelyard serve", flush=True)
            try:
                with _server_log(log_path, verbose) as errlog:
                    await _tour(sandbox, _server_params(sandbox, workdir), errlog)
            except DemoFailedError:
                if not verbose and log_path.exists():
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-20:]
                    print("\n".join(["server log (last lines):", *tail]) if tail else "", file=sys.stderr)
                raise
    print(f"\nAll {STEPS} steps behaved as described, offline, in {time.perf_counter() - began:.1f} s.")
