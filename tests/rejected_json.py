"""A sandbox that answers requests for JSON with prose: billed as usual, rejected by the router's check."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from modelyard.sandbox import CatalogModel, answers
from modelyard.sandbox.replies import Reply

__all__ = ["json_answered_with_prose"]


def json_answered_with_prose(monkeypatch: pytest.MonkeyPatch, *, model: str | None = None, times: int = 1) -> None:
    """The first `times` requests for JSON (to `model`, or to any model) get prose instead."""
    planned = answers.plan_reply
    left = [times]

    def plan_reply(
        body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], served: CatalogModel, max_tokens: int | None
    ) -> Reply:
        reply = planned(body, messages, served, max_tokens)
        if left[0] > 0 and body.get("response_format") and model in (None, served.id):
            left[0] -= 1
            return dataclasses.replace(reply, content="Sure!", content_pieces=("Sure!",), tool_call=None)
        return reply

    monkeypatch.setattr(answers, "plan_reply", plan_reply)
