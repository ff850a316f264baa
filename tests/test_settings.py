"""Settings: where each value comes from, in what order, and what a bad one says."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from modelyard.errors import ConfigurationError
from modelyard.settings import Settings, env_values, load_settings


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


def test_the_key_is_not_read_from_a_prefixed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_OPENROUTER_API_KEY", "sk-ignored")
    assert load_settings().api_key is None


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


def test_unknown_variables_and_unknown_group_fields_are_ignored() -> None:
    assert env_values({"MODELYARD_NOPE": "1", "MODELYARD_STORE__X": "1", "HOME": "/root"}) == {}
    assert Settings.model_validate(env_values({"MODELYARD_BUDGET__NOPE": "1"})).budget.daily is None


def test_the_environment_beats_the_file_and_arguments_beat_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _config(tmp_path, 'default_model = "economy"\nmax_retries = 1\nspeed = "fast"\n')
    monkeypatch.setenv("MODELYARD_MAX_RETRIES", "3")
    monkeypatch.setenv("MODELYARD_DEFAULT_MODEL", "balanced")
    settings = load_settings(path, default_model="premium")
    assert (settings.speed, settings.max_retries, settings.default_model) == ("fast", 3, "premium")


def test_a_group_set_in_the_environment_replaces_the_files_group(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _config(tmp_path, "[budget]\ndaily = 5\nmonthly = 50\n")
    assert load_settings(path).budget.monthly == Decimal("50")
    monkeypatch.setenv("MODELYARD_BUDGET__DAILY", "2")
    budget = load_settings(path).budget
    assert budget.daily == Decimal("2") and budget.monthly is None  # as the README says: set a group in one place


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
    with pytest.raises(ConfigurationError, match=r"budget\.daily from MODELYARD_BUDGET__DAILY"):
        load_settings()
    assert env_values({"MODELYARD_BUDGET": '{"daily": 5}', "MODELYARD_BUDGET__DAILY__X": "2"}) == {
        "budget": {"daily": {"x": "2"}}
    }


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
