"""`GET /health` (server/health.py): 200 while the store answers, 503 naming what does not, one check a second."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import cast

import anyio
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from modelyard.errors import ConfigurationError
from modelyard.server.context import AppContextOnDemand
from modelyard.server.health import Health
from modelyard.settings import Settings

pytestmark = pytest.mark.anyio

STORE = "redis://:hunter2pass@10.0.0.7:6379/0"


@dataclass
class _Store:
    """A store whose `healthy()` answers `answers` (or never, with `hangs`), counting the checks."""

    answers: bool = True
    hangs: bool = False
    checks: int = 0

    async def healthy(self) -> bool:
        self.checks += 1
        if self.hangs:
            await anyio.sleep_forever()
        return self.answers


@dataclass
class _App:
    store: _Store


@dataclass
class _Context:
    """The lifespan context as /health reads it: opened (or failing to open), or shutting down."""

    store: _Store = field(default_factory=_Store)
    fails_to_open: bool = False
    shutting_down: bool = False
    settings: Settings = field(default_factory=lambda: Settings(store=STORE))

    async def get(self) -> _App:
        if self.fails_to_open:
            raise ConfigurationError(f"modelyard could not start its client and store: {STORE} is down")
        return _App(self.store)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _health(context: _Context | None, *, store_timeout_s: float = 2.0) -> Health:
    health = Health(store_timeout_s=store_timeout_s)
    health.context = cast(AppContextOnDemand, context)
    return health


async def _get(health: Health) -> httpx2.Response:
    app = Starlette(routes=[Route("/health", health.respond, methods=["GET"])])
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as http:
        return await http.get("/health")


async def test_a_store_that_answers_is_200_ok() -> None:
    response = await _get(_health(_Context()))
    assert (response.status_code, response.text) == (200, "ok")
    assert response.headers["cache-control"] == "no-store"


async def test_a_store_that_does_not_answer_is_503_naming_it_without_its_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """/health said 200 "ok" with Redis down, while the README sends load balancers to it."""
    with caplog.at_level(logging.WARNING, logger="modelyard.server.health"):
        response = await _get(_health(_Context(_Store(answers=False))))
    assert (response.status_code, response.text) == (503, "unavailable: store does not answer")
    (logged,) = [r.getMessage() for r in caplog.records]
    assert logged == "/health answers 503: store does not answer (store redis://:***@10.0.0.7:6379/0)"
    assert "hunter2pass" not in response.text + logged


async def test_a_store_that_hangs_is_503_once_the_bound_runs_out() -> None:
    with anyio.fail_after(5):
        response = await _get(_health(_Context(_Store(hangs=True)), store_timeout_s=0.05))
    assert (response.status_code, response.text) == (503, "unavailable: store did not answer within 0.05 s")


async def test_a_store_that_cannot_be_opened_is_503_without_the_reason_the_log_has() -> None:
    response = await _get(_health(_Context(fails_to_open=True)))
    assert (response.status_code, response.text) == (503, "unavailable: store could not be opened (see the log)")


async def test_a_server_not_serving_yet_or_shutting_down_is_503() -> None:
    assert (await _get(_health(None))).status_code == 503
    assert (await _get(_health(_Context(shutting_down=True)))).status_code == 503


async def test_the_store_is_checked_at_most_once_a_second_however_often_the_balancer_polls() -> None:
    store, clock = _Store(), _Clock()
    health = Health(monotonic=clock)
    health.context = cast(AppContextOnDemand, _Context(store))
    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(health.problem)
    assert store.checks == 1
    clock.now += 0.99
    assert await health.problem() is None and store.checks == 1
    store.answers = False
    clock.now += 0.02
    assert await health.problem() == "store does not answer" and store.checks == 2
