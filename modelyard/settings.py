"""Settings from the environment (`OPENROUTER_*`, `MODELYARD_*`) and an optional TOML file.

Precedence, highest first: keyword arguments, environment variables, the TOML file, defaults.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = ["BudgetSettings", "CacheSettings", "Settings", "default_config_path", "load_settings"]

APP = "modelyard"


def default_config_path() -> Path:
    """Where `--config` points when it is not given: the user's config dir."""
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def _default_store() -> str:
    return f"sqlite:///{Path(platformdirs.user_data_dir(APP)) / 'modelyard.db'}"


class BudgetSettings(BaseModel):
    """Spending limits in USD; None means no limit."""

    daily: Decimal | None = None
    """Total spend allowed per UTC day."""
    monthly: Decimal | None = None
    """Total spend allowed per UTC month."""
    per_request: Decimal | None = None
    """Worst-case cost allowed for one request."""


class CacheSettings(BaseModel):
    """The response cache."""

    mode: Literal["auto", "on", "off"] = "auto"
    """`auto` caches deterministic requests only (temperature 0 or a seed)."""
    ttl_s: float = 3600.0
    """Seconds an entry stays valid."""
    max_entries: int = 1000
    """Entries kept before the least recently used is evicted."""


class Settings(BaseSettings):
    """Everything modelyard can be told. Secrets are `SecretStr` so they never print."""

    model_config = SettingsConfigDict(
        env_prefix="MODELYARD_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    openrouter_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENROUTER_API_KEY", "openrouter_api_key")
    )
    """The OpenRouter key (`OPENROUTER_API_KEY`)."""
    openrouter_base_url: str = Field(
        default="https://openrouter.ai/api/v1",
        validation_alias=AliasChoices("OPENROUTER_BASE_URL", "openrouter_base_url"),
    )
    """The API root (`OPENROUTER_BASE_URL`); point it at `modelyard sandbox` to work offline."""
    default_model: str = "auto"
    """Model used when a request names none: `auto`, a tier, an id or a short name."""
    fallback_models: list[str] = Field(default_factory=list)
    """Models tried, in order, after the selected candidates fail."""
    request_timeout_s: float = 120.0
    """Read timeout for one upstream request (gap between stream chunks)."""
    connect_timeout_s: float = 10.0
    """Seconds to open a connection upstream."""
    max_retries: int = 2
    """Same-model retries on 429/5xx/timeouts."""
    max_attempts: int = 6
    """Hard cap on upstream attempts per request, across all models."""
    reservation_margin_s: float = 60.0
    """Seconds a budget reservation outlives its request's worst case (request_timeout_s x max_attempts),
    after which a dead instance's hold expires."""
    default_max_tokens: int = 4096
    """max_tokens sent (and reserved for) when a request gives none; capped by the model's limit."""
    max_cost_per_1k: Decimal | None = None
    """Default cap: USD per 1K tokens, both prompt and completion price must be under it."""
    quality: Literal["low", "medium", "high"] = "medium"
    """Default preference for quality when selecting automatically."""
    speed: Literal["any", "fast"] = "any"
    """Default preference for speed."""
    capabilities: list[str] = Field(default_factory=list)
    """Capabilities every request needs by default."""
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    """Daily, monthly and per-request budgets."""
    cache: CacheSettings = Field(default_factory=CacheSettings)
    """The response cache."""
    catalog_ttl_s: float = 3600.0
    """Seconds before the model catalog is fetched again."""
    quality_overrides: dict[str, float] = Field(default_factory=dict)
    """Quality score per model id (0-100), replacing the catalog's or the estimate."""
    store: str = Field(default_factory=_default_store)
    """`sqlite:///path.db` (default, in the user data dir) or `redis://host:port/db`."""
    allowed_image_dirs: list[Path] = Field(default_factory=list)
    """Directories from which `execute` may read local image files."""
    http_token: SecretStr | None = None
    """Bearer token HTTP transports require (mandatory off loopback)."""
    http_stateless: bool = False
    """Streamable HTTP without server-side sessions: every request stands alone, so instances can sit
    behind a round-robin balancer with no sticky sessions (`MODELYARD_HTTP_STATELESS`)."""
    debug: bool = False
    """Verbose logging to stderr."""

    @property
    def api_key(self) -> str | None:
        """The OpenRouter key as plain text, for the client only."""
        return self.openrouter_api_key.get_secret_value() if self.openrouter_api_key else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the TOML file (if it exists), then the environment, then `overrides`.

    Raises:
        ConfigurationError: the TOML file is not valid TOML.
    """
    from modelyard.errors import ConfigurationError

    path = config or default_config_path()
    file_values: dict[str, Any] = {}
    if path.exists():
        try:
            file_values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    elif config is not None:
        raise ConfigurationError(f"Config file {path} does not exist.")
    env_values = Settings().model_dump(exclude_unset=True)
    return Settings.model_validate({**file_values, **env_values, **overrides})
