"""The wording of state-dependent messages: USD amounts written one way, and who can lift a limit."""

from __future__ import annotations

from decimal import Decimal

import pytest

from modelyard.error_text import dollars, limit_fix, usd


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("1e-30", "$0.000000000000000000000000000001"),  # was $0 in the CLI and $1E-30 in set_budget
        ("0.00000175", "$0.00000175"),
        ("12.50", "$12.5"),
        ("1E+9", "$1000000000"),
        ("0", "$0"),
        ("-0.5", "-$0.5"),
        ("0.1234567890123456789012345678", "$0.123456789012346"),  # an average: 15 significant digits
    ],
)
def test_every_amount_is_plain_digits_without_exponent_or_trailing_zeros(amount: str, shown: str) -> None:
    assert dollars(Decimal(amount)) == shown
    assert usd(abs(Decimal(amount))) == shown.lstrip("-$")


def test_a_limit_lowered_at_run_time_is_lifted_with_the_reset_not_the_config() -> None:
    fix = limit_fix("per_request", "run-time")
    assert "`modelyard budget --reset`" in fix and "MODELYARD_BUDGET__" not in fix


def test_a_configured_limit_is_raised_in_the_config_and_one_set_both_ways_needs_both() -> None:
    assert limit_fix("daily", "config") == "only the operator can raise it (MODELYARD_BUDGET__DAILY or the config file)"
    both = limit_fix("daily", "both")
    assert "MODELYARD_BUDGET__DAILY" in both and "`modelyard budget --reset`" in both
