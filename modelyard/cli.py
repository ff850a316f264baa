"""The `modelyard` command line: serve, run, models, metrics, budget, doctor, sandbox, demo.

Imports are lazy so `--help` and `serve` start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.settings import Settings

__all__ = ["main"]


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, not {port}")
    return port


def _usd(text: str) -> Decimal:
    """An argparse type: an amount of USD, a finite number not below 0.

    `Decimal` raises `InvalidOperation`, which argparse does not catch (only `ValueError` and `TypeError`):
    `--daily abc` was a traceback.
    """
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"expected an amount of USD of 0 or more, such as 0.05, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelyard", description="Route prompts to the right OpenRouter model.")
    parser.add_argument("--config", type=Path, help="TOML settings file (default: the user config dir)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the MCP server (stdio by default)")
    serve.add_argument("--transport", choices=["stdio", "sse", "streamable-http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (off loopback needs a token)")
    serve.add_argument("--port", type=_port, default=8765, help="HTTP port (default 8765)")

    run = commands.add_parser("run", help="answer one prompt, streamed, then model, tokens, cost, fallbacks")
    run.add_argument("prompt", help="the prompt ('-' reads stdin)")
    run.add_argument("--model", default=None, help="auto, a tier, an id or a short name")
    run.add_argument("--models", nargs="*", default=[], help="fallback chain")
    run.add_argument("--system", help="system prompt")
    run.add_argument("--max-tokens", type=int)
    run.add_argument("--max-cost", type=_usd, help="USD cap for this request")
    run.add_argument("--max-cost-per-1k", type=_usd, help="USD per 1K tokens cap")
    run.add_argument(
        "--capability",
        action="append",
        default=[],
        dest="capabilities",
        choices=["vision", "tools", "json_mode", "structured_outputs", "reasoning"],
    )
    run.add_argument("--temperature", type=float)
    run.add_argument(
        "--no-stream", action="store_true", help="print the answer at the end only (as when stdout is not a terminal)"
    )

    models = commands.add_parser("models", help="list the catalog as a table")
    models.add_argument("--search", help="text in id or name")
    models.add_argument("--capability", action="append", default=[], dest="capabilities")
    models.add_argument("--tier", choices=["economy", "balanced", "premium"])
    models.add_argument("--sort", choices=["quality", "price", "context", "name"], default="quality")
    models.add_argument("--limit", type=int, default=40)

    metrics = commands.add_parser("metrics", help="requests, spend, cache savings, per-model latency")
    metrics.add_argument("--window", choices=["today", "7d", "all"], default="today")

    budget = commands.add_parser("budget", help="show the budget; tighten it, or clear tightenings")
    budget.add_argument("--daily", type=_usd)
    budget.add_argument("--monthly", type=_usd)
    budget.add_argument("--per-request", type=_usd)
    budget.add_argument("--reset", action="store_true", help="drop limits tightened at run time (set_budget)")

    commands.add_parser("doctor", help="check key, credit, catalog, upstream latency and store")

    sandbox = commands.add_parser("sandbox", help="run the local OpenRouter-compatible sandbox upstream")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sandbox.add_argument("--port", type=_port, default=8399, help="port (default 8399; 0 picks a free one)")
    sandbox.add_argument("--catalog", help="a /models JSON file to serve instead of the built-in catalog")
    sandbox.add_argument("--key", default=None, help="the API key it accepts (default sk-or-v1-sandbox)")

    demo = commands.add_parser("demo", help="offline tour: sandbox + server over stdio + a real MCP client")
    demo.add_argument("--verbose", action="store_true", help="show the server's log lines")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    from modelyard.settings import load_settings

    return load_settings(args.config)


def _cmd_serve(args: argparse.Namespace) -> None:
    import gc

    # Importing the server (the MCP SDK's ~550 pydantic models, then modelyard's) allocates objects that
    # live as long as the process: the collector, run ~200 times meanwhile, frees next to nothing and costs
    # about a tenth of the cold start. So it is off until they are frozen (out of its reach, as `tune_gc`
    # does after the build): enabled over them unfrozen, its next young collection would walk them all.
    enabled = gc.isenabled()
    gc.disable()
    try:
        from modelyard.server import serve

        settings = _settings(args)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    if settings.debug:  # MODELYARD_DEBUG=1: main() configured INFO before the settings were read
        logging.getLogger().setLevel(logging.DEBUG)
    serve(settings, args.transport, host=args.host, port=args.port)


def _cmd_sandbox(args: argparse.Namespace) -> None:
    from modelyard.sandbox import serve

    serve(host=args.host, port=args.port, catalog_path=args.catalog, api_key=args.key)


def _cmd_demo(args: argparse.Namespace) -> None:
    import anyio

    from modelyard.demo import run_demo

    anyio.run(run_demo, args.verbose)


def _async_command(name: str) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        import anyio

        from modelyard import commands

        anyio.run(getattr(commands, name), _settings(args), args)

    return run


_HANDLERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "serve": _cmd_serve,
    "sandbox": _cmd_sandbox,
    "demo": _cmd_demo,
    "run": _async_command("run"),
    "models": _async_command("models"),
    "metrics": _async_command("metrics"),
    "budget": _async_command("budget"),
    "doctor": _async_command("doctor"),
}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `modelyard` console script and `python -m modelyard`."""
    from modelyard.errors import ModelyardError

    args = _parser().parse_args(argv)
    quiet = args.command in ("run", "models", "metrics", "budget", "doctor", "demo")
    level = logging.WARNING if quiet else logging.INFO
    logging.basicConfig(stream=sys.stderr, level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            _HANDLERS[args.command](args)
    except ModelyardError as exc:
        print(f"modelyard: {exc}", file=sys.stderr)
        sys.exit(1)
