"""The `MODELYARD_*` names: which the project reads, and what an unknown one says."""

from __future__ import annotations

import pytest

from modelyard.errors import ConfigurationError
from modelyard.settings_env import PROJECT_VARIABLES, check_variables

KNOWN = [
    "OPENROUTER_API_KEY",
    "MODELYARD_DEFAULT_MODEL",
    "MODELYARD_STORE",
    "MODELYARD_BUDGET",
    "MODELYARD_BUDGET__DAILY",
    "MODELYARD_BUDGET__MONTHLY",
    "MODELYARD_CACHE",
    "MODELYARD_CACHE__MODE",
    "MODELYARD_CACHE__TTL_S",
    "MODELYARD_QUALITY_OVERRIDES",
]


def refusal(*names: str) -> str:
    """What `check_variables` says of `names`, which must hold an unknown one."""
    with pytest.raises(ConfigurationError) as caught:
        check_variables(names, KNOWN, open_prefixes=["MODELYARD_QUALITY_OVERRIDES__"])
    return str(caught.value)


def test_known_names_in_any_case_and_names_outside_the_prefix_pass() -> None:
    check_variables(["modelyard_budget__daily", "MODELYARD_STORE", "HOME", "OPENROUTER_MODEL", "MODELYARD"], KNOWN)


def test_a_name_under_an_open_prefix_passes() -> None:
    check_variables(
        ["MODELYARD_QUALITY_OVERRIDES__openai/gpt-4o"], KNOWN, open_prefixes=["MODELYARD_QUALITY_OVERRIDES__"]
    )


def test_the_variables_the_project_reads_outside_the_settings_pass() -> None:
    assert "MODELYARD_TEST_REDIS_URL" in PROJECT_VARIABLES
    check_variables(list(PROJECT_VARIABLES), KNOWN)


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("MODELYARD_BUDGET_DAILY", "MODELYARD_BUDGET__DAILY"),
        ("MODELYARD_CACHE_MODE", "MODELYARD_CACHE__MODE"),
        ("MODELYARD_BUDGET__DAYLY", "MODELYARD_BUDGET__DAILY"),
        ("MODELYARD_DAILY_BUDGET", "MODELYARD_BUDGET__DAILY"),
        ("modelyard_default_modle", "MODELYARD_DEFAULT_MODEL"),
        ("MODELYARD_OPENROUTER_API_KEY", "OPENROUTER_API_KEY"),
        ("MODELYARD_STORE__X", "MODELYARD_STORE"),
    ],
)
def test_an_unknown_name_is_refused_with_the_name_it_most_looks_like(name: str, meant: str) -> None:
    assert refusal(name) == f"{name} names no setting: did you mean {meant}? Rename it, or unset it."


def test_an_unknown_field_of_a_group_with_no_close_match_lists_the_groups_fields() -> None:
    assert refusal("MODELYARD_CACHE__SIZE") == (
        "MODELYARD_CACHE__SIZE names no setting; unset it, or use one of MODELYARD_CACHE__{MODE, TTL_S}."
    )


def test_an_unknown_name_with_no_close_match_lists_the_prefixed_names() -> None:
    assert refusal("MODELYARD_COLOUR") == (
        "MODELYARD_COLOUR names no setting; unset it, or use one of MODELYARD_{DEFAULT_MODEL, STORE, BUDGET, "
        "BUDGET__DAILY, BUDGET__MONTHLY, CACHE, CACHE__MODE, CACHE__TTL_S, QUALITY_OVERRIDES}."
    )


def test_every_unknown_name_is_named_at_once_and_a_test_variable_is_never_suggested() -> None:
    lines = refusal("MODELYARD_BUDGET_DAILY", "HOME", "MODELYARD_TEST_REDIS_URLS").splitlines()
    assert [line.split(" ")[0] for line in lines] == ["MODELYARD_BUDGET_DAILY", "MODELYARD_TEST_REDIS_URLS"]
    assert "did you mean" not in lines[1]
