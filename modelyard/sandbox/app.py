"""The sandbox server: routing, the `Sandbox` handle, and the blocking `serve()` for the CLI."""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import anyio

from modelyard.sandbox.api import handle_get
from modelyard.sandbox.catalog import Catalog
from modelyard.sandbox.chat import handle_chat
from modelyard.sandbox.control import handle_control, is_loopback
from modelyard.sandbox.http import HttpServer, Reply, Request
from modelyard.sandbox.state import DEFAULT_API_KEY, SandboxConfig, SandboxState, mask_key
from modelyard.sandbox.wire import error_response

__all__ = ["API_PREFIX", "Sandbox", "serve"]

API_PREFIX = "/api/v1"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Sandbox:
    """A running sandbox: where it listens and its in-process state.

    Attributes:
        state: faults, ledger, key limit, endpoint stats and config, changeable while it runs.
        host: the address it listens on.
        port: the bound port (the free one picked when asked for port 0).
    """

    def __init__(self, state: SandboxState, host: str, port: int) -> None:
        self.state = state
        self.host = host
        self.port = port

    @property
    def base_url(self) -> str:
        """The OpenRouter-compatible base URL, e.g. `http://127.0.0.1:PORT/api/v1`."""
        return f"http://{_url_host(self.host)}:{self.port}{API_PREFIX}"

    @property
    def control_url(self) -> str:
        """The control API's base URL, e.g. `http://127.0.0.1:PORT/_sandbox`."""
        return f"http://{_url_host(self.host)}:{self.port}/_sandbox"

    @property
    def api_key(self) -> str:
        """The bearer key the sandbox accepts."""
        return self.state.api_key

    @classmethod
    @asynccontextmanager
    async def running(
        cls,
        *,
        api_key: str = DEFAULT_API_KEY,
        catalog_path: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        config: SandboxConfig | None = None,
    ) -> AsyncIterator[Sandbox]:
        """Serve a sandbox for the duration of the `async with` block.

        Args:
            api_key: the only bearer key accepted.
            catalog_path: a `/models`-shaped JSON file; None uses the packaged catalog.
            host: the address to listen on (loopback by default).
            port: the port, 0 for a free one (see `Sandbox.port`).
            config: initial run-time settings (`SandboxConfig`).
        """
        state = SandboxState(Catalog.load(catalog_path), api_key=api_key, config=config)
        server = HttpServer(lambda request: route(state, request), on_connect=state.count_connection)
        bound = await server.bind(host, port)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(server.serve_forever)
                try:
                    yield cls(state, host, bound)
                finally:
                    group.cancel_scope.cancel()
        except BaseExceptionGroup as errors:
            # Only the body of the `async with` can fail here: re-raise its error as it was.
            if len(errors.exceptions) == 1:
                raise errors.exceptions[0] from None
            raise


async def route(state: SandboxState, request: Request) -> Reply:
    """Dispatch one request to the control API or the OpenRouter API."""
    path = request.path.rstrip("/") or "/"
    if path.startswith("/_sandbox/"):
        return handle_control(state, request)
    if not path.startswith(API_PREFIX + "/"):
        return error_response(404, "Not Found", user_id=False)
    sub = path[len(API_PREFIX) :]
    if sub == "/chat/completions":
        if request.method != "POST":
            return error_response(405, "Method Not Allowed", user_id=False)
        return await handle_chat(state, request)
    if request.method != "GET":
        return error_response(405, "Method Not Allowed", user_id=False)
    return handle_get(state, request, sub)


def describe(sandbox: Sandbox, *, default_key: bool) -> str:
    """The one line `serve()` prints: the URL, the key to use and the control API."""
    key = f"API key {sandbox.api_key} (the default)" if default_key else f"API key {mask_key(sandbox.api_key)}"
    return f"modelyard sandbox on {sandbox.base_url} - {key} - control API {sandbox.control_url}/"


async def run_until_cancelled(
    *,
    host: str,
    port: int,
    catalog_path: str | Path | None,
    api_key: str | None,
    on_ready: Callable[[Sandbox], None],
) -> None:
    """Start a sandbox, call `on_ready`, and serve until cancelled."""
    async with Sandbox.running(
        api_key=api_key or DEFAULT_API_KEY, catalog_path=catalog_path, host=host, port=port
    ) as sandbox:
        on_ready(sandbox)
        await anyio.sleep_forever()


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    catalog_path: str | None = None,
    api_key: str | None = None,
) -> None:
    """Run a sandbox in the foreground (for `modelyard sandbox`) until interrupted.

    Prints one line to stderr with the base URL and the key to use. `api_key` None means the
    default key `sk-or-v1-sandbox`, and the line says so.
    """

    def announce(sandbox: Sandbox) -> None:
        print(describe(sandbox, default_key=api_key is None), file=sys.stderr, flush=True)
        if not is_loopback(host):
            print("warning: the sandbox is reachable beyond this machine", file=sys.stderr, flush=True)

    run = functools.partial(
        run_until_cancelled, host=host, port=port, catalog_path=catalog_path, api_key=api_key, on_ready=announce
    )
    with suppress(KeyboardInterrupt):
        anyio.run(run)
