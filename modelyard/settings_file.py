"""The TOML settings file: reading it, and refusing a key in it that names no setting."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from modelyard.errors import ConfigurationError
from modelyard.settings_env import group_model

__all__ = ["check_file_keys", "read_file_values"]


def read_file_values(path: Path, *, required: bool) -> dict[str, Any]:
    """The TOML file's values; `{}` for a missing file unless it was asked for (`--config`).

    Raises:
        ConfigurationError: asked for and missing, unreadable, or not TOML.
    """
    if not path.exists():
        if required:
            raise ConfigurationError(f"Config file {path} does not exist.")
        return {}
    import tomllib  # only when there is a file: most servers get their settings from the environment

    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigurationError(f"Config file {path} cannot be read: {exc}") from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, not TOML, or nested too deep
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None


def check_file_keys(
    values: Mapping[str, Any], path: Path, model: type[BaseModel], *, field_of: Callable[[str], str]
) -> None:
    """Refuse a file key that names no setting, with the setting it most looks like.

    `field_of` maps a top-level key (any case, or a setting's alias) to its field. The file is
    modelyard's own, like the `MODELYARD_` prefix (`modelyard.settings_env`): a key in it that no
    setting reads is a mistake.

    Raises:
        ConfigurationError: one line per unknown key, dotted (`budget.dayly`), naming the file.
    """
    problems = _unknown_keys(values, model, (), path, field_of)
    if problems:
        raise ConfigurationError("\n".join(problems))


def _unknown_keys(
    values: Mapping[str, Any],
    model: type[BaseModel],
    parents: tuple[str, ...],
    path: Path,
    field_of: Callable[[str], str],
) -> list[str]:
    """What is wrong with `values`' keys as fields of `model`, descending into the groups they set."""
    problems = []
    for key, value in values.items():
        field = key if parents else field_of(key.lower())  # top-level keys may use any case, or their alias
        info = model.model_fields.get(field)
        if info is None:
            problems.append(_unknown(key, model, parents, path))
            continue
        group = group_model(info.annotation)
        if group is not None and isinstance(value, Mapping):
            problems.extend(_unknown_keys(value, group, (*parents, field), path, field_of))
    return problems


def _unknown(key: str, model: type[BaseModel], parents: tuple[str, ...], path: Path) -> str:
    """`unknown setting 'budget.dayly' in PATH; did you mean 'budget.daily'?`, or the names it may be."""
    names = list(model.model_fields)
    problem = f"unknown setting {'.'.join((*parents, key))!r} in {path}"
    from difflib import get_close_matches  # only for a mistake: not on every start

    close = get_close_matches(key.lower(), names, n=1, cutoff=0.6)
    if close:
        return f"{problem}; did you mean {'.'.join((*parents, close[0]))!r}?"
    where = f"under [{'.'.join(parents)}]" if parents else "at the top level"
    return f"{problem}; the settings {where} are {', '.join(names)}"
