"""What every tool shares: the AppContext, error translation, and progress/keep-alive reporting."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from modelyard.errors import InsufficientCreditsError, ModelNotFoundError, ModelyardError, UpstreamError
from modelyard.routing.events import Restart, StreamEvent, TextDelta
from modelyard.server.context import AppContext, AppContextOnDemand

if TYPE_CHECKING:
    from modelyard.routing.router import Router

__all__ = ["Progress", "app_of", "caller_of", "check_model", "compact", "tool_errors", "with_keepalive"]

T = TypeVar("T")

log = logging.getLogger(__name__)
KEEPALIVE_S = 5.0


async def app_of(ctx: Context[AppContextOnDemand]) -> AppContext:
    """The server's opened AppContext (opened by the first call that asks).

    Raises:
        ToolError: the client or store could not be opened (the message says why).
    """
    with tool_errors():
        return await ctx.request_context.lifespan_context.get()


async def check_model(router: Router, reference: str, argument: str) -> None:
    """Refuse, before anything is spent, a model reference that names no model or several.

    `reference` is read the way the router reads `model`: an id, a short name, a tier or 'auto'.

    Raises:
        ToolError: naming `argument` and the closest model ids.
        ModelyardError: no catalog could be fetched (`tool_errors` translates it).
    """
    from modelyard.routing.resolve import resolve_reference  # here: the catalog modules stay out of cold start

    try:
        resolve_reference(await router.catalogs.current(), reference)
    except ModelNotFoundError as exc:
        raise ToolError(f"{argument}: {exc}") from None


@contextmanager
def tool_errors() -> Iterator[None]:
    """Turn the failures a caller can act on into `ToolError` with a message that says what to change."""
    try:
        yield
    except InsufficientCreditsError as exc:
        raise ToolError(
            f"OpenRouter key out of credit: {exc.message}. Add credit or raise the key's limit "
            "at https://openrouter.ai/settings/keys."
        ) from None
    except (ModelyardError, UpstreamError) as exc:
        raise ToolError(str(exc)) from None
    except ValidationError as exc:
        raise ToolError(_validation_message(exc)) from None


def caller_of(ctx: Context[AppContextOnDemand]) -> str:
    """Who made the call, for the log: the MCP client's name and version as it gave them, and over HTTP its
    address and the first 8 characters of its session id. Never a header that carries a credential.

    All of it is what the client says of itself (an identity claim, not proof), cut short and printable.
    """
    params = ctx.request_context.session.client_params
    info = params.client_info if params is not None else None
    parts = [f"MCP client {_printable(info.name)!r} {_printable(info.version)}" if info else "an MCP client"]
    request = ctx.request_context.request
    peer = getattr(request, "client", None)
    if peer is not None and getattr(peer, "host", None):
        parts.append(f"from {_printable(str(peer.host))}")
    headers = ctx.headers or {}
    if forwarded := headers.get("x-forwarded-for"):
        parts.append(f"forwarded for {_printable(forwarded)}")
    if session_id := headers.get("mcp-session-id"):
        parts.append(f"session {_printable(session_id)[:8]}…")
    return " ".join(parts)


def _printable(text: str, limit: int = 64) -> str:
    """`text` for one log line: control characters replaced, at most `limit` characters."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _validation_message(exc: ValidationError) -> str:
    problems = [f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()[:5]]
    return "Invalid arguments: " + "; ".join(problems)


class Progress:
    """Sends streamed text and keep-alives as progress notifications (a no-op without a progress token)."""

    def __init__(self, ctx: Context[AppContextOnDemand]) -> None:
        self._ctx = ctx
        self._count = 0
        self._lock: anyio.Lock | None = None  # made at the first note: most calls send none
        self.chars = 0

    async def send(self, message: str) -> None:
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            self._count += 1
            try:
                await self._ctx.report_progress(self._count, message=message)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                log.debug("progress not delivered: the client went away")

    async def on_event(self, event: StreamEvent) -> None:
        """Forward router stream events: text as it arrives, and fallbacks as they happen."""
        if isinstance(event, TextDelta):
            self.chars += len(event.text)
            await self.send(event.text)
        elif isinstance(event, Restart):
            self.chars = 0  # the text so far is void: the keep-alive notes count the new answer's
            await self.send(f"\n[{event.failed_model} failed ({event.reason[:120]}); restarting on the next model]\n")

    async def note(self) -> None:
        """The keep-alive note: still working, and how much text has streamed."""
        await self.send(f"working… ({self.chars} characters so far)")


async def with_keepalive(
    app: AppContext, reporter: Progress, work: Callable[[], Awaitable[T]], *, every_s: float | None = None
) -> T:
    """Await `work()` while a keep-alive note goes out every few seconds, so hosts' 60 s timeouts don't fire.

    `every_s` None means `KEEPALIVE_S`, read at call time. The server's one keep-alive task sends the
    notes (`modelyard.server.keepalive`), so a call that ends before its first note costs nothing more.
    """
    async with app.keepalives.track(reporter.note, KEEPALIVE_S if every_s is None else every_s):
        return await work()


def compact(value: Any, limit: int = 2000) -> str:
    """A short text of `value` for messages."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
