"""The clients under test, each an async context manager yielding `call() -> answer text`.

Every contender sends the same body (`model`, `messages`, `max_tokens=16`) to the same sandbox and
decodes the whole JSON answer, so they do the same work. Optional libraries (aiohttp, httpx-aiohttp,
LiteLLM) are imported inside their factory: a missing one makes only that contender unavailable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import (
    FALLBACK_MODEL,
    KEY,
    MESSAGES,
    MODEL,
    installed,
    machine,
    parser,
    publish,
    run_worker,
    sandbox_process,
)

Call = Callable[[], Awaitable[str]]
Factory = Callable[[str], contextlib.AbstractAsyncContextManager[Call]]


@dataclass
class Prompt:
    """The conversation every contender sends: `MESSAGES`, unless `bench_long` swaps in a longer one."""

    messages: list[dict[str, Any]]
    body: dict[str, Any] = field(init=False)  # the raw clients' JSON body, built once per conversation

    def __post_init__(self) -> None:
        self.use(self.messages)

    def use(self, messages: list[dict[str, Any]]) -> None:
        """Send `messages` from now on."""
        self.messages = messages
        self.body = {"model": MODEL, "messages": messages, "max_tokens": 16}


PROMPT = Prompt(MESSAGES)
AUTH = {"Authorization": f"Bearer {KEY}"}

# What each contender needs installed (distribution names).
REQUIRES: dict[str, tuple[str, ...]] = {
    "aiohttp": ("aiohttp",),
    "httpx2": (),
    "httpx2-tuned": (),
    "httpx2+aiohttp": ("aiohttp", "httpx-aiohttp"),
    "httpx2+AiohttpTransport": ("aiohttp",),
    "litellm": ("litellm",),
    "modelyard": (),
    "modelyard[httpx2-tuned]": (),
    "modelyard[aiohttp]": ("aiohttp", "httpx-aiohttp"),
}
DESCRIPTIONS = {
    "aiohttp": "raw `aiohttp.ClientSession()` (default connector, limit 100)",
    "httpx2": "raw `httpx2.AsyncClient()` (default limits: 100 connections, 20 kept alive)",
    "httpx2-tuned": "raw `httpx2.AsyncClient(limits=Limits(max_connections=256, max_keepalive_connections=256))`",
    "httpx2+aiohttp": "raw `httpx2.AsyncClient(transport=httpx_aiohttp.httpx2.AiohttpTransport())` (httpx-aiohttp)",
    "httpx2+AiohttpTransport": "raw `httpx2.AsyncClient(transport=modelyard.openrouter.transport.AiohttpTransport())`",
    "litellm": "LiteLLM `Router` (openrouter/ deployment at the sandbox, a fallback list configured)",
    "modelyard": "modelyard `Router.execute` in-process, SQLite ledger on, cache off, default client stack "
    "(chat calls straight through aiohttp via modelyard's `AiohttpTransport`, no httpx2 objects built)",
    "modelyard[httpx2-tuned]": "modelyard `Router` forced onto the pure httpx2 pool (256/256), all via httpx2",
    "modelyard[aiohttp]": "modelyard `Router` forced onto httpx_aiohttp's AiohttpTransport, all via httpx2",
}


def missing(name: str) -> list[str]:
    """The distributions contender `name` needs that are not installed (none for one `REQUIRES` omits)."""
    return [dist for dist in REQUIRES.get(name, ()) if not installed(dist)]


def installed_only(wanted: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The wanted contenders that can run, and the skipped ones with what they miss (each said on stdout)."""
    skipped = {name: dists for name in wanted if (dists := missing(name))}
    for name, dists in skipped.items():
        print(f"skipping {name}: not installed ({', '.join(dists)}); `pip install -e '.[bench]'` adds it")
    return [name for name in wanted if name not in skipped], skipped


def side_by_side_parser(description: str, sizes_flag: str, contenders: Sequence[str]) -> argparse.ArgumentParser:
    """The flags of a script that runs each of `contenders` in a worker process (`--<sizes_flag>` is the worker's)."""
    p = parser(description)
    p.add_argument("--rounds", type=int, default=None, help="rounds per contender (default 3; 1 with --smoke)")
    p.add_argument("--only", nargs="*", default=None, choices=list(contenders), help="contenders (default all)")
    for hidden in ("--worker", "--url", f"--{sizes_flag}"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--sandbox-pid", type=int, help=argparse.SUPPRESS)
    return p


def run_rounds(
    module: str, contenders: list[str], sizes_flag: str, sizes: dict[str, Any], rounds: int
) -> dict[str, list[dict[str, Any]]]:
    """Each contender's figures from `rounds` runs of `module`'s worker, each in a fresh interpreter, against
    one sandbox process."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    with sandbox_process() as sandbox:
        for index in range(rounds):
            # Rotate the order each round so no contender always runs first (or last) on a noisy machine.
            order = contenders[index % len(contenders) :] + contenders[: index % len(contenders)]
            for name in order:
                args = [
                    "--worker", name, "--url", sandbox.url, "--sandbox-pid", str(sandbox.pid),
                    f"--{sizes_flag}", json.dumps(sizes),
                ]  # fmt: skip
                runs[name].append(run_worker(module, args, timeout_s=900))
                print(f"round {index + 1}/{rounds}: {name} done", flush=True)
    return runs


def run_side_by_side(
    args: argparse.Namespace,
    *,
    name: str,
    title: str,
    sizes: dict[str, Any],
    default: Sequence[str],
    measure: Callable[[list[str], dict[str, Any], int], dict[str, Any]],
    render: Callable[[dict[str, Any], dict[str, list[str]], dict[str, Any], int], str],
) -> None:
    """Measure the installed contenders (`--only`, else `default`) in rounds and publish the section."""
    rounds = args.rounds or (1 if args.smoke else 3)
    contenders, skipped = installed_only(args.only or default)
    started = time.monotonic()
    results = measure(contenders, sizes, rounds)
    figures = {"machine": machine(), "sizes": sizes, "rounds": rounds, "results": results, "skipped": skipped}
    publish(args, name, title, render(results, skipped, sizes, rounds), figures)
    print(f"({time.monotonic() - started:.0f} s)")


# ---------------------------------------------------------------------------------------- raw clients


@contextlib.asynccontextmanager
async def raw_aiohttp(url: str) -> AsyncIterator[Call]:
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def call() -> str:
            async with session.post(f"{url}/chat/completions", json=PROMPT.body, headers=AUTH) as response:
                response.raise_for_status()
                data = await response.json()
            return str(data["choices"][0]["message"]["content"])

        yield call


@contextlib.asynccontextmanager
async def _raw_httpx2(client: Any, url: str) -> AsyncIterator[Call]:
    async with client:

        async def call() -> str:
            response = await client.post(f"{url}/chat/completions", json=PROMPT.body, headers=AUTH)
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"])

        yield call


def raw_httpx2(url: str) -> contextlib.AbstractAsyncContextManager[Call]:
    import httpx2

    return _raw_httpx2(httpx2.AsyncClient(), url)


def raw_httpx2_tuned(url: str) -> contextlib.AbstractAsyncContextManager[Call]:
    import httpx2

    limits = httpx2.Limits(max_connections=256, max_keepalive_connections=256)
    return _raw_httpx2(httpx2.AsyncClient(limits=limits), url)


def raw_httpx2_own_transport(url: str) -> contextlib.AbstractAsyncContextManager[Call]:
    import httpx2

    from modelyard.openrouter.transport import AiohttpTransport

    return _raw_httpx2(httpx2.AsyncClient(transport=AiohttpTransport()), url)


def raw_httpx2_aiohttp(url: str) -> contextlib.AbstractAsyncContextManager[Call]:
    import httpx2
    from httpx_aiohttp.httpx2 import AiohttpTransport

    return _raw_httpx2(httpx2.AsyncClient(transport=AiohttpTransport()), url)


# ---------------------------------------------------------------------------------------- LiteLLM


@contextlib.asynccontextmanager
async def litellm_router(url: str) -> AsyncIterator[Call]:
    # Offline: the bundled price map, no telemetry, no debug banners.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    import litellm
    from litellm import Router

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    deployments = [
        {"model_name": "primary", "litellm_params": {"model": f"openrouter/{MODEL}", "api_base": url, "api_key": KEY}},
        {
            "model_name": "fallback",
            "litellm_params": {"model": f"openrouter/{FALLBACK_MODEL}", "api_base": url, "api_key": KEY},
        },
    ]
    router = Router(model_list=deployments, fallbacks=[{"primary": ["fallback"]}])

    async def call() -> str:
        response = await router.acompletion(model="primary", messages=PROMPT.messages, max_tokens=16)
        return str(response.choices[0].message.content)

    try:
        yield call
    finally:
        with contextlib.suppress(Exception):
            router.reset()


# ---------------------------------------------------------------------------------------- modelyard


@contextlib.asynccontextmanager
async def modelyard_router(url: str, stack: str = "default", *, stream: bool = False) -> AsyncIterator[Any]:
    """A `Router` over a fresh SQLite ledger; yields the router itself (callers build their calls)."""
    from modelyard.openrouter import OpenRouterClient
    from modelyard.routing.router import Router
    from modelyard.settings import BudgetSettings, CacheSettings, Settings
    from modelyard.store import SQLiteStore

    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        db = Path(tmp) / "ledger.db"
        settings = Settings(
            openrouter_api_key=KEY,
            openrouter_base_url=url,
            store=f"sqlite:///{db}",
            cache=CacheSettings(mode="off"),
            budget=BudgetSettings(daily=Decimal(1000), monthly=Decimal(10000)),
        )
        kwargs: dict[str, Any] = {}
        if stack == "httpx2-tuned":
            import httpx2

            kwargs["transport"] = httpx2.AsyncHTTPTransport(
                limits=httpx2.Limits(max_connections=256, max_keepalive_connections=256)
            )
        elif stack == "aiohttp":
            from httpx_aiohttp.httpx2 import AiohttpTransport

            kwargs["transport"] = AiohttpTransport()
        store = SQLiteStore(db)
        async with OpenRouterClient(KEY, base_url=url, **kwargs) as client:
            router = Router(client, store, settings)
            try:
                yield router
            finally:
                await store.aclose()


@contextlib.asynccontextmanager
async def _modelyard_calls(url: str, stack: str) -> AsyncIterator[Call]:
    from modelyard.routing.request import RouteRequest

    async with modelyard_router(url, stack) as router:

        async def call() -> str:
            result = await router.execute(RouteRequest(messages=PROMPT.messages, model=MODEL, max_tokens=16))
            return str(result.content)

        call.router = router  # type: ignore[attr-defined]  # for the ledger check after the run
        yield call


def factory(name: str) -> Factory:
    """The context-manager factory of a contender, by name."""
    table: dict[str, Factory] = {
        "aiohttp": raw_aiohttp,
        "httpx2": raw_httpx2,
        "httpx2-tuned": raw_httpx2_tuned,
        "httpx2+aiohttp": raw_httpx2_aiohttp,
        "httpx2+AiohttpTransport": raw_httpx2_own_transport,
        "litellm": litellm_router,
        "modelyard": lambda url: _modelyard_calls(url, "default"),
        "modelyard[httpx2-tuned]": lambda url: _modelyard_calls(url, "httpx2-tuned"),
        "modelyard[aiohttp]": lambda url: _modelyard_calls(url, "aiohttp"),
    }
    return table[name]
