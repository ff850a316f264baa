"""The Router: catalog → selection → cache → budget reservation → attempts with retry and fallback → ledger.

Usable from any caller: `await router.execute(request)`, `router.stream(request)`, `await router.plan(request)`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from decimal import Decimal

import anyio

from modelyard.errors import ModelyardError
from modelyard.openrouter.catalog_schemas import EndpointsInfo
from modelyard.openrouter.client import OpenRouterClient
from modelyard.routing.budget import BudgetManager
from modelyard.routing.cache import CoalescedFailure, ResponseCache, cache_allowed, canonical_key
from modelyard.routing.cache_results import (
    cache_payload,
    coalesced_failure,
    coalesced_row,
    failure_sharer,
    hit_result,
    hit_row,
)
from modelyard.routing.candidate_attempts import CandidateAttempts
from modelyard.routing.catalog import Catalog, CatalogService
from modelyard.routing.circuit import CircuitBreakers
from modelyard.routing.events import EventSink, StreamEvent, TextDelta
from modelyard.routing.explain import breaker_wait, no_candidates_error, why_no_model
from modelyard.routing.fallback import FallbackLoop, tightest
from modelyard.routing.ledger import failure_row, view_of_plan
from modelyard.routing.metrics import Metrics, Window, compute_metrics, current_budget, window_start
from modelyard.routing.price_cap import period_budgets
from modelyard.routing.reconcile import Reconciler
from modelyard.routing.request import RouteRequest
from modelyard.routing.result import PlanView, RouteResult
from modelyard.routing.retry import RetryPolicy
from modelyard.routing.selection import Plan, SelectionDefaults, select
from modelyard.routing.shared import SharedBreakers, SharedResponseCache, shared_store
from modelyard.routing.speed import SpeedBook
from modelyard.settings import Settings
from modelyard.store.base import BudgetLimits, LedgerRow, Store

__all__ = ["Router", "RouterClock"]

log = logging.getLogger(__name__)
_SPEED_PROBES = 8
_SPEED_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True, kw_only=True)
class RouterClock:
    """The router's time seams: wall clock (ledger, budgets), monotonic (latency, breakers), sleep, random."""

    now: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    random: Callable[[], float] = random.random


class Router:
    """Routes requests to OpenRouter models within budgets, with fallback, retry, breakers and a cache.

    Run `router.reconciler.run()` in a task group for as long as the router serves (`modelyard serve`
    does): an attempt abandoned after its answer began then keeps its budget hold until OpenRouter's
    record says what it cost, and the ledger gets that cost. Without it the hold is freed at once.
    Run `router.budgets.renewal.run()` beside it: the budget holds of requests in flight are then renewed
    for as long as they run. Without it a hold expires its lifetime after it was taken, even if the request
    is still running (a long generation), and the budget stops counting it.

    Args:
        client: the OpenRouter client.
        store: ledger, reservations and the stored catalog.
        settings: defaults, limits, retry and cache settings.
        clock: time seams (tests pass fakes).
    """

    def __init__(
        self, client: OpenRouterClient, store: Store, settings: Settings, *, clock: RouterClock | None = None
    ) -> None:
        self.clock = clock or RouterClock()
        self.client, self.store, self.settings = client, store, settings
        self.catalogs = CatalogService(
            client,
            store,
            ttl_s=settings.catalog_ttl_s,
            quality_overrides=settings.quality_overrides,
            clock=self.clock.now,
        )
        limits = BudgetLimits(
            daily=settings.budget.daily, monthly=settings.budget.monthly, per_request=settings.budget.per_request
        )
        ttl = settings.request_timeout_s * settings.max_attempts + settings.reservation_margin_s
        self.budgets = BudgetManager(store, limits, clock=self.clock.now, reservation_ttl_s=ttl)
        self.breakers = CircuitBreakers(clock=self.clock.monotonic)
        self.retry = RetryPolicy(max_retries=settings.max_retries, random=self.clock.random)
        self.cache: ResponseCache[RouteResult] = ResponseCache(
            max_entries=settings.cache.max_entries, ttl_s=settings.cache.ttl_s, clock=self.clock.monotonic
        )
        if (fleet := shared_store(store)) is not None:  # DESIGN §6: instances share breakers and cache via Redis
            self.breakers = SharedBreakers(fleet, clock=self.clock.now)
            self.cache = SharedResponseCache(
                fleet, max_entries=settings.cache.max_entries, ttl_s=settings.cache.ttl_s, clock=self.clock.monotonic
            )
        self.speed = SpeedBook()
        self.defaults = SelectionDefaults(
            default_max_tokens=settings.default_max_tokens,
            max_cost_per_1k=settings.max_cost_per_1k,
            quality=settings.quality,
            speed=settings.speed,
            capabilities=tuple(settings.capabilities),  # type: ignore[arg-type]
            fallback_models=tuple(settings.fallback_models),
        )
        self.reconciler = Reconciler(client, self.budgets, now=self.clock.now)
        attempts = CandidateAttempts(
            client,
            self.budgets,
            self.breakers,
            self.retry,
            self.speed,
            monotonic=self.clock.monotonic,
            now=self.clock.now,
            sleep=self.clock.sleep,
            reconciler=self.reconciler,
        )
        self.fallback = FallbackLoop(
            attempts, self.budgets, self.breakers, max_attempts=settings.max_attempts, now=self.clock.now
        )

    # ------------------------------------------------------------------ public API

    async def plan(self, request: RouteRequest) -> PlanView:
        """A dry run: ranked candidates, exclusions with reasons, the worst-case cost. Spends nothing.

        A request no model can serve gets its plan all the same (no candidates, every exclusion), with
        `no_candidates_reason` saying why and what would let a model through: `execute` refuses it with
        that text, and an agent asks `plan_route` precisely to find out why.
        """
        plan, catalog = await self._plan(request, refuse=False)
        view = view_of_plan(plan)
        if not view.candidates:
            per_request = (await self.budgets.limits()).per_request
            view.no_candidates_reason = why_no_model(
                plan,
                catalog,
                per_request=per_request,
                per_request_source=self.budgets.source("per_request"),
                breaker_wait_s=breaker_wait(plan, self.breakers),
            )
        return view

    async def execute(self, request: RouteRequest, *, on_event: EventSink | None = None) -> RouteResult:
        """Answer `request`; with `on_event` (or `request.stream`) the text is streamed to it as it arrives.

        Raises:
            NoCandidatesError: no model meets the constraints (the message lists why).
            BudgetExceededError: no candidate's worst case fits the budget; nothing was sent.
            AllCandidatesFailedError: every attempt failed; says what each model answered.
            UpstreamError: a failure no fallback can fix (key out of credit, invalid key).
        """
        started = self.clock.monotonic()
        if on_event is not None and not request.stream:
            request = request.model_copy(update={"stream": True})  # streamed upstream: its ledger row says so
        sink = on_event if on_event is not None else (_discard if request.stream else None)

        async def answer() -> RouteResult:
            plan, catalog = await self._plan(request, record_refusal=True)
            return await _drive(self.fallback.run(request, plan, catalog, sink is not None, started), sink)

        mode = request.cache or self.settings.cache.mode
        if not cache_allowed(mode, temperature=request.temperature, seed=request.seed):
            return await answer()
        # The key holds the model or the selection constraints, not the plan: a hit needs no planning.
        try:
            key = canonical_key(cache_payload(request, self.settings.default_max_tokens))
        except (TypeError, ValueError):  # keys JSON would write as text, a lone surrogate: not cacheable
            return await answer()
        wait_s = None if request.timeout_s is None else self.fallback.time_left(request, started)
        try:
            result, hit = await self.cache.get_or_compute(
                key, answer, share_failure=failure_sharer(request), wait_s=wait_s
            )
        except CoalescedFailure as failure:
            raise await self._coalesced_failure(request, failure.error, started) from None
        if not hit:
            return result
        return await self._cache_hit(request, result, sink, started)

    async def stream(self, request: RouteRequest) -> AsyncGenerator[StreamEvent | RouteResult]:
        """Yield `TextDelta`/`Restart` events as the answer streams, then the final `RouteResult`.

        The attempts run in the caller's task, between its reads (a request the cache may answer runs in
        a task of its own, which the cache's single flight needs). To stop early, close the generator
        (`aclose()`, or leave a `contextlib.aclosing` block) in the cancel scope it was read in: that
        ends the attempt and, before it returns, frees its budget hold (or, once the answer had begun and
        the reconciler runs, hands the hold to it: the answer may be billed). `timeout_s` counts the time the
        caller takes between reads, except for a request the cache may answer: its answer is worked out in a
        task of its own, ahead of the reads, so there `timeout_s` bounds the upstream only. The budget hold
        lasts `request_timeout_s * max_attempts + reservation_margin_s` and, while `budgets.renewal.run()`
        runs, is renewed for as long as the stream is open, however slowly it is read.
        """
        streamed = request if request.stream else request.model_copy(update={"stream": True})
        mode = request.cache or self.settings.cache.mode
        if cache_allowed(mode, temperature=request.temperature, seed=request.seed):
            items = self._stream_in_task(streamed)
        else:
            started = self.clock.monotonic()
            plan, catalog = await self._plan(streamed, record_refusal=True)
            # No cancel scope is open across these yields (the loop bounds each await, not its yields).
            items = self.fallback.run(streamed, plan, catalog, True, started)
        async with aclosing(items):
            async for item in items:
                yield item

    async def _stream_in_task(self, request: RouteRequest) -> AsyncGenerator[StreamEvent | RouteResult]:
        """`execute(request, on_event=...)` in a task of its own, its events and result yielded here.

        Closed early, it cancels that task and waits for it, in the caller's task; a failure is raised
        as itself, as from the other path, not inside an exception group.
        """
        send, receive = anyio.create_memory_object_stream[StreamEvent | RouteResult](256)
        failed: list[Exception] = []

        async def forward(event: StreamEvent) -> None:
            # send_nowait skips send()'s checkpoint: the consumer wakes one loop pass sooner per event.
            try:
                send.send_nowait(event)
            except anyio.WouldBlock:
                await send.send(event)

        async def produce() -> None:
            async with send:
                try:
                    result = await self.execute(request, on_event=forward)
                except Exception as exc:  # raised below, in the consumer's task, as the other path raises it
                    failed.append(exc)
                    return
                await send.send(result)

        async with anyio.create_task_group() as group, receive:
            group.start_soon(produce)
            try:
                async for item in receive:
                    yield item
            except GeneratorExit:
                group.cancel_scope.cancel()  # the consumer left: stop the request, then leave the group here
                return
        if failed:
            raise failed[0]

    async def metrics(self, window: Window = "today") -> Metrics:
        """Requests, spend, cache savings, per-model latency and errors, breakers, budget status and the rows
        waiting in the spool."""
        now = self.clock.now()
        rows = await self.store.rows(since=window_start(window, now))
        status = await current_budget(self.budgets)
        spooled = await self.budgets.spooled_rows()
        return compute_metrics(
            rows, window=window, now=now, breakers=self.breakers.snapshot(), budget=status, spooled_rows=spooled
        )

    async def aclose(self) -> None:
        """Nothing to close of its own: the client and store belong to the caller."""

    # ------------------------------------------------------------------ planning

    async def _plan(
        self, request: RouteRequest, *, record_refusal: bool = False, refuse: bool = True
    ) -> tuple[Plan, Catalog]:
        """The plan and its catalog; with `refuse`, a plan with no candidate raises `NoCandidatesError`."""
        catalog = await self.catalogs.current()
        limits = await self.budgets.limits()
        cap, budget = tightest(request.max_cost, limits.per_request), period_budgets(limits)
        plan = self._select(catalog, request, cap, budget)
        if (request.speed or self.settings.speed) == "fast" and await self._probe_speeds(plan):
            plan = self._select(catalog, request, cap, budget)
        if not plan.candidates and refuse:
            error = no_candidates_error(
                plan,
                catalog,
                per_request=limits.per_request,
                per_request_source=self.budgets.source("per_request"),
                breakers=self.breakers,
            )
            if record_refusal:
                await self._record(failure_row(request, plan, [], error, self.clock.now(), status="refused"))
            raise error
        return plan, catalog

    def _select(self, catalog: Catalog, request: RouteRequest, cap: Decimal | None, budget: str | None) -> Plan:
        return select(
            catalog,
            request,
            defaults=self.defaults,
            open_breakers=frozenset(self.breakers.open_models()),
            speed=self.speed,
            cost_cap=cap,
            budget=budget,
            now=self.clock.now(),
        )

    async def _probe_speeds(self, plan: Plan) -> bool:
        """Fetch endpoint stats (latency, throughput) for the leading candidates that have none yet.

        Only when a request asks for speed, and only for candidates: OpenRouter's `/endpoints` is one
        call per model. A model whose stats cannot be fetched is remembered as unknown.
        """
        missing = [
            c.id
            for c in plan.candidates[:_SPEED_PROBES]
            if self.speed.get(c.id) is None and not self.speed.has_endpoint_stats(c.id)
        ]

        async def probe(model: str) -> None:
            info = EndpointsInfo(id=model)
            with anyio.move_on_after(_SPEED_PROBE_TIMEOUT_S):
                try:
                    info = await self.client.model_endpoints(model)
                except ModelyardError as exc:
                    log.info("no endpoint stats for %s: %s", model, exc)
            self.speed.record_endpoints(model, info)

        async with anyio.create_task_group() as group:
            for model in missing:
                group.start_soon(probe, model)
        return bool(missing)

    # ------------------------------------------------------------------ running

    async def _cache_hit(
        self, request: RouteRequest, original: RouteResult, sink: EventSink | None, started: float
    ) -> RouteResult:
        if sink is not None and original.content:
            await sink(TextDelta(original.resolved_model, original.content))
        result = hit_result(original, (self.clock.monotonic() - started) * 1000)
        await self._record(hit_row(request, result, original, self.clock.now()))
        return result

    async def _coalesced_failure(self, request: RouteRequest, error: Exception, started: float) -> Exception:
        """The ledger row and the error of a request that waited for an identical one which failed (or
        did not finish within this request's `timeout_s`). It spent nothing."""
        error = coalesced_failure(request, error)
        now = self.clock.now()
        await self._record(coalesced_row(request, error, now=now, latency_ms=(self.clock.monotonic() - started) * 1000))
        return error

    async def _record(self, row: LedgerRow) -> None:
        await self.budgets.settle(None, row)


async def _discard(event: StreamEvent) -> None:
    return None


async def _drive(items: AsyncGenerator[StreamEvent | RouteResult], sink: EventSink | None) -> RouteResult:
    """Run `FallbackLoop.run` to its result, handing its stream events to `sink`."""
    async with aclosing(items):
        async for item in items:
            if isinstance(item, RouteResult):
                return item
            if sink is not None:
                await sink(item)
    raise AssertionError("FallbackLoop.run ends with a result or an error")  # pragma: no cover
