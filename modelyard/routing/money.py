"""Money in results: `Decimal` in code, a JSON number (USD) on the wire, as DESIGN §2 asks."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer

__all__ = ["Usd"]


def _as_number(value: Decimal) -> float:
    # A float's shortest repr round-trips every amount with up to 15 significant digits, which covers
    # OpenRouter's prices and costs; readers parsing it back to Decimal get the exact figure.
    return float(value)


Usd = Annotated[Decimal, PlainSerializer(_as_number, return_type=float, when_used="json")]
"""USD amount: exact `Decimal` in Python, a number in JSON."""
