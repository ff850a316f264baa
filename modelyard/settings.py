"""Settings from the environment (`OPENROUTER_*`, `MODELYARD_*`) and an optional TOML file.

Precedence, highest first: keyword arguments, environment variables, the TOML file, defaults. A group
(`budget`, `cache`) or a map set in more than one place is merged key by key, the higher source winning
each key, as pydantic-settings' deep update does.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from modelyard.errors import ConfigurationError
from modelyard.settings_env import NESTED, PREFIX, check_variables, env_names, group_model, variables, wants_json
from modelyard.settings_file import check_file_keys, read_file_values

__all__ = [
    "BudgetSettings",
    "CacheSettings",
    "Settings",
    "clean_secret",
    "default_config_path",
    "env_values",
    "load_settings",
]

APP = "modelyard"


def clean_secret(value: str, name: str) -> str:
    """`value` without the whitespace around it: a key pasted with its newline, or read from a file
    with Windows line ends, still works.

    Raises:
        ValueError: what is left holds a space, a control character or a non-ASCII character, which
            cannot go in an HTTP header. The message names `name`, never the value.
    """
    stripped = value.strip()
    if stripped.isascii() and stripped.isprintable() and " " not in stripped:
        return stripped
    raise ValueError(f"{name} holds a space, a control character or a non-ASCII character inside it: copy it again")


def default_config_path() -> Path:
    """Where `--config` points when it is not given: the user's config dir."""
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def _default_store() -> str:
    return f"sqlite:///{Path(platformdirs.user_data_dir(APP)) / 'modelyard.db'}"


_MAX_USD = Decimal(10) ** 9
"""The highest budget limit: `modelyard.routing.budget.MAX_LIMIT`, repeated (settings sit below routing)."""
_MAX_SECONDS = 10**9
"""The longest duration a setting may give (about 31 years): far beyond any use, it keeps what is computed
from it finite (`request_timeout_s x max_attempts`, a Redis expiry in milliseconds)."""
_MAX_ATTEMPTS = 1000
"""The most attempts (and retries) a request may be allowed: past ~1024 the retry backoff overflows a float."""

_Usd = Annotated[Decimal, Field(ge=0, le=_MAX_USD)]
"""A budget limit: 0 (nothing may be spent) to `_MAX_USD`; a Decimal is always finite here."""
_Seconds = Annotated[float, Field(gt=0, le=_MAX_SECONDS, allow_inf_nan=False)]
"""A timeout: positive and finite."""
_SecondsOrZero = Annotated[float, Field(ge=0, le=_MAX_SECONDS, allow_inf_nan=False)]
"""A lifetime or a margin where 0 means none: finite, not negative."""


class BudgetSettings(BaseModel):
    """Spending limits in USD; None means no limit."""

    daily: _Usd | None = None
    """Total spend allowed per UTC day."""
    monthly: _Usd | None = None
    """Total spend allowed per UTC month."""
    per_request: _Usd | None = None
    """Worst-case cost allowed for one request."""


class CacheSettings(BaseModel):
    """The response cache."""

    mode: Literal["auto", "on", "off"] = "auto"
    """`auto` caches deterministic requests only (temperature 0 or a seed)."""
    ttl_s: _SecondsOrZero = 3600.0
    """Seconds an entry stays valid; 0 stores nothing."""
    max_entries: int = Field(default=1000, ge=0)
    """Entries kept before the least recently used is evicted; 0 stores nothing."""


_DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"


class Settings(BaseModel):
    """Everything modelyard can be told. Secrets are `SecretStr` so they never print.

    Building one reads nothing: `load_settings` gathers the file and the environment.
    """

    model_config = ConfigDict(extra="ignore", validate_default=True)

    openrouter_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENROUTER_API_KEY", "openrouter_api_key")
    )
    """The OpenRouter key (`OPENROUTER_API_KEY`)."""
    openrouter_base_url: str = Field(
        default=_DEFAULT_BASE_URL,
        validation_alias=AliasChoices("OPENROUTER_BASE_URL", "openrouter_base_url"),
    )
    """The API root (`OPENROUTER_BASE_URL`); point it at `modelyard sandbox` to work offline."""
    default_model: str = "auto"
    """Model used when a request names none: `auto`, a tier, an id or a short name."""
    fallback_models: list[str] = Field(default_factory=list)
    """Models tried, in order, after the selected candidates fail."""
    request_timeout_s: _Seconds = 120.0
    """Read timeout for one upstream request (the wait for a stream's next chunk)."""
    connect_timeout_s: _Seconds = 10.0
    """Seconds to open a connection upstream."""
    max_retries: int = Field(default=2, ge=0, le=_MAX_ATTEMPTS)
    """Same-model retries on 429/5xx/timeouts; 0 moves to the next model at once."""
    max_attempts: int = Field(default=6, ge=1, le=_MAX_ATTEMPTS)
    """Hard cap on upstream attempts per request, across all models."""
    reservation_margin_s: _SecondsOrZero = 60.0
    """Seconds a budget reservation outlives its request's worst case (request_timeout_s x max_attempts),
    after which a dead instance's hold expires."""
    default_max_tokens: int = Field(default=4096, ge=1)
    """max_tokens sent (and reserved for) when a request gives none; capped by the model's limit."""
    max_cost_per_1k: Decimal | None = Field(default=None, ge=0)
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
    catalog_ttl_s: _SecondsOrZero = 3600.0
    """Seconds before the model catalog is fetched again; 0 fetches it on every use."""
    quality_overrides: dict[str, Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]] = Field(
        default_factory=dict
    )
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

    @field_validator("openrouter_api_key", "http_token", mode="before")
    @classmethod
    def _clean_secret(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return clean_secret(value, "the value") if isinstance(value, str) else value

    @field_validator("openrouter_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        """An http(s) URL with a host and a valid port, any path (proxies differ), without the whitespace
        around it: `localhost:8399` would fail only at the first request, as a connection error blamed on
        OpenRouter, and a bad port or a control character at the start, with a traceback."""
        value = value.strip()
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number from 0 to 65535
        except ValueError:
            raise ValueError("its port must be a number from 0 to 65535") from None
        if parts.username is not None or parts.password is not None:
            # aiohttp refuses a URL's credentials beside the bearer key: every request would fail.
            raise ValueError("it must not carry a user or password: the key goes in OPENROUTER_API_KEY")
        if parts.scheme.lower() in ("http", "https") and parts.hostname and value.isprintable():
            return value
        raise ValueError(f"it must be an http:// or https:// URL with a host, e.g. {_DEFAULT_BASE_URL}")

    @property
    def api_key(self) -> str | None:
        """The OpenRouter key as plain text, for the client only."""
        return self.openrouter_api_key.get_secret_value() if self.openrouter_api_key else None


_SECRETS = frozenset({"openrouter_api_key", "http_token"})


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the TOML file (if it exists), then the environment, then `overrides`.

    Raises:
        ConfigurationError: the TOML file is missing (when named), not valid TOML, or sets a key that
            is no setting (a typo would otherwise leave, say, no budget at all); a `MODELYARD_*` variable
            is no setting; or a value is invalid. The message names the variable or file it came from.
    """
    path = config or default_config_path()
    raw_file = read_file_values(path, required=config is not None)
    check_file_keys(raw_file, path, Settings, field_of=_field_of)
    file_values = _by_field(raw_file)
    env_origins: dict[tuple[str, ...], str] = {}
    from_env = env_values(os.environ, env_origins)
    overrides = _by_field(overrides)
    sources = _merged(
        _sources(file_values, {}, str(path)), _sources(from_env, env_origins), _sources(overrides, {}, "an argument")
    )
    try:
        return Settings.model_validate(_merged(file_values, from_env, overrides))
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, sources)) from None


def env_values(environ: Mapping[str, str], origins: dict[tuple[str, ...], str] | None = None) -> dict[str, Any]:
    """The settings `environ` sets, as raw values by field name, for `Settings.model_validate`.

    Names are case-insensitive: `MODELYARD_<FIELD>`, or a field's own alias (`OPENROUTER_API_KEY`);
    `MODELYARD_<GROUP>__<FIELD>` sets one field of a group; lists, maps and groups given whole are
    JSON. `origins`, when given, learns which variable set each value.

    Raises:
        ConfigurationError: a `MODELYARD_*` variable names no setting (see `modelyard.settings_env`), or a
            list, map or group is not valid JSON.
    """
    known, open_prefixes = variables(Settings)
    check_variables(environ, known, open_prefixes=open_prefixes)
    by_name = {name.lower(): (name, value) for name, value in environ.items()}
    values: dict[str, Any] = {}
    for field, info in Settings.model_fields.items():
        for alias in env_names(field, info.validation_alias):
            if alias in by_name:
                name, raw = by_name[alias]
                values[field] = _decode(name, raw) if wants_json(info.annotation) else raw
                _check_group_keys(name, field, values[field])
                if origins is not None:
                    origins[(field,)] = name
                break
    prefix = PREFIX.lower()
    for lowered, (name, raw) in by_name.items():
        if not lowered.startswith(prefix) or NESTED not in lowered:
            continue
        path = lowered[len(prefix) :].split(NESTED)
        group_info = Settings.model_fields.get(path[0])
        if group_info is None or not wants_json(group_info.annotation) or not all(path):
            continue
        group = values.setdefault(path[0], {})
        if not isinstance(group, dict):
            continue
        for key in path[1:-1]:
            if not isinstance(group.get(key), dict):
                group[key] = {}
            group = group[key]
        group[path[-1]] = raw
        if origins is not None:
            origins[tuple(path)] = name
    return values


def _check_group_keys(name: str, field: str, value: Any) -> None:
    """A group given whole as JSON (`MODELYARD_BUDGET`) must name only its fields: `{"dayly": 5}` would
    leave no daily limit and say nothing.

    Raises:
        ConfigurationError: one line per unknown key, with the field it most looks like.
    """
    group = group_model(Settings.model_fields[field].annotation)
    if group is None or not isinstance(value, Mapping):
        return
    fields = list(group.model_fields)
    unknown = [key for key in value if key not in fields]
    if not unknown:
        return
    from difflib import get_close_matches  # only for a mistake: not on every start

    lines = []
    for key in unknown:
        close = get_close_matches(str(key).lower(), fields, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"its fields are {', '.join(fields)}."
        lines.append(f"{name} sets {key!r}, no field of {field}: {hint}")
    raise ConfigurationError("\n".join(lines))


def _by_field(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` keyed by field name: a file or an argument may use any case, and the key's OpenRouter name."""
    return {_field_of(key.lower()): value for key, value in values.items()}


def _merged(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """`layers` merged, later ones winning key by key: where two set a group or a map, the result keeps the
    keys only the lower one sets (pydantic-settings' deep update)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            below = merged.get(key)
            merged[key] = _merged(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return merged


def _sources(
    values: Mapping[str, Any], origins: Mapping[tuple[str, ...], str], source: str = "", at: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`values`' shape, each value replaced by where it came from: the nearest of `origins` at or above it,
    else `source`. Merged as the values are, it says where each merged value came from."""
    tree: dict[str, Any] = {}
    for key, value in values.items():
        path = (*at, key)
        here = origins.get(path, source)
        tree[key] = _sources(value, origins, here, path) if isinstance(value, Mapping) else here
    return tree


def _decode(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        example = '\'["a", "b"]\' or \'{"key": 1}\''
        raise ConfigurationError(f"{name} must be JSON, e.g. {example}: {exc}") from None


def _describe(exc: ValidationError, sources: Mapping[str, Any]) -> str:
    """One line per invalid value: the setting, where it came from, what is wrong, and the value (not a secret's)."""
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        if loc:
            loc = (_field_of(loc[0].lower()), *loc[1:])
        source = _source(sources, loc)
        shown = "" if loc and loc[0] in _SECRETS else f" (got {_clipped(_redacted(repr(error['input'])))})"
        lines.append(f"setting {'.'.join(loc)} from {source}: {error['msg']}{shown}")
    return "Invalid settings: " + "; ".join(lines)


def _source(sources: Mapping[str, Any], loc: tuple[str, ...]) -> str:
    """Where the value at `loc` came from, in the tree `_sources` built: what set it or a value above it;
    if the value is a group or map, what set the first value in it; else the defaults."""
    node: Any = sources
    for part in loc:
        if isinstance(node, str):
            return node
        if part not in node:
            return "the defaults"
        node = node[part]
    while isinstance(node, Mapping) and node:
        node = next(iter(node.values()))
    return node if isinstance(node, str) else "the defaults"


def _redacted(text: str) -> str:
    """`text` with the password of any URL in it hidden (a base URL may carry a proxy's)."""
    return re.sub(r"://([^:/@\s]*):[^@/\s]*@", r"://\1:***@", text)


def _clipped(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field_of(key: str) -> str:
    for field, info in Settings.model_fields.items():
        if key == field or key in env_names(field, info.validation_alias):
            return field
    return key
