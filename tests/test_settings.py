"""Settings: where each value comes from, in what order, and what a bad one says."""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path

import pytest

from modelyard.errors import ConfigurationError
from modelyard.settings import BudgetSettings, CacheSettings, Settings, env_values, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the machine running the tests, and no default config file exists."""
    for name in list(os.environ):
        if name.upper().startswith(("MODELYARD_", "OPENROUTER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_plain_fields_come_from_prefixed_variables_and_the_key_from_its_openrouter_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test")
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")
    monkeypatch.setenv("MODELYARD_MAX_RETRIES", "5")
    monkeypatch.setenv("MODELYARD_HTTP_STATELESS", "true")
    settings = load_settings()
    assert settings.api_key == "sk-or-test"
    assert settings.openrouter_base_url == "http://127.0.0.1:9/api/v1"
    assert settings.max_retries == 5 and settings.http_stateless is True


def test_variable_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("modelyard_default_model", "premium")
    monkeypatch.setenv("openrouter_api_key", "sk-lower")
    settings = load_settings()
    assert settings.default_model == "premium" and settings.api_key == "sk-lower"


def test_the_key_under_a_prefixed_name_is_refused_pointing_at_its_openrouter_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It used to be ignored: the server then ran with no key, and said only that none was set."""
    monkeypatch.setenv("MODELYARD_OPENROUTER_API_KEY", "sk-not-read")
    with pytest.raises(ConfigurationError, match=r"did you mean OPENROUTER_API_KEY\?") as caught:
        load_settings()
    assert "sk-not-read" not in str(caught.value)


def test_lists_and_maps_are_json_and_a_group_field_uses_a_double_underscore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_FALLBACK_MODELS", '["openai/gpt-4o-mini", "anthropic/claude-3-haiku"]')
    monkeypatch.setenv("MODELYARD_QUALITY_OVERRIDES", '{"openai/gpt-4o": 90}')
    monkeypatch.setenv("MODELYARD_BUDGET__DAILY", "5")
    monkeypatch.setenv("MODELYARD_CACHE__TTL_S", "60")
    settings = load_settings()
    assert settings.fallback_models == ["openai/gpt-4o-mini", "anthropic/claude-3-haiku"]
    assert settings.quality_overrides == {"openai/gpt-4o": 90.0}
    assert settings.budget.daily == Decimal("5") and settings.budget.monthly is None
    assert settings.cache.ttl_s == 60.0 and settings.cache.mode == "auto"


def test_a_group_given_whole_as_json_is_completed_by_its_field_variables() -> None:
    values = env_values({"MODELYARD_BUDGET": '{"daily": 5}', "MODELYARD_BUDGET__MONTHLY": "50"})
    assert values == {"budget": {"daily": 5, "monthly": "50"}}


def test_variables_outside_the_prefix_are_ignored_but_an_unknown_prefixed_one_is_not() -> None:
    assert env_values({"HOME": "/root", "OPENROUTER_MODEL": "x", "MODELYARD_TEST_REDIS_URL": "redis://h/0"}) == {}
    for name in ("MODELYARD_NOPE", "MODELYARD_STORE__X", "MODELYARD_BUDGET__NOPE"):
        with pytest.raises(ConfigurationError, match=f"{name} names no setting"):
            env_values({name: "1"})


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("MODELYARD_BUDGET_DAILY", "MODELYARD_BUDGET__DAILY"),
        ("MODELYARD_DAILY_BUDGET", "MODELYARD_BUDGET__DAILY"),
        ("MODELYARD_CACHE_MODE", "MODELYARD_CACHE__MODE"),
        ("MODELYARD_BUDGET__PERREQUEST", "MODELYARD_BUDGET__PER_REQUEST"),
        ("MODELYARD_MAX_RETRY", "MODELYARD_MAX_RETRIES"),
    ],
)
def test_a_prefixed_variable_that_is_no_setting_stops_loading_saying_which_was_meant(
    name: str, meant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of these used to leave the default (no daily limit, the cache on) with no word of it."""
    monkeypatch.setenv(name, "5")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert str(caught.value) == f"{name} names no setting: did you mean {meant}? Rename it, or unset it."


def test_every_variable_a_setting_reads_is_accepted() -> None:
    """The names in the README's table, the groups whole, and a map's key under its name: none is refused."""
    names = ["OPENROUTER_API_KEY", "OPENROUTER_BASE_URL", "MODELYARD_BUDGET", "MODELYARD_CACHE"]
    names += [f"MODELYARD_{field.upper()}" for field in Settings.model_fields if not field.startswith("openrouter")]
    names += [f"MODELYARD_BUDGET__{field.upper()}" for field in BudgetSettings.model_fields]
    names += [f"MODELYARD_CACHE__{field.upper()}" for field in CacheSettings.model_fields]
    names.append("MODELYARD_QUALITY_OVERRIDES__openai/gpt-4o")
    values = env_values(dict.fromkeys(names, "{}"))
    assert set(values) == set(Settings.model_fields)


def test_the_environment_beats_the_file_and_arguments_beat_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _config(tmp_path, 'default_model = "economy"\nmax_retries = 1\nspeed = "fast"\n')
    monkeypatch.setenv("MODELYARD_MAX_RETRIES", "3")
    monkeypatch.setenv("MODELYARD_DEFAULT_MODEL", "balanced")
    settings = load_settings(path, default_model="premium")
    assert (settings.speed, settings.max_retries, settings.default_model) == ("fast", 3, "premium")


def test_every_modelyard_variable_the_project_names_is_accepted() -> None:
    """The package, the README, CI, the benchmarks and the tests name only variables modelyard reads (the
    settings files misspell some on purpose): one read outside the settings must join `PROJECT_VARIABLES`."""
    root = Path(__file__).resolve().parents[1]
    files = [root / "README.md", *(root / ".ci").glob("*")]
    files += [path for folder in ("modelyard", "bench", "tests") for path in (root / folder).rglob("*.py")]
    mentioned = {
        name
        for path in files
        if not path.name.startswith(("test_settings", "settings_env"))
        for name in re.findall(r"\bMODELYARD_\w+\b(?! names no setting)", path.read_text())  # not one quoted refused
        if not name.endswith("_")  # a prefix: `MODELYARD_BUDGET__*`, `f"MODELYARD_{name}"`
    }
    assert {"MODELYARD_DEBUG", "MODELYARD_HTTP_TOKEN", "MODELYARD_TEST_REDIS_URL"} <= mentioned
    env_values(dict.fromkeys(mentioned, "{}"))


def test_a_group_field_set_in_the_environment_keeps_the_files_other_fields_of_the_group(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A per-request limit in the environment used to drop the file's daily and monthly limits."""
    path = _config(tmp_path, '[budget]\ndaily = "5"\nmonthly = "50"\n')
    monkeypatch.setenv("MODELYARD_BUDGET__PER_REQUEST", "0.1")
    budget = load_settings(path).budget
    assert (budget.daily, budget.monthly, budget.per_request) == (Decimal("5"), Decimal("50"), Decimal("0.1"))
    monkeypatch.setenv("MODELYARD_BUDGET__DAILY", "2")
    budget = load_settings(path).budget
    assert (budget.daily, budget.monthly, budget.per_request) == (Decimal("2"), Decimal("50"), Decimal("0.1"))


def test_every_group_merges_field_by_field_across_the_file_the_environment_and_arguments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _config(tmp_path, '[budget]\ndaily = "5"\nmonthly = "50"\n[cache]\nmode = "off"\nttl_s = 60\n')
    monkeypatch.setenv("MODELYARD_BUDGET", '{"monthly": 40, "per_request": 1}')
    monkeypatch.setenv("MODELYARD_CACHE__MAX_ENTRIES", "5")
    settings = load_settings(path, budget={"per_request": "0.5"}, cache={"ttl_s": 30})
    budget, cache = settings.budget, settings.cache
    assert (budget.daily, budget.monthly, budget.per_request) == (Decimal("5"), Decimal("40"), Decimal("0.5"))
    assert (cache.mode, cache.ttl_s, cache.max_entries) == ("off", 30.0, 5)


def test_a_map_in_the_environment_adds_to_the_files_and_wins_per_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _config(tmp_path, '[quality_overrides]\n"a/x" = 10\n"b/y" = 20\n')
    monkeypatch.setenv("MODELYARD_QUALITY_OVERRIDES", '{"b/y": 25, "c/z": 30}')
    assert load_settings(path).quality_overrides == {"a/x": 10.0, "b/y": 25.0, "c/z": 30.0}


def test_an_invalid_field_of_a_merged_group_is_blamed_on_where_that_field_came_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _config(tmp_path, '[budget]\nmonthly = "lots"\n')
    monkeypatch.setenv("MODELYARD_BUDGET", '{"daily": "some"}')
    monkeypatch.setenv("MODELYARD_BUDGET__PER_REQUEST", "much")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert f"setting budget.monthly from {path}:" in message
    assert "setting budget.daily from MODELYARD_BUDGET:" in message
    assert "setting budget.per_request from MODELYARD_BUDGET__PER_REQUEST:" in message


def test_a_group_given_empty_in_the_environment_leaves_the_blame_for_the_files_fields_with_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _config(tmp_path, "[cache]\nttl_s = -1\n")
    monkeypatch.setenv("MODELYARD_CACHE", "{}")
    with pytest.raises(ConfigurationError, match=rf"setting cache\.ttl_s from {path}: Input should be greater"):
        load_settings(path)


def test_building_settings_reads_nothing_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_MAX_RETRIES", "9")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-env")
    settings = Settings()
    assert settings.max_retries == 2 and settings.api_key is None


def test_an_invalid_variable_is_named_with_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_MAX_RETRIES", "abc")
    monkeypatch.setenv("MODELYARD_BUDGET__DAILY", "lots")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "max_retries from MODELYARD_MAX_RETRIES" in message and "valid integer" in message and "'abc'" in message
    assert "budget.daily from MODELYARD_BUDGET__DAILY" in message and "'lots'" in message


def test_a_key_read_with_its_line_end_is_used_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-abc\r\n")
    monkeypatch.setenv("MODELYARD_HTTP_TOKEN", " token-1 ")
    settings = load_settings()
    assert settings.api_key == "sk-or-v1-abc"
    assert settings.http_token is not None and settings.http_token.get_secret_value() == "token-1"


def test_a_key_with_a_space_inside_is_refused_naming_the_variable_not_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-abc def")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "OPENROUTER_API_KEY" in message and "copy it again" in message
    assert "abc" not in message


def test_an_invalid_value_in_the_file_names_the_file(tmp_path: Path) -> None:
    path = _config(tmp_path, 'quality = "best"\n')
    with pytest.raises(ConfigurationError, match=rf"quality from {path}: Input should be 'low', 'medium' or 'high'"):
        load_settings(path)


def test_a_list_that_is_not_json_says_so_and_gives_an_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_FALLBACK_MODELS", "a,b")
    with pytest.raises(ConfigurationError, match=r"MODELYARD_FALLBACK_MODELS must be JSON, e.g. '\[\"a\", \"b\"\]'"):
        load_settings()


def test_an_invalid_secret_is_named_but_never_shown(tmp_path: Path) -> None:
    path = _config(tmp_path, "http_token = 123456789\nOPENROUTER_API_KEY = 987654321\n")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "http_token" in message and "openrouter_api_key" in message
    assert "123456789" not in message and "987654321" not in message


def test_a_named_config_file_must_exist_and_be_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ConfigurationError, match="is not valid TOML"):
        load_settings(_config(tmp_path, "max_retries = = 2\n"))


def test_a_files_keys_may_use_any_case_and_the_openrouter_names_and_the_environment_still_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _config(
        tmp_path, 'OPENROUTER_API_KEY = "sk-file"\nMAX_RETRIES = 7\nOPENROUTER_BASE_URL = "http://file/api/v1"\n'
    )
    settings = load_settings(path)
    assert (settings.api_key, settings.max_retries) == ("sk-file", 7)
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-env")
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://env/api/v1")
    settings = load_settings(path)
    assert (settings.api_key, settings.openrouter_base_url) == ("sk-env", "http://env/api/v1")


def test_an_invalid_value_under_a_files_openrouter_name_names_the_file(tmp_path: Path) -> None:
    path = _config(tmp_path, "OPENROUTER_BASE_URL = 5\n")
    with pytest.raises(
        ConfigurationError, match=rf"setting openrouter_base_url from {path}: Input should be a valid string"
    ):
        load_settings(path)


def test_a_variable_nested_under_another_ones_value_is_an_error_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_BUDGET__DAILY", "1")
    monkeypatch.setenv("MODELYARD_BUDGET__DAILY__X", "2")
    with pytest.raises(ConfigurationError, match="MODELYARD_BUDGET__DAILY__X names no setting: did you mean"):
        load_settings()
    monkeypatch.delenv("MODELYARD_BUDGET__DAILY")
    monkeypatch.delenv("MODELYARD_BUDGET__DAILY__X")
    monkeypatch.setenv("MODELYARD_QUALITY_OVERRIDES", '{"m": 5}')
    monkeypatch.setenv("MODELYARD_QUALITY_OVERRIDES__M__X", "2")
    with pytest.raises(ConfigurationError, match=r"quality_overrides\.m from MODELYARD_QUALITY_OVERRIDES__M__X"):
        load_settings()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"max_retries = \xff\n", "is not valid TOML"),
        (b"max_retries = " + b"9" * 5000 + b"\n", "is not valid TOML"),
        (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "is not valid TOML"),
    ],
    ids=["not-utf-8", "huge-number", "deep-nesting"],
)
def test_no_file_makes_loading_fail_with_anything_but_a_configuration_error(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=expected):
        load_settings(path)


def test_an_unreadable_config_path_and_deeply_nested_json_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_settings(tmp_path)  # a directory
    monkeypatch.setenv("MODELYARD_FALLBACK_MODELS", "[" * 100_000)
    with pytest.raises(ConfigurationError, match="MODELYARD_FALLBACK_MODELS must be JSON"):
        load_settings()


def test_a_group_given_as_an_argument_is_blamed_on_the_argument_not_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELYARD_BUDGET__DAILY", "1")
    with pytest.raises(ConfigurationError, match=r"setting budget\.daily from an argument"):
        load_settings(budget={"daily": "lots"})


OUT_OF_RANGE = [
    ("request_timeout_s", "nan", "a finite number"),
    ("request_timeout_s", "-1", "greater than 0"),
    ("request_timeout_s", "0", "greater than 0"),
    ("connect_timeout_s", "-1", "greater than 0"),
    ("connect_timeout_s", "inf", "a finite number"),
    ("max_retries", "-1", "greater than or equal to 0"),
    ("max_attempts", "0", "greater than or equal to 1"),
    ("max_attempts", "1001", "less than or equal to 1000"),
    ("reservation_margin_s", "-1e9", "greater than or equal to 0"),
    ("default_max_tokens", "0", "greater than or equal to 1"),
    ("max_cost_per_1k", "-0.01", "greater than or equal to 0"),
    ("budget.daily", "-5", "greater than or equal to 0"),
    ("budget.monthly", "1e10", "less than or equal to 1000000000"),
    ("budget.per_request", "nan", "a finite number"),
    ("cache.ttl_s", "-1", "greater than or equal to 0"),
    ("cache.max_entries", "-1", "greater than or equal to 0"),
    ("catalog_ttl_s", "1e300", "less than or equal to 1000000000"),
]


@pytest.mark.parametrize(("setting", "value", "wanted"), OUT_OF_RANGE, ids=[f"{s}={v}" for s, v, _ in OUT_OF_RANGE])
def test_a_number_out_of_range_is_refused_at_load_naming_the_setting_and_its_variable(
    setting: str, value: str, wanted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found later, it was a traceback, an upstream 400 blamed on the model, or a hold that never expires."""
    variable = "MODELYARD_" + setting.upper().replace(".", "__")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert f"setting {setting} from {variable}: Input should be {wanted} (got '{value}')" in str(caught.value)


def test_a_quality_override_outside_0_to_100_is_refused_naming_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_QUALITY_OVERRIDES", '{"openai/gpt-4o": 101}')
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "setting quality_overrides.openai/gpt-4o from MODELYARD_QUALITY_OVERRIDES: Input should be less" in message


def test_zero_is_accepted_where_it_means_none_or_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache of 0 entries or 0 seconds stores nothing, a catalog TTL of 0 refetches on every use, 0 retries
    moves on at once, a budget of 0 spends nothing, a price cap of 0 allows only free models."""
    for name in ("CACHE__TTL_S", "CACHE__MAX_ENTRIES", "CATALOG_TTL_S", "MAX_RETRIES", "RESERVATION_MARGIN_S"):
        monkeypatch.setenv(f"MODELYARD_{name}", "0")
    monkeypatch.setenv("MODELYARD_BUDGET__DAILY", "0")
    monkeypatch.setenv("MODELYARD_MAX_COST_PER_1K", "0")
    settings = load_settings()
    assert (settings.cache.ttl_s, settings.cache.max_entries, settings.catalog_ttl_s) == (0, 0, 0)
    assert (settings.max_retries, settings.reservation_margin_s) == (0, 0)
    assert settings.budget.daily == 0 and settings.max_cost_per_1k == 0


def test_the_highest_budget_limit_is_the_one_the_budget_manager_accepts() -> None:
    """settings cannot import routing, so the ceiling is written twice: they must agree."""
    from modelyard.routing.budget import MAX_LIMIT

    assert load_settings(budget={"daily": MAX_LIMIT}).budget.daily == MAX_LIMIT
    with pytest.raises(ConfigurationError, match=r"setting budget\.daily from an argument: Input should be less"):
        load_settings(budget={"daily": MAX_LIMIT + Decimal("0.01")})


def test_a_number_out_of_range_in_the_file_names_the_file(tmp_path: Path) -> None:
    path = _config(tmp_path, "max_attempts = 0\n")
    with pytest.raises(ConfigurationError, match=rf"setting max_attempts from {path}: Input should be greater"):
        load_settings(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[budget]\ndayly = 5\n", "unknown setting 'budget.dayly' in {path}; did you mean 'budget.daily'?"),
        ("[budgets]\ndaily = 5\n", "unknown setting 'budgets' in {path}; did you mean 'budget'?"),
        ("max_retry = 0\n", "unknown setting 'max_retry' in {path}; did you mean 'max_retries'?"),
        ("[cache]\nTTL_S = 60\n", "unknown setting 'cache.TTL_S' in {path}; did you mean 'cache.ttl_s'?"),
        (
            "[cache]\nsize = 5\n",
            "unknown setting 'cache.size' in {path}; the settings under [cache] are mode, ttl_s, max_entries",
        ),
    ],
    ids=["field-in-a-group", "group", "top-level", "case-in-a-group", "no-close-match"],
)
def test_a_key_in_the_file_that_names_no_setting_is_an_error_saying_which_was_meant(
    text: str, expected: str, tmp_path: Path
) -> None:
    """A typo under [budget] would otherwise leave the operator with no spending limit, and no word of it."""
    path = _config(tmp_path, text)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)
    assert str(caught.value) == expected.format(path=path)


def test_every_unknown_key_in_the_file_is_named_at_once(tmp_path: Path) -> None:
    path = _config(tmp_path, 'max_retry = 0\ncolour = "red"\n[budget]\ndayly = 5\n')
    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)
    lines = str(caught.value).splitlines()
    assert [line.split(";")[0] for line in lines] == [
        f"unknown setting 'max_retry' in {path}",
        f"unknown setting 'colour' in {path}",
        f"unknown setting 'budget.dayly' in {path}",
    ]
    assert lines[1].endswith("the settings at the top level are " + ", ".join(Settings.model_fields))


def test_the_files_own_keys_any_case_aliases_and_model_ids_pass_the_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _config(
        tmp_path,
        'OPENROUTER_API_KEY = "sk-file"\nMax_Retries = 1\n[budget]\ndaily = "5"\n'
        '[cache]\nttl_s = 60\n[quality_overrides]\n"openai/gpt-4o-mini" = 30\n',
    )
    monkeypatch.setenv("NOT_MODELYARD_NOPE", "1")  # the environment holds much that is not ours: ignored
    settings = load_settings(path)
    assert (settings.api_key, settings.max_retries, settings.budget.daily) == ("sk-file", 1, Decimal("5"))
    assert settings.cache.ttl_s == 60 and settings.quality_overrides == {"openai/gpt-4o-mini": 30.0}


def test_a_misspelt_field_of_a_group_in_a_variable_is_refused_not_left_to_replace_the_files_group(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """MODELYARD_BUDGET__DAYLY used to set the budget group to nothing, dropping the file's daily limit."""
    path = _config(tmp_path, "[budget]\ndaily = 5\n")
    monkeypatch.setenv("MODELYARD_BUDGET__DAYLY", "3")
    with pytest.raises(
        ConfigurationError, match="MODELYARD_BUDGET__DAYLY names no setting: did you mean MODELYARD_BUDGET__DAILY"
    ):
        load_settings(path)


@pytest.mark.parametrize(
    "url", ["localhost:8399", "localhost:8399/api/v1", "openrouter.ai/api/v1", "ftp://openrouter.ai/api/v1", "https://"]
)
def test_a_base_url_without_an_http_scheme_or_a_host_is_refused_at_load_with_an_example(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`localhost:8399` used to fail only at the first request, as "Could not reach OpenRouter (ReadError: ...)"."""
    monkeypatch.setenv("OPENROUTER_BASE_URL", url)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("Invalid settings: setting openrouter_base_url from OPENROUTER_BASE_URL: ")
    assert "e.g. https://openrouter.ai/api/v1" in message and f"(got {url!r})" in message


@pytest.mark.parametrize(
    "url",
    ["https://openrouter.ai/api/v1", "http://127.0.0.1:8399/api/v1", "http://proxy.internal:8080", "HTTPS://[::1]/"],
)
def test_any_http_or_https_url_with_a_host_is_a_base_url_whatever_its_path(url: str) -> None:
    assert load_settings(openrouter_base_url=url).openrouter_base_url == url


def test_the_budget_command_shows_the_files_limits_beside_a_limit_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`modelyard --config b.toml budget` with MODELYARD_BUDGET__PER_REQUEST showed daily and monthly as no limit."""
    from modelyard.cli import main

    path = _config(tmp_path, '[budget]\ndaily = "5"\nmonthly = "50"\n')
    monkeypatch.setenv("MODELYARD_STORE", f"sqlite:///{tmp_path / 'budget.db'}")
    monkeypatch.setenv("MODELYARD_BUDGET__PER_REQUEST", "0.1")
    main(["--config", str(path), "budget"])
    out = capsys.readouterr().out
    assert re.search(r"daily +\$5 ", out) and re.search(r"monthly +\$50 ", out)
    assert re.search(r"per request +\$0\.1", out)


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("MODELYARD_BUDGET_DAILY", "5", "did you mean MODELYARD_BUDGET__DAILY?"),
        ("OPENROUTER_BASE_URL", "localhost:8399", "e.g. https://openrouter.ai/api/v1"),
    ],
)
def test_the_cli_stops_before_doing_anything_on_a_misnamed_variable_or_a_base_url_with_no_scheme(
    name: str,
    value: str,
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modelyard.cli import main

    monkeypatch.setenv("MODELYARD_STORE", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        main(["run", "Hello"])
    err = capsys.readouterr().err
    assert stopped.value.code == 1 and name in err and said in err and "Could not reach" not in err


@pytest.mark.parametrize(
    "url", ["http://localhost:abc/api/v1", "http://localhost:99999/api/v1", "https://openrouter.ai/api\x7f/v1"]
)
def test_a_base_url_the_client_cannot_use_is_refused_at_load(url: str) -> None:
    """A bad port or a control character passed the check: the client then failed at the start with a
    traceback (`httpx2.InvalidURL: Invalid port: 'abc'`) or at the first request."""
    with pytest.raises(ConfigurationError, match="setting openrouter_base_url from an argument: "):
        load_settings(openrouter_base_url=url)


@pytest.mark.parametrize("url", ["https://openrouter.ai/api/v1\r", " https://openrouter.ai/api/v1\n"])
def test_a_base_url_read_with_a_line_end_or_spaces_around_it_still_works(url: str) -> None:
    """As the key does (an env file with Windows line ends): it passed the check as given, and the client then
    sent `%20https://...` or stopped the start with `InvalidURL: Invalid non-printable ASCII character`."""
    assert load_settings(openrouter_base_url=url).openrouter_base_url == "https://openrouter.ai/api/v1"


def test_a_base_url_with_a_user_or_password_is_refused_at_load_without_showing_the_password() -> None:
    """The default client refused such a URL beside the bearer key at every request, with a traceback
    ("Cannot combine AUTHORIZATION header with AUTH argument or credentials encoded in URL")."""
    for url in ("https://proxyuser:hunter2-secret@proxy.example/api/v1", "https://proxyuser@proxy.example/api/v1"):
        with pytest.raises(ConfigurationError, match="must not carry a user or password") as caught:
            load_settings(openrouter_base_url=url)
        assert "hunter2-secret" not in str(caught.value)


def test_a_refused_base_urls_password_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_BASE_URL", "ftp://proxyuser:hunter2-secret@proxy.example/api/v1")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "hunter2-secret" not in str(caught.value) and "proxyuser:***@proxy.example" in str(caught.value)


def test_a_misspelt_field_in_a_group_given_whole_as_json_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """`MODELYARD_BUDGET='{"dayly": 5}'` left no daily limit with no word of it, as the variables the README
    says are refused would have."""
    monkeypatch.setenv("MODELYARD_BUDGET", '{"dayly": 5, "monthly": 50}')
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert str(caught.value) == "MODELYARD_BUDGET sets 'dayly', no field of budget: did you mean 'daily'?"


def test_a_map_variable_with_no_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """`MODELYARD_QUALITY_OVERRIDES__=90` (the model id lost, say to an unset shell variable) was accepted and
    set nothing."""
    monkeypatch.setenv("MODELYARD_QUALITY_OVERRIDES__", "90")
    with pytest.raises(ConfigurationError, match="MODELYARD_QUALITY_OVERRIDES__ names no setting"):
        load_settings()
