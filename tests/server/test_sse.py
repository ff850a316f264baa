"""`modelyard.server.sse`: the SSE app's connections are served only while its lifespan holds the context,
and a response the SDK's transport leaves open is ended (served over real loopback HTTP, and stopped with
clients connected, in `test_http_transports.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from mcp.server.lowlevel import Server
from mcp.server.sse import SseServerTransport
from starlette.types import Message

from modelyard.server.sse import MESSAGE_PATH, SseConnections, _Response

pytestmark = pytest.mark.anyio


async def _nothing_received() -> Message:
    raise AssertionError("the connection was read")


async def _nothing_sent(message: Message) -> None:
    raise AssertionError(f"the connection was answered: {message}")


async def test_a_connection_arriving_while_the_apps_lifespan_is_not_running_is_refused_before_it_is_served() -> None:
    """Without the lifespan (an app served with `lifespan="off"`, or after it ended) there is no context to
    serve a connection with: it fails at once, saying so, rather than serving tools that have none."""
    connections = SseConnections(Server("t"), SseServerTransport(MESSAGE_PATH))
    scope = {"type": "http", "method": "GET", "path": "/sse", "headers": []}
    async with connections.run():
        pass
    with pytest.raises(RuntimeError, match="lifespan is not running"):
        await connections(scope, _nothing_received, _nothing_sent)


START: Message = {"type": "http.response.start", "status": 200, "headers": []}
CHUNK: Message = {"type": "http.response.body", "body": b"event: endpoint\r\n\r\n", "more_body": True}
LAST: Message = {"type": "http.response.body", "body": b"", "more_body": False}


async def test_ending_a_connections_response_sends_its_last_message_only_to_one_begun_and_left_open() -> None:
    """When the server stops, the SDK's transport returns with its response open (sse-starlette cancels the
    streaming): `end()` then sends the empty last body message, and nothing to a response never begun or
    already ended (uvicorn refuses a message after the last one)."""
    sent: dict[str, list[Message]] = {"open": [], "ended": [], "never": []}
    for name, messages in (("open", [START, CHUNK]), ("ended", [START, CHUNK, LAST]), ("never", [])):
        response = _Response(_appender(sent[name]))
        for message in messages:
            await response.send(message)
        await response.end()
    assert sent == {"open": [START, CHUNK, LAST], "ended": [START, CHUNK, LAST], "never": []}


async def test_ending_the_response_of_a_client_that_left_raises_nothing() -> None:
    """An ASGI server may raise an OSError on a send to a closed connection: a client gone first is no error."""
    response = _Response(_client_gone_after_start)
    await response.send(START)
    await response.end()


def _appender(messages: list[Message]) -> Callable[[Message], Awaitable[None]]:
    async def send(message: Message) -> None:
        messages.append(message)

    return send


async def _client_gone_after_start(message: Message) -> None:
    if message["type"] != "http.response.start":
        raise OSError("the connection is closed")
