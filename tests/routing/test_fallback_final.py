"""Failures no other model can fix stop the fallback at the first attempt: a rejected key (401) and a base
URL that is not OpenRouter's API (a 404 that is not OpenRouter's). Both take the same path: one attempt,
no retry, no wait, no breaker count, one ledger row; while OpenRouter's own 404 still falls back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard import errors
from modelyard.openrouter import OpenRouterClient
from modelyard.routing.router import Router, RouterClock
from modelyard.settings import Settings
from tests.routing.conftest import KEY, FakeSleep, Rig, RigFactory

pytestmark = pytest.mark.anyio

CHEAP = "meta-llama/llama-3.1-8b-instruct"
BACKUP = "openai/gpt-4o-mini"
THIRD = "mistralai/mistral-nemo"
WRONG_KEY = "sk-or-v1-not-the-sandboxs-key-0123456789"
MISTAKES = {
    # mistake: (the error, what its message says to check)
    "wrong key": (errors.AuthenticationError, "check OPENROUTER_API_KEY"),
    "base URL without /api/v1": (errors.WrongBaseUrlError, "check OPENROUTER_BASE_URL"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("mistake", MISTAKES)
async def test_a_setup_mistake_stops_the_request_at_its_first_attempt(
    rig_factory: RigFactory, tmp_path: Path, mistake: str, stream: bool
) -> None:
    """After a good run stored the catalog, a router with the mistake tries the first model once and stops:
    the fallbacks are not tried, nothing waits, no breaker counts it, and the ledger row says why."""
    rig: Rig = await rig_factory()
    await rig.router.execute(rig.ask(model=CHEAP))  # the earlier good run: the catalog is in the store
    base_url, key = rig.sandbox.base_url, KEY
    if mistake == "wrong key":
        key = WRONG_KEY
    else:
        base_url = base_url.removesuffix("/api/v1")
    settings = Settings(openrouter_api_key=key, openrouter_base_url=base_url, store=f"sqlite:///{tmp_path / 'x.db'}")
    sleep = FakeSleep()
    expected, advice = MISTAKES[mistake]
    async with OpenRouterClient(key, base_url=base_url) as client:
        router = Router(client, rig.store, settings, clock=RouterClock(sleep=sleep, random=lambda: 0.5))
        with pytest.raises(expected) as caught:
            await router.execute(rig.ask(model=CHEAP, models=[BACKUP, THIRD], stream=stream))
        assert type(caught.value) is expected and advice in str(caught.value)
        assert sleep.waits == [] and router.breakers.snapshot().get(CHEAP, "closed") == "closed"
        row = (await rig.store.rows())[-1]
        assert (row.status, row.attempts, row.error) == ("error", 1, str(caught.value))
        by_model = {m.model: m for m in (await router.metrics("today")).by_model}
    # As for any final error: the one attempt made is the first model's failure; the others were never tried.
    assert (by_model[CHEAP].successes, by_model[CHEAP].failures) == (1, 1)
    assert {BACKUP, THIRD}.isdisjoint(by_model)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_openrouters_own_404_still_falls_back_to_the_next_model(rig: Rig, stream: bool) -> None:
    """OpenRouter's JSON 404 ("No endpoints found ...") is about the model: the next one answers, at once."""
    message = "No endpoints found that support tool use. To learn more about provider routing, visit: x"
    rig.sandbox.state.faults.add(model=CHEAP, kind="server_error", status=404, message=message, count=None)
    result = await rig.router.execute(rig.ask(model=CHEAP, models=[BACKUP], stream=stream))
    assert result.resolved_model == BACKUP and rig.sleep.waits == []
    assert [(a.model, a.outcome, a.error_kind) for a in result.attempts] == [
        (CHEAP, "error", "not_found"),
        (BACKUP, "ok", None),
    ]
    assert result.attempts[0].error == f"404 {message}"
