"""Labels a request's ledger rows carry in `detail`: who asked (`client`: the MCP host) and why
(`purpose`: `judge` for `compare_models`' judge, `review` for a supervisor's review).

They travel in a context variable, so every row a call writes gets them, the rows of its fallbacks and
of the tasks it starts included, without each layer passing them down.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Final

__all__ = ["current", "labelled"]

_NONE: Final[Mapping[str, str]] = MappingProxyType({})
_LABELS: ContextVar[Mapping[str, str]] = ContextVar("modelyard_ledger_labels", default=_NONE)


def current() -> Mapping[str, str]:
    """The labels in force (empty outside any `labelled` block)."""
    return _LABELS.get()


@contextmanager
def labelled(**labels: str | None) -> Iterator[None]:
    """Add `labels` (those not None) to the rows written inside the block; inner blocks win."""
    given = {name: value for name, value in labels.items() if value}
    if not given:
        yield
        return
    token = _LABELS.set(MappingProxyType({**_LABELS.get(), **given}))
    try:
        yield
    finally:
        _LABELS.reset(token)
