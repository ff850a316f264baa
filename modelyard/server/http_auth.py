"""Bearer-token protection for the HTTP transports (an ASGI wrapper), and the loopback rule."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from modelyard.errors import ConfigurationError

__all__ = ["BearerAuth", "check_bind", "is_loopback"]

Scope = dict[str, Any]
ASGIApp = Any


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve HTTP off loopback without a bearer token.

    Raises:
        ConfigurationError: a non-loopback host and no token.
    """
    if token is None and not is_loopback(host):
        raise ConfigurationError(
            f"Refusing to serve on {host} without a bearer token: set MODELYARD_HTTP_TOKEN (clients then "
            "send 'Authorization: Bearer <token>'), or bind to 127.0.0.1."
        )


class BearerAuth:
    """ASGI middleware: HTTP requests must carry `Authorization: Bearer <token>` (constant-time check)."""

    def __init__(self, app: ASGIApp, token: str, *, open_paths: frozenset[str] = frozenset({"/health"})) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()
        self._open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in self._open_paths:
            await self._app(scope, receive, send)
            return
        supplied = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(supplied, self._expected):
            await self._app(scope, receive, send)
            return
        await _unauthorized(send)


async def _unauthorized(send: Any) -> None:
    body = b'{"error":"unauthorized","message":"Send Authorization: Bearer <MODELYARD_HTTP_TOKEN>."}'
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b'Bearer realm="modelyard"'),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
