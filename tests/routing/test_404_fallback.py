"""OpenRouter's own bare "Not Found" 404 (an API error, with `user_id`) falls back like any model 404."""

from __future__ import annotations

import pytest

from tests.routing.conftest import Rig

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_openrouters_bare_not_found_falls_back_to_the_next_model(rig: Rig, stream: bool) -> None:
    """The sandbox's injected 404 is an API error (with `user_id`): a bare "Not Found" must not stop the chain."""
    cheap, backup = "meta-llama/llama-3.1-8b-instruct", "openai/gpt-4o-mini"
    rig.sandbox.state.faults.add(model=cheap, kind="server_error", status=404, message="Not Found", count=None)
    result = await rig.router.execute(rig.ask(model=cheap, models=[backup], stream=stream))
    assert result.resolved_model == backup
    assert [(a.model, a.outcome, a.error_kind) for a in result.attempts] == [
        (cheap, "error", "not_found"),
        (backup, "ok", None),
    ]
