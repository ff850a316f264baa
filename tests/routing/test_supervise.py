"""Supervision under a cap: no review is sent when the answer left nothing of it, or left an unknown amount."""

from __future__ import annotations

from decimal import Decimal

import pytest

from modelyard.errors import NoCandidatesError
from modelyard.routing.supervise import supervise
from tests.routing.conftest import Rig

pytestmark = pytest.mark.anyio

CAP = Decimal("0.1")  # more than the review's worst case (about $0.042): only what the answer spent stops it


async def test_no_review_is_sent_when_the_answer_spent_the_whole_cap(rig: Rig) -> None:
    request = rig.ask("2+2?", model="openai/gpt-4o-mini", max_cost=CAP)
    primary = (await rig.router.execute(request)).model_copy(update={"request_cost": CAP})
    with pytest.raises(NoCandidatesError, match=r"The answer cost \$0.1, all of the \$0.1 cap \(max_cost\)"):
        await supervise(rig.router, request, primary, "openai/gpt-4o")
    assert rig.received() == 1


async def test_no_review_is_sent_when_what_the_answer_cost_is_not_known(rig: Rig) -> None:
    """An earlier attempt's cost is not known yet (null `request_cost`): what is left of the cap is not either."""
    request = rig.ask("2+2?", model="openai/gpt-4o-mini", max_cost=CAP)
    primary = (await rig.router.execute(request)).model_copy(update={"request_cost": None})
    with pytest.raises(NoCandidatesError, match=r"The answer's cost is not known yet"):
        await supervise(rig.router, request, primary, "openai/gpt-4o")
    assert rig.received() == 1


async def test_without_a_cap_the_review_is_sent_whatever_the_answer_cost(rig: Rig) -> None:
    request = rig.ask("2+2?", model="openai/gpt-4o-mini")
    primary = (await rig.router.execute(request)).model_copy(update={"request_cost": None})
    review = await supervise(rig.router, request, primary, "openai/gpt-4o")
    assert rig.received() == 2 and review.request_cost == rig.sandbox.state.ledger[-1].cost
    assert review.total_cost is None
