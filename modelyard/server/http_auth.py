"""Bearer-token protection for the HTTP transports (an ASGI wrapper), the loopback rule, and the
DNS-rebinding protection of loopback binds."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings

from modelyard.errors import ConfigurationError

__all__ = ["BearerAuth", "check_bind", "is_loopback", "transport_security"]

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


_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def transport_security(host: str) -> TransportSecuritySettings:
    """The SDK's Host/Origin check for an HTTP server bound to `host`.

    A loopback bind (any spelling: 127.0.0.2, 0:0:0:0:0:0:0:1, ...) admits only the bound host and the
    canonical loopback names, with or without a port, so a page reaching it by DNS rebinding (a foreign Host,
    421) or from a foreign origin (403) is refused. The SDK does this by itself only for the exact strings
    127.0.0.1, localhost and ::1. Any other bind needs a bearer token (`check_bind`), which a rebinding page
    cannot send, and is reached under names unknown here, so its check is off.
    """
    if not is_loopback(host):
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    names = [host, *_LOOPBACK_NAMES]
    if host != "localhost":
        names.append(ipaddress.ip_address(host).compressed)
    authorities = [f"[{name}]" if ":" in name else name for name in dict.fromkeys(names)]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[form for authority in authorities for form in (authority, f"{authority}:*")],
        allowed_origins=[
            form for authority in authorities for form in (f"http://{authority}", f"http://{authority}:*")
        ],
    )


class BearerAuth:
    """ASGI middleware: HTTP requests must carry `Authorization: Bearer <token>` (constant-time check).

    The scheme is case-insensitive and may be followed by any run of whitespace (RFC 7235, RFC 6750); the token is
    read from that header only, never from the query string.
    """

    def __init__(self, app: ASGIApp, token: str, *, open_paths: frozenset[str] = frozenset({"/health"})) -> None:
        self._app = app
        self._token = token.encode()
        self._open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in self._open_paths:
            await self._app(scope, receive, send)
            return
        supplied = _bearer_credential(dict(scope.get("headers") or []).get(b"authorization", b""))
        if supplied is not None and hmac.compare_digest(supplied, self._token):
            await self._app(scope, receive, send)
            return
        await _unauthorized(send)


def _bearer_credential(authorization: bytes) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` value: the scheme in any case, then a run of whitespace.
    None for another scheme or no token."""
    parts = authorization.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != b"bearer":
        return None
    return parts[1].strip()


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
