"""`modelyard.server.http_auth` in process: the bearer check of `BearerAuth`, and the Host/Origin allow list
`transport_security` gives the SDK for each bind."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.server.transport_security import TransportSecurityMiddleware
from starlette.requests import Request

from modelyard.server.http_auth import BearerAuth, transport_security

pytestmark = pytest.mark.anyio

TOKEN = "tok-123"


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The app behind the check: 200 for whatever reaches it."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _status_through_bearer_auth(headers: list[tuple[bytes, bytes]], query: bytes = b"") -> int:
    """The status `BearerAuth(token=TOKEN)` answers a GET /mcp carrying `headers` and `query` with."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/mcp", "query_string": query, "headers": headers}
    await BearerAuth(_ok, TOKEN)(scope, None, send)
    status: int = sent[0]["status"]
    return status


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer tok-123",
        b"bearer tok-123",
        b"BEARER tok-123",
        b"bEaReR tok-123",
        b"Bearer  tok-123",
        b"Bearer\ttok-123 ",
    ],
)
async def test_the_right_token_is_accepted_whatever_the_schemes_case_and_the_spaces_after_it(
    authorization: bytes,
) -> None:
    """RFC 7235/6750: the scheme is case-insensitive and followed by one or more spaces."""
    assert await _status_through_bearer_auth([(b"authorization", authorization)]) == 200


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer tok-124",
        b"Bearer TOK-123",
        b"Bearer tok-123x",
        b"Bearer tok",
        b"Bearertok-123",
        b"Bearer",
        b"Bearer ",
        b"tok-123",
        b"Basic tok-123",
        b"Token tok-123",
        b"",
    ],
)
async def test_a_wrong_token_another_scheme_or_no_token_is_refused(authorization: bytes) -> None:
    """The token itself stays case-sensitive and exact; only the scheme's case and the spacing are free."""
    assert await _status_through_bearer_auth([(b"authorization", authorization)]) == 401


async def test_a_token_in_the_query_string_is_not_accepted() -> None:
    """Query strings end up in logs and browser history: the token counts only in the Authorization header."""
    assert await _status_through_bearer_auth([], query=b"token=tok-123&access_token=tok-123") == 401


async def test_the_health_route_is_open_without_a_token() -> None:
    """Load balancers probe /health without credentials."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await BearerAuth(_ok, TOKEN)({"type": "http", "path": "/health", "headers": []}, None, send)
    assert sent[0]["status"] == 200


async def _sdk_verdict(bind: str, host: str, origin: str | None = None) -> int:
    """The status the SDK's own Host/Origin check gives a POST to a server bound to `bind` (200: let through)."""
    headers = [(b"host", host.encode()), (b"content-type", b"application/json")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    request = Request({"type": "http", "method": "POST", "path": "/mcp", "headers": headers})
    refusal = await TransportSecurityMiddleware(transport_security(bind)).validate_request(request, is_post=True)
    return 200 if refusal is None else refusal.status_code


LOOPBACK_BINDS = ["127.0.0.1", "127.0.0.2", "127.255.0.9", "localhost", "::1", "0:0:0:0:0:0:0:1"]


@pytest.mark.parametrize("bind", LOOPBACK_BINDS)
async def test_any_loopback_bind_refuses_a_foreign_host_or_origin(bind: str) -> None:
    """A DNS-rebinding page reaches the server as attacker.example: 421 for its Host, 403 for its Origin."""
    authority = f"[{bind}]:8765" if ":" in bind else f"{bind}:8765"
    assert await _sdk_verdict(bind, "attacker.example:8765") == 421
    assert await _sdk_verdict(bind, "attacker.example") == 421
    assert await _sdk_verdict(bind, authority, origin="http://attacker.example:8765") == 403
    assert await _sdk_verdict(bind, authority, origin="http://127.0.0.1.attacker.example:8765") == 403


@pytest.mark.parametrize("bind", LOOPBACK_BINDS)
async def test_any_loopback_bind_admits_itself_and_the_canonical_loopback_names_on_any_port(bind: str) -> None:
    """A local client names the server by the bound address, or by 127.0.0.1, localhost or [::1]."""
    authority = f"[{bind}]" if ":" in bind else bind
    for name in (authority, "127.0.0.1", "localhost", "[::1]"):
        assert await _sdk_verdict(bind, f"{name}:8765") == 200
        assert await _sdk_verdict(bind, f"{name}:1") == 200
        assert await _sdk_verdict(bind, name) == 200
        assert await _sdk_verdict(bind, f"{name}:8765", origin=f"http://{name}:8765") == 200


async def test_a_long_form_ipv6_loopback_bind_also_admits_its_short_form() -> None:
    """Bound as 0:0:0:0:0:0:0:1, the server is also [::1] (the same address, as clients usually write it)."""
    assert await _sdk_verdict("0:0:0:0:0:0:0:1", "[0:0:0:0:0:0:0:1]:8765") == 200
    assert await _sdk_verdict("0:0:0:0:0:0:0:1", "[::1]:8765", origin="http://[::1]:8765") == 200


async def test_a_bind_off_loopback_leaves_the_check_off_since_it_requires_a_token() -> None:
    """0.0.0.0 is reached under names unknown here; the bearer token (which no rebinding page has) guards it."""
    settings = transport_security("0.0.0.0")
    assert not settings.enable_dns_rebinding_protection
    assert await _sdk_verdict("0.0.0.0", "mcp.example.com", origin="https://app.example.com") == 200
