"""The server's context opens its client, store and router once (at the first tool call, or in the background
after the tools are listed) and closes them."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import anyio
import pytest
from anyio.abc import TaskStatus
from mcp import Client

from modelyard.errors import ConfigurationError
from modelyard.sandbox import Sandbox
from modelyard.server.context import AppContext, AppContextOnDemand, open_app_context
from modelyard.server.keepalive import Keepalives
from modelyard.settings import Settings
from modelyard.store.base import LedgerRow
from modelyard.store.spool import Spool
from tests.server.conftest import KEY, error_text, server_env, stdio_params, structured

pytestmark = pytest.mark.anyio


def _settings(store: Path) -> Settings:
    # Nothing is sent upstream here: opening a client connects to nothing.
    return Settings(openrouter_api_key=KEY, openrouter_base_url="http://127.0.0.1:9/api/v1", store=f"sqlite:///{store}")


@asynccontextmanager
async def _serving(context: AppContextOnDemand) -> AsyncIterator[AppContextOnDemand]:
    """`context` as the server's lifespan holds it: `run()` in the background, `close()` at the end."""
    async with anyio.create_task_group() as background:
        background.start_soon(context.run)
        try:
            yield context
        finally:
            await context.close()


async def test_nothing_is_opened_until_a_call_asks_and_then_once_for_all_callers(tmp_path: Path) -> None:
    store = tmp_path / "ledger.db"
    with anyio.fail_after(20):
        async with _serving(AppContextOnDemand(_settings(store))) as context:
            await anyio.sleep(0.05)
            assert not store.exists()
            opened: list[AppContext] = []

            async def ask() -> None:
                opened.append(await context.get())

            async with anyio.create_task_group() as callers:
                for _ in range(5):
                    callers.start_soon(ask)
            assert store.exists()
            assert len(opened) == 5 and all(app is opened[0] for app in opened)
            assert await context.get() is opened[0]
            assert opened[0].keepalives is context.keepalives


async def test_closing_a_context_no_call_opened_opens_nothing(tmp_path: Path) -> None:
    store = tmp_path / "ledger.db"
    with anyio.fail_after(10):
        async with _serving(AppContextOnDemand(_settings(store))):
            pass
    assert not store.exists()


async def test_close_closes_the_store_and_a_later_call_is_told_the_server_is_shutting_down(tmp_path: Path) -> None:
    store = tmp_path / "ledger.db"
    context = AppContextOnDemand(_settings(store))
    with anyio.fail_after(20):
        async with _serving(context):
            app = await context.get()
            await app.store.set_value("probe", "kept")
        with pytest.raises(ConfigurationError, match="shutting down"):
            await context.get()
    assert not await app.store.healthy()
    with sqlite3.connect(store) as conn:  # what was written before the close is on disk
        assert conn.execute("SELECT value FROM kv WHERE key = 'probe'").fetchone() == ("kept",)


async def test_a_store_that_cannot_be_opened_answers_every_call_with_the_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    context = AppContextOnDemand(_settings(blocker / "ledger.db"))
    with anyio.fail_after(20):
        async with _serving(context):
            for _ in range(2):
                with pytest.raises(ConfigurationError, match="could not start its client and store") as caught:
                    await context.get()
                assert "ledger.db" in str(caught.value)


async def test_after_a_failed_open_the_next_call_tries_again(tmp_path: Path) -> None:
    """A cause that goes away (here a file where the store's directory belongs) needs no restart."""
    place = tmp_path / "data"
    place.write_text("not a directory yet")
    context = AppContextOnDemand(_settings(place / "ledger.db"))
    with anyio.fail_after(20):
        async with _serving(context):
            with pytest.raises(ConfigurationError, match="the next call tries again"):
                await context.get()
            place.unlink()
            place.mkdir()
            app = await context.get()
            assert await app.store.healthy() and (place / "ledger.db").exists()


async def test_a_cancelled_shutdown_still_closes_the_store(tmp_path: Path) -> None:
    """The lifespan's task group cancelled from outside (as a server's shutdown does) while the context is open."""
    context = AppContextOnDemand(_settings(tmp_path / "ledger.db"))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as lifespan:
            lifespan.start_soon(context.run)
            try:
                app = await context.get()
                lifespan.cancel_scope.cancel()
                await anyio.sleep(5)  # cancelled at once
            finally:
                await context.close()
    assert not await app.store.healthy()


class _Catalogs:
    async def current(self) -> None:
        return None


class _Loop:
    """A background loop of the router's (its reconciler, its budget holds' renewal)."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await anyio.sleep_forever()


class _Budgets:
    renewal = _Loop()
    run_replays = _Loop.run


def _stand_in() -> AppContext:
    """What a fake open gives: only what the context itself uses of an `AppContext`."""
    router = SimpleNamespace(catalogs=_Catalogs(), reconciler=_Loop(), budgets=_Budgets())
    return cast(AppContext, SimpleNamespace(router=router))


def _slow_open(
    events: list[str], *, fails: bool
) -> Callable[[Settings, Keepalives], AbstractAsyncContextManager[AppContext]]:
    """An open that takes 0.3 s and then fails or gives a stand-in context (its close is recorded)."""

    @asynccontextmanager
    async def open_context(settings: Settings, keepalives: Keepalives) -> AsyncIterator[AppContext]:
        await anyio.sleep(0.3)
        if fails:
            raise ConfigurationError("the store is locked")
        try:
            yield _stand_in()
        finally:
            events.append("closed")

    return open_context


@pytest.mark.parametrize("fails", [True, False])
async def test_a_close_during_an_open_ends_it_and_no_call_gets_the_context(tmp_path: Path, fails: bool) -> None:
    events: list[str] = []
    context = AppContextOnDemand(_settings(tmp_path / "ledger.db"), open_context=_slow_open(events, fails=fails))
    told: list[str] = []

    async def call() -> None:
        with pytest.raises(ConfigurationError) as caught:
            await context.get()
        told.append(str(caught.value))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as lifespan:
            lifespan.start_soon(context.run)
            lifespan.start_soon(call)  # waits for the open
            await anyio.sleep(0.1)
            await context.close()  # mid-open
            await call()  # after the close began
    assert told == ["The server is shutting down."] * 2
    assert events == ([] if fails else ["closed"])


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` for up to 10 s (what happens in a child process or a worker thread sets no event here)."""
    for _ in range(500):
        if condition():
            return
        await anyio.sleep(0.02)
    raise AssertionError(f"not within 10 s: {what}")


def _catalog_stored(store: Path) -> bool:
    if not store.exists():
        return False
    conn = sqlite3.connect(store)
    try:
        return conn.execute("SELECT count(*) FROM kv WHERE key = 'catalog:v1'").fetchone() == (1,)
    except sqlite3.OperationalError:  # the schema is not there yet
        return False
    finally:
        conn.close()


async def test_a_warm_up_opens_the_context_and_loads_the_catalog_before_any_call(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    store = tmp_path / "ledger.db"
    settings = Settings(openrouter_api_key=KEY, openrouter_base_url=sandbox.base_url, store=f"sqlite:///{store}")
    with anyio.fail_after(30):
        async with _serving(AppContextOnDemand(settings)) as context:
            context.warm_up()
            await _until(store.exists, "the warm-up opened the store")
            app = await context.get()  # a call does not fetch the catalog: only the warm-up does
            await _until(lambda: app.router.catalogs.loaded is not None, "the warm-up loaded the catalog")
            assert _catalog_stored(store)
            context.warm_up()  # open already: nothing happens
            await anyio.sleep(0.1)
            assert await context.get() is app


async def test_a_server_shutting_down_right_after_an_answer_was_abandoned_records_its_cost_before_the_store_closes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The reconciler's last pass runs while the store is still open: the abandoned answer's billed cost is
    in the file once the server has stopped."""
    from modelyard.routing.request import RouteRequest

    store = tmp_path / "ledger.db"
    settings = Settings(
        openrouter_api_key=KEY, openrouter_base_url=sandbox.base_url, store=f"sqlite:///{store}", request_timeout_s=0.3
    )
    cheap = "meta-llama/llama-3.1-8b-instruct"
    sandbox.state.faults.add(model=cheap, kind="latency", count=1, latency_ms=500)
    ask = RouteRequest(messages=[{"role": "user", "content": "Say hi"}], model=cheap, models=["openai/gpt-4o-mini"])
    with anyio.fail_after(30):
        async with _serving(AppContextOnDemand(settings)) as context:
            app = await context.get()
            await app.router.execute(ask)
            assert len(app.router.reconciler.pending) == 1
    conn = sqlite3.connect(store)
    try:
        costs = [row[0] for row in conn.execute("SELECT cost FROM ledger WHERE json_extract(detail, '$.abandoned')")]
    finally:
        conn.close()
    assert len(costs) == 1 and costs[0] is not None and float(costs[0]) > 0


async def test_a_failed_warm_up_is_tried_again_by_the_first_call_which_is_told_why(tmp_path: Path) -> None:
    place = tmp_path / "data"
    place.write_text("not a directory")
    attempts: list[str] = []

    @asynccontextmanager
    async def counted_open(settings: Settings, keepalives: Keepalives) -> AsyncIterator[AppContext]:
        attempts.append("open")
        try:
            async with open_app_context(settings, keepalives) as app:
                yield app
        except ConfigurationError:
            attempts.append("failed")
            raise

    context = AppContextOnDemand(_settings(place / "ledger.db"), open_context=counted_open)
    with anyio.fail_after(20):
        async with _serving(context):
            context.warm_up()
            await _until(lambda: attempts == ["open", "failed"], "the warm-up tried to open, and failed")
            await anyio.sleep(0.2)
            assert attempts == ["open", "failed"], "a failed warm-up is not retried on its own"
            with pytest.raises(ConfigurationError, match="could not start its client and store"):
                await context.get()
            assert attempts == ["open", "failed", "open", "failed"]


async def test_a_call_during_a_warm_up_joins_the_open_the_warm_up_started(tmp_path: Path) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def slow_open(settings: Settings, keepalives: Keepalives) -> AsyncIterator[AppContext]:
        events.append("opening")
        await anyio.sleep(0.3)
        try:
            yield _stand_in()
        finally:
            events.append("closed")

    context = AppContextOnDemand(_settings(tmp_path / "ledger.db"), open_context=slow_open)
    with anyio.fail_after(10):
        async with _serving(context):
            context.warm_up()
            await _until(lambda: events == ["opening"], "the warm-up started the open")
            first = await context.get()  # waits for that open instead of starting another
            assert await context.get() is first and events == ["opening"]
    assert events == ["opening", "closed"]


async def test_over_stdio_a_bad_store_is_reported_by_each_call_and_the_tools_are_still_listed(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A host still sees the tools when the store is misconfigured; every call says what is wrong."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = server_env(tmp_path, sandbox.base_url, MODELYARD_STORE=f"sqlite:///{blocker / 'ledger.db'}")
    with anyio.fail_after(60):
        async with Client(stdio_params(env, tmp_path)) as client:
            assert len((await client.list_tools()).tools) == 9
            for tool in ("get_budget", "get_metrics"):
                message = error_text(await client.call_tool(tool, {}))
                assert "could not start its client and store" in message and "ledger.db" in message


async def test_over_stdio_listing_the_tools_opens_the_store_and_loads_the_catalog_in_the_background(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Starting opens nothing; once the host has listed the tools, the store and the catalog are made
    ready without any call, so the first call does not wait for them."""
    env = server_env(tmp_path, sandbox.base_url)
    store = tmp_path / "s.db"  # server_env's store
    with anyio.fail_after(60):
        async with Client(stdio_params(env, tmp_path)) as client:
            await anyio.sleep(0.5)
            assert not store.exists(), "initializing alone opened the store"
            await client.list_tools()
            await _until(lambda: _catalog_stored(store), "the catalog was fetched and stored after tools/list")
            assert structured(await client.call_tool("get_budget", {}))["daily"] is None


async def test_a_store_that_does_not_answer_is_named_without_its_password(caplog: pytest.LogCaptureFixture) -> None:
    """Neither the refusal nor any log line shows the password of the store's URL."""
    settings = Settings(
        openrouter_api_key=KEY, openrouter_base_url="http://127.0.0.1:9/api/v1", store="redis://:hunter2@127.0.0.1:9/0"
    )
    caplog.set_level("DEBUG")
    with anyio.fail_after(10), pytest.raises(ConfigurationError, match="does not answer") as caught:
        async with open_app_context(settings):
            pass
    assert "redis://:***@127.0.0.1:9/0" in str(caught.value) and "hunter2" not in str(caught.value)
    assert "hunter2" not in caplog.text


def _spooled_row(row_id: str) -> LedgerRow:
    return LedgerRow(id=row_id, ts=time.time(), requested_model="auto", model="openai/gpt-4o-mini", cost=D("0.25"))


async def test_opening_the_context_replays_a_spool_a_stopped_process_left(tmp_path: Path) -> None:
    """Rows spooled by a process that stopped before the store took them are in the ledger once the next opens."""
    db = tmp_path / "ledger.db"
    await Spool(db.with_name("ledger.db.pending.jsonl")).keep(None, _spooled_row("left-behind"))
    with anyio.fail_after(20):
        async with open_app_context(_settings(db)) as app:
            assert [row.id for row in await app.store.rows()] == ["left-behind"]
            assert (await app.router.budgets.totals()).spent_today == D("0.25")
    assert not db.with_name("ledger.db.pending.jsonl").exists()


async def test_a_row_spooled_while_serving_is_replayed_in_the_background(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    with anyio.fail_after(20):
        async with _serving(AppContextOnDemand(_settings(db))) as context:
            app = await context.get()
            await app.router.budgets.spool.keep(None, _spooled_row("spooled"))  # as a commit that failed does
            for _ in range(500):
                if [row.id for row in await app.store.rows()] == ["spooled"]:
                    break
                await anyio.sleep(0.02)
            assert [row.id for row in await app.store.rows()] == ["spooled"]
