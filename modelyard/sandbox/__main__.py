"""`python -m modelyard.sandbox --port P [--host H] [--catalog FILE] [--key K]`.

Once listening it prints `SANDBOX_URL=http://HOST:PORT/api/v1` on stdout (for a parent process to
read; `--port 0` picks a free port) and a human-readable line on stderr, then serves until killed. A
port already in use is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import sys

import anyio

from modelyard.sandbox.app import Sandbox, describe, run_until_cancelled


def cannot_listen(exc: OSError, host: str, port: int) -> str | None:
    """The one line to print when binding `host:port` failed (the port is taken or needs privileges, the
    host is no address of this machine); None for any other OSError. Shared with `modelyard sandbox` (both
    ended in a 40-line traceback).
    """
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen: {address} is already in use; pass --port 0 to pick a free port, or choose another --port"
        )
    if exc.errno == errno.EACCES:
        return f"cannot listen: {address} needs privileges (ports below 1024 do); pass --port 0 to pick a free port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen: {host} is not an address of this machine; use --host 127.0.0.1"
    return None


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
    try:
        with contextlib.suppress(KeyboardInterrupt):
            anyio.run(run)
    except OSError as exc:
        reason = cannot_listen(exc, args.host, args.port)
        if reason is None:
            raise
        print(f"python -m modelyard.sandbox: {reason}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
