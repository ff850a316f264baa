"""`python -m modelyard.sandbox --port P [--host H] [--catalog FILE] [--key K]`.

Once listening it prints `SANDBOX_URL=http://HOST:PORT/api/v1` on stdout (for a parent process to
read; `--port 0` picks a free port) and a human-readable line on stderr, then serves until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys

import anyio

from modelyard.sandbox.app import Sandbox, describe, run_until_cancelled


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modelyard.sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0 picks a free one)")
    parser.add_argument("--catalog", default=None, help="a /models-shaped JSON file (default: built-in)")
    parser.add_argument("--key", default=None, help="the API key to accept (default sk-or-v1-sandbox)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the flags and serve until interrupted."""
    args = _parser().parse_args(argv)

    def announce(sandbox: Sandbox) -> None:
        print(f"SANDBOX_URL={sandbox.base_url}", flush=True)
        print(describe(sandbox, default_key=args.key is None), file=sys.stderr, flush=True)

    run = functools.partial(
        run_until_cancelled,
        host=args.host,
        port=args.port,
        catalog_path=args.catalog,
        api_key=args.key,
        on_ready=announce,
    )
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run)


if __name__ == "__main__":
    main()
