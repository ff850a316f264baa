"""The `modelyard` command line: serve, run, models, metrics, budget, doctor, sandbox, demo.

Imports are lazy so `--help` and `serve` start fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.settings import Settings

    _Commands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_INTERRUPTED", "main"]

EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT) ended a one-shot command: 128 + SIGINT, as a shell reports it."""
EXIT_BROKEN_PIPE = 141
"""The reader of stdout went away (`modelyard metrics | head -5`): 128 + SIGPIPE, as a shell reports it."""
_STOPPED_BY_CTRL_C = frozenset({"serve", "sandbox"})
"""Servers, which run until interrupted: Ctrl-C is their ordinary end (exit 0)."""
_MCP_TOOLS_NAMED = ("list_models", "plan_route")
_CHATTY_LIBRARIES = ("httpx2", "httpcore2")
_CLI_HINT = "From the command line, `modelyard models` lists the model ids with their prices, context and capabilities."


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, not {port}")
    return port


def _count(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {value}")
    return value


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


def _add_run(commands: _Commands) -> argparse.ArgumentParser:
    run = commands.add_parser("run", help="answer one prompt, streamed, then model, tokens, cost, fallbacks")
    # Optional here: `run --models A B "prompt"` hands the prompt to --models, and `_settle_prompt` takes it back.
    run.add_argument("prompt", nargs="?", help="the prompt, required ('-' reads stdin); may also follow --models A B")
    run.add_argument("--model", default=None, help="auto, a tier, an id or a short name")
    run.add_argument(
        "--models",
        nargs="*",
        action="extend",
        default=[],
        metavar="MODEL",
        help="fallback chain: ids separated by spaces or commas (the option may be repeated)",
    )
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
    return run


def _settle_prompt(args: argparse.Namespace, run: argparse.ArgumentParser) -> None:
    """Give `run` its prompt and its chain of `--models`.

    `--models` takes every value up to the next option, so in `run --models A B "prompt"` the prompt is
    its last value: with no prompt before it, that value is the prompt when a model is left besides it
    and it cannot be a model reference (it has a space, or is `-` for stdin). `run --models A B` with the
    prompt forgotten would otherwise send B, a model id, as the question, and bill it. Values may also be
    comma-separated lists.
    """
    if args.prompt is None and len(args.models) > 1 and _prompt_like(args.models[-1]):
        args.prompt = args.models.pop()
    if args.prompt is None:
        run.error(
            "the following arguments are required: prompt "
            '(after --models, a one-word prompt needs "--" before it: run --models A B -- hello)'
        )
    args.models = [model.strip() for value in args.models for model in value.split(",") if model.strip()]


def _prompt_like(value: str) -> bool:
    """Whether a `--models` value can only be a prompt: `-` (stdin) or words (no model id has a space)."""
    return value == "-" or any(ch.isspace() for ch in value.strip())


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The `modelyard` parser, and its `run` subparser (for `_settle_prompt`)."""
    parser = argparse.ArgumentParser(prog="modelyard", description="Route prompts to the right OpenRouter model.")
    parser.add_argument("--config", type=Path, help="TOML settings file (default: the user config dir)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the MCP server (stdio by default)")
    serve.add_argument("--transport", choices=["stdio", "sse", "streamable-http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (off loopback needs a token)")
    serve.add_argument("--port", type=_port, default=8765, help="HTTP port (default 8765)")

    run = _add_run(commands)

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

    ledger = commands.add_parser("ledger", help="export the ledger's rows as CSV or JSON lines (stdout)")
    ledger.add_argument("--window", choices=["today", "7d", "all"], default="all", help="rows since (default all)")
    ledger.add_argument("--format", choices=["csv", "jsonl"], default="csv", dest="fmt")
    ledger.add_argument("--limit", type=_count, default=None, help="only the newest N rows")

    commands.add_parser("doctor", help="check key, credit, catalog, upstream latency and store")

    sandbox = commands.add_parser("sandbox", help="run the local OpenRouter-compatible sandbox upstream")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sandbox.add_argument("--port", type=_port, default=8399, help="port (default 8399; 0 picks a free one)")
    sandbox.add_argument("--catalog", help="a /models JSON file to serve instead of the built-in catalog")
    sandbox.add_argument("--key", default=None, help="the API key it accepts (default sk-or-v1-sandbox)")

    demo = commands.add_parser("demo", help="offline tour: sandbox + server over stdio + a real MCP client")
    demo.add_argument("--verbose", action="store_true", help="show the server's log lines")
    return parser, run


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser, run = _parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        _settle_prompt(args, run)
    return args


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
        configure_logging(quiet=False, debug=True)
    serve(settings, args.transport, host=args.host, port=args.port)


def _cmd_sandbox(args: argparse.Namespace) -> None:
    from modelyard.errors import ConfigurationError
    from modelyard.sandbox import serve
    from modelyard.sandbox.__main__ import cannot_listen

    try:
        serve(host=args.host, port=args.port, catalog_path=args.catalog, api_key=args.key)
    except OSError as exc:
        reason = cannot_listen(exc, args.host, args.port)
        if reason is None:
            raise
        raise ConfigurationError(reason) from None


def _cmd_demo(args: argparse.Namespace) -> None:
    import anyio

    from modelyard.demo import run_demo

    anyio.run(run_demo, args.verbose)


def _async_command(name: str, module: str = "modelyard.commands") -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        import importlib

        import anyio

        anyio.run(getattr(importlib.import_module(module), name), _settings(args), args)

    return run


_HANDLERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "serve": _cmd_serve,
    "sandbox": _cmd_sandbox,
    "demo": _cmd_demo,
    "run": _async_command("run", "modelyard.run_command"),
    "models": _async_command("models"),
    "metrics": _async_command("metrics"),
    "budget": _async_command("budget"),
    "doctor": _async_command("doctor", "modelyard.doctor"),
    "ledger": _async_command("ledger", "modelyard.ledger_export"),
}


def _for_the_cli(message: str) -> str:
    """An error's message, with the CLI's own command where it names an MCP tool (`list_models`, `plan_route`)."""
    if any(tool in message for tool in _MCP_TOOLS_NAMED):
        return f"{message} {_CLI_HINT}"
    return message


def _interrupted(command: str) -> None:
    """Ctrl-C: a server's ordinary end (exit 0); any other command's is a failure, which a script must see."""
    if command in _STOPPED_BY_CTRL_C:
        return
    print("modelyard: interrupted", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)


def _reader_gone() -> None:
    """Stdout's reader went away: exit quietly, as the `signal` module's docs advise ("Note on SIGPIPE").

    What is still buffered for stdout goes to /dev/null, or its flush at exit would fail again (a second,
    uncatchable BrokenPipeError message).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(EXIT_BROKEN_PIPE)


def configure_logging(*, quiet: bool, debug: bool = False) -> None:
    """Log to stderr (stdout may be the MCP protocol): warnings only for `quiet` commands, INFO for the servers,
    DEBUG with `debug` (MODELYARD_DEBUG=1).

    The HTTP client libraries log every upstream request at INFO; they say only warnings unless `debug`, as
    modelyard's own chat path logs its requests at DEBUG.
    """
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(stream=sys.stderr, level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `modelyard` console script and `python -m modelyard`.

    Exits 1 on an error the user can fix (the message on stderr), 2 on a usage error, 130 when Ctrl-C
    ends a command other than `serve` or `sandbox`, and 141 when stdout's reader closes it early.
    """
    from modelyard.errors import ModelyardError

    args = _parse(argv)
    configure_logging(quiet=args.command in ("run", "models", "metrics", "budget", "doctor", "demo", "ledger"))
    try:
        _HANDLERS[args.command](args)
        sys.stdout.flush()  # a reader that left is found here, not in the flush at exit, which cannot be caught
    except KeyboardInterrupt:
        _interrupted(args.command)
    except BrokenPipeError:
        _reader_gone()
    except ModelyardError as exc:
        print(f"modelyard: {_for_the_cli(str(exc))}", file=sys.stderr)
        sys.exit(1)
