"""Hostile input: property-based fuzzing of every tool's arguments through the MCP client, a 10 MB prompt, and
garbage on the stdio wire. The server never dies, never hangs, and every rejection says what is wrong."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.types import CallToolResult

from modelyard.sandbox import Sandbox
from modelyard.server import build_server
from modelyard.settings import Settings
from modelyard.tools import TOOL_NAMES
from tests.reliability.harness import Figures, bare_error, by_size, text_of
from tests.server.conftest import SERVE, server_env

pytestmark = pytest.mark.reliability

KEY = "sk-or-v1-hostile"
CALL_DEADLINE_S = 20.0
TEN_MB = 10 * 1024 * 1024


@dataclass(frozen=True)
class Fuzz:
    examples: int  # hypothesis examples per tool
    derandomize: bool  # CI replays the same examples every run; the full size explores new ones each time


@dataclass
class Live:
    """A sandbox and an in-memory MCP client of `build_server(settings)`, driven from sync tests via a portal."""

    portal: anyio.from_thread.BlockingPortal
    client: Client
    sandbox: Sandbox

    def call(self, tool: str, arguments: Any) -> tuple[CallToolResult, float]:
        """Call `tool` with `arguments`, failing the test if no answer comes within CALL_DEADLINE_S."""

        async def timed() -> tuple[CallToolResult, float]:
            began = time.monotonic()
            with anyio.fail_after(CALL_DEADLINE_S):
                result = await self.client.call_tool(tool, arguments)
            return result, time.monotonic() - began

        return self.portal.call(timed)


@pytest.fixture(scope="module")
def portal() -> Iterator[anyio.from_thread.BlockingPortal]:
    with anyio.from_thread.start_blocking_portal("asyncio") as running:
        yield running


def _live(portal: anyio.from_thread.BlockingPortal, store: Path, **overrides: Any) -> Iterator[Live]:
    with portal.wrap_async_context_manager(Sandbox.running(api_key=KEY)) as sandbox:
        fields: dict[str, Any] = {
            "openrouter_api_key": KEY,
            "openrouter_base_url": sandbox.base_url,
            "store": f"sqlite:///{store}",
            "request_timeout_s": 5.0,
            **overrides,
        }
        with portal.wrap_async_context_manager(Client(build_server(Settings(**fields)))) as client:
            yield Live(portal, client, sandbox)


@pytest.fixture(scope="module")
def live(portal: anyio.from_thread.BlockingPortal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One long-lived server for the fuzzing of every tool but set_budget (which would starve the others)."""
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "images").mkdir()
    yield from _live(portal, folder / "s.db", allowed_image_dirs=[folder / "images"])


@pytest.fixture(scope="module")
def budget_live(portal: anyio.from_thread.BlockingPortal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server with operator limits, for fuzzing set_budget."""
    folder = tmp_path_factory.mktemp("hostile-budget")
    limits = {"daily": Decimal("5"), "monthly": Decimal("50"), "per_request": Decimal("0.5")}
    yield from _live(portal, folder / "s.db", budget=limits)


# ---------------------------------------------------------------------------------------------- strategies

TEXT = st.text(st.characters(codec=None), max_size=40)  # any code point, lone surrogates and NUL included
HUGE = st.sampled_from(["x" * 100_000, "é" * 300_000, "\U0001f600" * 50_000, "\x00" * 10_000])
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["NaN", "-Infinity", "1e999999", "-0", "0.000000000000000000001", "sNaN"]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, HUGE)


def _nest(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


# The MCP client itself refuses to serialise past ~250 levels; deeper nesting is sent raw on the wire below.
DEEP = st.integers(min_value=20, max_value=200).map(_nest)
KEYS = st.text(st.characters(codec="utf-8"), max_size=8)  # the client library cannot send a lone surrogate key
JSONISH = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=12
)
HOSTILE = st.one_of(SCALARS, JSONISH, DEEP)
ROLES = st.sampled_from(["user", "system", "assistant", "tool", "", "developer", "\x00"])
PART = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(TEXT, HOSTILE)}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.one_of(HOSTILE, st.just({"url": "data:,"}))}),
    HOSTILE,
)
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": st.one_of(ROLES, HOSTILE), "content": st.one_of(TEXT, st.lists(PART, max_size=3), HOSTILE)},
        optional={"name": HOSTILE, "tool_calls": HOSTILE, "tool_call_id": HOSTILE},
    ),
    HOSTILE,
)
MODELS = st.sampled_from(
    ["auto", "gpt-4o-mini", "economy", "premium", "openrouter/auto", "openrouter/openai/gpt-4o-mini", "", "nope"]
)


def mostly(valid: st.SearchStrategy[Any], edge: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a valid value, sometimes an edge case: enough valid calls reach routing and the upstream."""
    return st.one_of(valid, valid, valid, edge)


PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "prompt": mostly(st.text(min_size=1, max_size=60), st.one_of(TEXT, HUGE)),
    "messages": mostly(
        st.lists(
            st.fixed_dictionaries({"role": st.just("user"), "content": st.text(min_size=1)}), min_size=1, max_size=3
        ),
        st.lists(MESSAGE, max_size=4),
    ),
    "system": TEXT,
    "model": mostly(MODELS, TEXT),
    "models": mostly(st.lists(MODELS, max_size=3), st.lists(TEXT, max_size=3)),
    "judge": MODELS,
    "supervisor": MODELS,
    "quality": st.sampled_from(["low", "medium", "high", "ultra"]),
    "speed": st.sampled_from(["any", "fast", "slow"]),
    "capabilities": st.lists(st.sampled_from(["vision", "tools", "json_mode", "reasoning", "telepathy"]), max_size=2),
    "provider": st.lists(st.sampled_from(["openai", "anthropic", "mistralai", "", "x"]), max_size=2),
    "max_cost_per_1k": mostly(st.decimals(0, 1, places=6).map(str), NUMBERS),
    "max_cost": mostly(st.decimals(0, 1, places=6).map(str), NUMBERS),
    "max_tokens": mostly(st.integers(1, 400), NUMBERS),
    "temperature": mostly(st.floats(0, 2), NUMBERS),
    "top_p": mostly(st.floats(0.01, 1), NUMBERS),
    "seed": mostly(st.integers(0, 2**31), NUMBERS),
    "timeout_s": mostly(st.floats(1, 60), st.sampled_from([0, -1, 0.001, 1e-9, 3600, 1e300])),
    "stop": st.one_of(TEXT, st.lists(TEXT, max_size=5)),
    "tools": mostly(
        st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.just("function"),
                    "function": st.fixed_dictionaries(
                        {"name": st.from_regex(r"[a-z_]{1,12}", fullmatch=True)},
                        optional={"parameters": st.just({"type": "object", "properties": {}})},
                    ),
                }
            ),
            min_size=1,
            max_size=2,
        ),
        st.lists(HOSTILE, max_size=3),
    ),
    "tool_choice": st.one_of(st.sampled_from(["auto", "none", "required"]), HOSTILE),
    "functions": st.lists(HOSTILE, max_size=2),
    "function_call": HOSTILE,
    "response_format": mostly(
        st.sampled_from(
            [
                {"type": "json_object"},
                {"type": "text"},
                {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}},
                {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "integer", "minimum": 3}}},
            ]
        ),
        st.one_of(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["json_object", "json_schema", "xml"])},
                optional={"json_schema": st.one_of(HOSTILE, st.fixed_dictionaries({"name": TEXT, "schema": HOSTILE}))},
            ),
            HOSTILE,
        ),
    ),
    "reasoning": st.one_of(st.fixed_dictionaries({}, optional={"effort": HOSTILE, "enabled": HOSTILE}), HOSTILE),
    "images": st.lists(
        st.one_of(
            st.sampled_from(["/etc/passwd", "../../../etc/shadow", "~/x.png", "data:image/png;base64,AAAA", "\x00"]),
            TEXT,
        ),
        max_size=2,
    ),
    "stream": st.booleans(),
    "cache": st.sampled_from(["auto", "on", "off", "maybe"]),
    "perspectives": st.lists(st.text(max_size=20), max_size=4),
    "tasks": mostly(
        st.lists(
            st.fixed_dictionaries({"prompt": st.text(min_size=1, max_size=30)}, optional={"model": MODELS}),
            min_size=1,
            max_size=3,
        ),
        st.lists(
            st.dictionaries(st.sampled_from(["prompt", "messages", "model", "max_tokens", "x"]), HOSTILE, max_size=3),
            max_size=3,
        ),
    ),
    "max_parallel": mostly(st.integers(1, 16), NUMBERS),
    "min_context": mostly(st.integers(1, 2_000_000), NUMBERS),
    "tier": st.sampled_from(["economy", "balanced", "premium", "gold"]),
    "search": mostly(st.sampled_from(["gpt", "llama", "claude", ""]), st.one_of(TEXT, HUGE)),
    "sort": st.sampled_from(["quality", "price", "context", "name", "random"]),
    "limit": mostly(st.integers(1, 200), NUMBERS),
    "window": st.sampled_from(["today", "7d", "all", "forever"]),
    "daily": mostly(st.decimals(0, 10, places=4).map(str), NUMBERS),
    "monthly": mostly(st.decimals(0, 100, places=4).map(str), NUMBERS),
    "per_request": mostly(st.decimals(0, 1, places=4).map(str), NUMBERS),
}


def _arguments_for(parameters: list[str]) -> st.SearchStrategy[Any]:
    """Plausible arguments, then (half the time) up to two fields overwritten with hostile values or unknown
    names. Arguments that are not an object at all are refused by the client library itself, so they are sent
    raw on the wire below."""
    subset = st.lists(st.sampled_from(parameters), max_size=4, unique=True) if parameters else st.just([])
    chosen = subset.flatmap(lambda names: st.fixed_dictionaries({n: PLAUSIBLE.get(n, HOSTILE) for n in names}))
    prompt = {"prompt": st.text(min_size=1, max_size=60)} if "prompt" in parameters else {}
    plausible = st.tuples(st.fixed_dictionaries({}, optional=prompt), chosen).map(lambda t: {**t[0], **t[1]})
    names = st.sampled_from([*parameters, "__proto__", "x", "", "prompt "])
    hostile = st.dictionaries(names, HOSTILE, max_size=2)
    return st.tuples(plausible, hostile, st.booleans()).map(lambda t: {**t[0], **t[1]} if t[2] else t[0])


def _parameters(live: Live) -> dict[str, list[str]]:
    tools = live.portal.call(live.client.list_tools).tools
    return {tool.name: sorted(tool.input_schema.get("properties", {})) for tool in tools}


def _check(live: Live, tool: str, arguments: Any, seen: dict[str, int]) -> None:
    result, elapsed = live.call(tool, arguments)
    assert elapsed < CALL_DEADLINE_S
    if result.is_error:
        seen["rejected"] += 1
        message = text_of(result)
        assert not bare_error(tool, result), f"{tool} crashed on {str(arguments)[:300]!r}"
        assert len(message) > len(f"Error executing tool {tool}: ") + 10, message
    else:
        seen["answered"] += 1
        assert result.structured_content is not None


@pytest.mark.parametrize("size", by_size(Fuzz(examples=200, derandomize=True), Fuzz(examples=1000, derandomize=False)))
@pytest.mark.parametrize("tool", [name for name in TOOL_NAMES if name != "set_budget"])
def test_fuzzed_arguments_get_an_answer_or_a_clear_rejection_and_never_crash_or_hang_the_server(
    tool: str, size: Fuzz, live: Live
) -> None:
    """Hypothesis-made arguments (wrong types, huge, deep, unknown, NaN, unicode): a result or a clear is_error."""
    parameters = _parameters(live)[tool]
    seen = {"answered": 0, "rejected": 0}

    @settings(
        max_examples=size.examples,
        derandomize=size.derandomize,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(arguments=_arguments_for(parameters))
    def fuzz(arguments: Any) -> None:
        _check(live, tool, arguments, seen)

    began = time.monotonic()
    fuzz()
    alive, _ = live.call("get_budget", {})
    assert not alive.is_error  # the server still answers
    Figures(f"hostile/{tool}", {**seen, "examples": size.examples, "wall_s": round(time.monotonic() - began, 1)}).show()


@pytest.mark.parametrize("size", by_size(Fuzz(examples=200, derandomize=True), Fuzz(examples=1000, derandomize=False)))
def test_set_budget_under_fuzzing_can_only_ever_lower_a_limit(size: Fuzz, budget_live: Live) -> None:
    """Whatever set_budget is sent, no limit ever goes up, and every refusal is a clear message."""
    names = ("daily", "monthly", "per_request")
    seen = {"answered": 0, "rejected": 0}

    def limits() -> dict[str, Decimal]:
        status, _ = budget_live.call("get_budget", {})
        assert status.structured_content is not None
        return {name: Decimal(str(status.structured_content[name])) for name in names}

    @settings(
        max_examples=size.examples,
        derandomize=size.derandomize,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(arguments=_arguments_for(list(names)))
    def fuzz(arguments: Any) -> None:
        before = limits()
        _check(budget_live, "set_budget", arguments, seen)
        after = limits()
        assert all(after[name] <= before[name] for name in names), (arguments, before, after)

    start = limits()
    fuzz()
    end = limits()
    assert all(end[name] <= start[name] for name in names)
    for name in names:  # and a plain raise is refused, saying who may raise it
        result, _ = budget_live.call("set_budget", {name: str(end[name] + 1)})
        assert result.is_error and "only tighten" in text_of(result) and "operator" in text_of(result)
    assert limits() == end
    Figures("hostile/set_budget", {**seen, "examples": size.examples}).show()


@pytest.mark.parametrize("size", by_size(1, 3))
@pytest.mark.parametrize("tool", ["execute", "plan_route", "compare_models", "execute_batch"])
def test_a_10_mb_prompt_is_refused_quickly_with_a_clear_message(tool: str, size: int, live: Live) -> None:
    """A 10 MB prompt fits no model: each prompt-taking tool says so in seconds and the server lives on."""
    prompt = "Lorem ipsum dolor sit amet. " * (TEN_MB // 28)
    arguments: dict[str, Any] = {
        "execute": {"prompt": prompt},
        "plan_route": {"prompt": prompt},
        "compare_models": {"prompt": prompt, "models": ["gpt-4o-mini", "mistral-nemo"]},
        "execute_batch": {"tasks": [{"prompt": prompt}]},
    }[tool]
    requests_before = live.sandbox.state.request_count
    for _ in range(size):
        result, elapsed = live.call(tool, arguments)
        if result.is_error:
            text = text_of(result)
        elif tool == "plan_route":  # it answers with the plan, empty, and why
            assert result.structured_content is not None and result.structured_content["candidates"] == []
            text = result.structured_content["no_candidates_reason"]
        else:
            text = json.dumps(result.structured_content)[:2000]
        assert elapsed < 10, elapsed
        assert "context" in text and "No model meets the constraints" in text, text[:500]
    assert live.sandbox.state.request_count == requests_before  # nothing that large was sent upstream
    assert not live.call("get_budget", {})[0].is_error


# ---------------------------------------------------------------------------------------------- the wire

GARBAGE = [
    b"garbage\n",
    b"{\n",
    b"[]\n",
    b"[1, 2, 3]\n",
    b"null\n",
    b'"a string"\n',
    b"\xff\xfe\x00\x01 not utf-8\n",
    b'{"jsonrpc": "2.0"}\n',
    b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}\n',
    b'{"jsonrpc": "2.0", "id": {"x": 1}, "method": "tools/list"}\n',
    b'{"jsonrpc": "2.0", "id": 901, "method": "no/such/method"}\n',
    b'{"jsonrpc": "2.0", "id": 902, "method": "tools/call", "params": "x"}\n',
    b'{"jsonrpc": "2.0", "id": 903, "method": "tools/call", "params": {"name": "no_such_tool", "arguments": {}}}\n',
    b'{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 424242}}\n',
    b"[" * 100_000 + b"\n",
    b'{"a": ' * 50_000 + b"\n",
    b"x" * (4 << 20) + b"\n",
    b"\n\n\n",
]
# Tool calls the wire can carry but JSON-safe clients never send: NaN/Infinity literals, lone surrogates.
ODD_CALLS: list[tuple[int, str, str]] = [
    (911, "execute", '{"prompt": "x", "max_cost": NaN}'),
    (912, "execute", '{"prompt": "x", "temperature": Infinity}'),
    (
        913,
        "execute",
        '{"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "n": NaN}]}], "seed": 1}',
    ),
    (
        914,
        "execute",
        '{"prompt": "x", "tools": [{"type": "function", "function": {"name": "f", "parameters": {"m": -Infinity}}}]}',
    ),
    (
        915,
        "plan_route",
        '{"prompt": "x", "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": '
        '{"type": 5}}}}',
    ),
    (916, "set_budget", '{"daily": NaN}'),
    (917, "list_models", '{"limit": 1e400}'),
]


async def _read_lines(stream: BufferedByteReceiveStream, answers: dict[int, dict[str, Any]], wanted: set[int]) -> None:
    while not wanted <= set(answers):
        line = await stream.receive_until(b"\n", 1 << 26)
        message = json.loads(line)
        if isinstance(message.get("id"), int):
            answers[message["id"]] = message


@pytest.mark.anyio
@pytest.mark.parametrize("size", by_size(1, 5))
async def test_garbage_on_the_stdio_wire_does_not_kill_the_server_and_a_valid_request_still_gets_an_answer(
    size: int, tmp_path: Path
) -> None:
    """Non-JSON, non-JSON-RPC, invalid UTF-8, huge and deep lines, NaN literals: the server answers what it can
    and keeps serving; the odd tool calls get clear is_error results."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    }
    async with Sandbox.running(api_key=KEY) as sandbox:
        env = server_env(tmp_path, sandbox.base_url, key=KEY)
        stderr = (tmp_path / "server.log").open("wb")
        with anyio.fail_after(120), stderr:
            async with await anyio.open_process(
                [sys.executable, *SERVE], env=env, cwd=str(tmp_path), stderr=stderr
            ) as process:
                assert process.stdin is not None and process.stdout is not None
                stdout = BufferedByteReceiveStream(process.stdout)
                answers: dict[int, dict[str, Any]] = {}
                try:
                    for line in GARBAGE:  # before the handshake
                        await process.stdin.send(line)
                    await process.stdin.send((json.dumps(initialize) + "\n").encode())
                    await _read_lines(stdout, answers, {1})
                    await process.stdin.send(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
                    wanted = {1}
                    for round_ in range(size):
                        for line in GARBAGE:
                            await process.stdin.send(line)
                        for number, tool, raw in ODD_CALLS:
                            ident = number + 100 * round_
                            await process.stdin.send(
                                f'{{"jsonrpc": "2.0", "id": {ident}, "method": "tools/call", '
                                f'"params": {{"name": "{tool}", "arguments": {raw}}}}}\n'.encode()
                            )
                            wanted.add(ident)
                        ident = 2 + round_
                        valid = {"name": "execute", "arguments": {"prompt": "still there?", "model": "gpt-4o-mini"}}
                        await process.stdin.send(
                            (
                                json.dumps({"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": valid})
                                + "\n"
                            ).encode()
                        )
                        wanted.add(ident)
                    with anyio.fail_after(60):
                        await _read_lines(stdout, answers, wanted)
                    assert process.returncode is None
                finally:
                    process.kill()
    for round_ in range(size):
        result = answers[2 + round_]["result"]
        assert result["isError"] is False and result["structuredContent"]["content"]
        for number, tool, _ in ODD_CALLS:
            odd = answers[number + 100 * round_]
            text = " ".join(part.get("text", "") for part in odd.get("result", {}).get("content", []))
            assert odd.get("result", {}).get("isError") is True, odd
            assert text.strip() != f"Error executing tool {tool}" and len(text) > 40, odd
    assert answers[901]["error"]["code"] == -32601  # an unknown method gets a JSON-RPC error, not a crash
