"""Reliability suite: keep each test's `ci` size, or its `full` size with --reliability-full / RELIABILITY_FULL=1."""

from __future__ import annotations

import os

import pytest

from tests.reliability.harness import FULL_ENV, FULL_OPTION


def full_size(config: pytest.Config) -> bool:
    """True when this run asked for the issue's full sizes."""
    return bool(config.getoption(FULL_OPTION, default=False)) or os.environ.get(FULL_ENV) == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the size this run did not ask for (tests parametrised with `by_size`)."""
    unwanted = "ci" if full_size(config) else "full"
    kept, dropped = [], []
    for item in items:
        spec = getattr(item, "callspec", None)
        sized = spec is not None and "size" in spec.params
        (dropped if sized and unwanted in spec.id.split("-") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
