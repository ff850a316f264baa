"""The environment's names for the settings: which variable sets what, and what an unknown one says.

The environment holds much that is not modelyard's, but the `MODELYARD_` prefix is its own: a variable
under it that nothing reads is a mistake. `MODELYARD_BUDGET_DAILY=5` (one underscore short) would leave
no daily limit and say nothing, so an unknown name stops the start, with the name it most looks like.
"""

from __future__ import annotations

import types
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Union, get_args, get_origin

from pydantic import AliasChoices, BaseModel

from modelyard.errors import ConfigurationError

__all__ = [
    "NESTED",
    "PREFIX",
    "PROJECT_VARIABLES",
    "check_variables",
    "env_names",
    "group_model",
    "variables",
    "wants_json",
]

PREFIX = "MODELYARD_"
NESTED = "__"
"""Between a group and its field: `MODELYARD_BUDGET__DAILY`."""

PROJECT_VARIABLES: Mapping[str, str] = {
    "MODELYARD_TEST_REDIS_URL": "tests/scaleout/redis_server.py: the Redis the tests use (old name of TEST_REDIS_URL)",
}
"""`MODELYARD_*` variables the project reads outside the settings, with what reads them: accepted, never
suggested. Every other `MODELYARD_*` variable must be one a setting reads."""


def env_names(field: str, alias: object) -> list[str]:
    """The variables, lower case, that set the top-level setting `field`: its aliases if it has any
    (`OPENROUTER_API_KEY`), else `MODELYARD_<FIELD>`."""
    if isinstance(alias, AliasChoices):
        return [choice.lower() for choice in alias.choices if isinstance(choice, str)]
    return [(PREFIX + field).lower()]


def group_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a group setting (`budget`, `cache`), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def wants_json(annotation: Any) -> bool:
    """Lists, maps and groups come from the environment as JSON, as pydantic-settings reads them."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(wants_json(arg) for arg in get_args(annotation) if arg is not type(None))
    return origin in (list, dict) or group_model(annotation) is not None


def variables(model: type[BaseModel]) -> tuple[list[str], list[str]]:
    """The variables `model`'s settings read, upper case (a group's fields too: `MODELYARD_BUDGET__DAILY`),
    and the prefixes under which a map takes any key (`MODELYARD_QUALITY_OVERRIDES__`)."""
    known: list[str] = []
    open_prefixes = []
    for field, info in model.model_fields.items():
        known.extend(name.upper() for name in dict.fromkeys(env_names(field, info.validation_alias)))
        nested = f"{PREFIX}{field}{NESTED}".upper()
        group = group_model(info.annotation)
        if group is not None:
            known.extend(nested + sub.upper() for sub in group.model_fields)
        elif wants_json(info.annotation) and get_origin(info.annotation) is dict:
            open_prefixes.append(nested)
    return known, open_prefixes


def check_variables(names: Iterable[str], known: Collection[str], *, open_prefixes: Collection[str] = ()) -> None:
    """Refuse every `MODELYARD_*` name in `names` that modelyard does not read; other names are not looked at.

    `known` holds every variable a setting reads, `open_prefixes` those under which a map takes any key.
    Names are compared in any case.

    Raises:
        ConfigurationError: one line per unknown variable, with the known one it most looks like, or the
            names it may take.
    """
    options = [name.upper() for name in known]
    accepted = {*options, *PROJECT_VARIABLES}
    prefixes = tuple(prefix.upper() for prefix in open_prefixes)
    unknown = [
        name
        for name in names
        if name.upper().startswith(PREFIX) and name.upper() not in accepted and not _under(name.upper(), prefixes)
    ]
    if unknown:
        raise ConfigurationError("\n".join(_unknown(name, options) for name in unknown))


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether `name` names a key under one of `prefixes` (a key, not the prefix alone)."""
    return any(name.startswith(prefix) and len(name) > len(prefix) for prefix in prefixes)


def _unknown(name: str, options: list[str]) -> str:
    """`NAME names no setting: did you mean MODELYARD_<NAME>?`, or the names it may take."""
    meant = _closest(name.upper(), options)
    if meant is not None:
        return f"{name} names no setting: did you mean {meant}? Rename it, or unset it."
    head = _group_head(name.upper(), options)
    listed = ", ".join(option.removeprefix(head) for option in options if option.startswith(head))
    return f"{name} names no setting; unset it, or use one of {head}{{{listed}}}."


def _closest(name: str, options: list[str]) -> str | None:
    """The option with the same words (`DAILY_BUDGET`, `BUDGET_DAILY`: `BUDGET__DAILY`), else the closest
    spelling, compared within the group `name` is under if there is one: all names share the prefix."""
    same = [option for option in options if _words(option) == _words(name)]
    if same:
        return same[0]
    head = _group_head(name, options)
    by_part = {option.removeprefix(head): option for option in options if head == PREFIX or option.startswith(head)}
    from difflib import get_close_matches  # only for a mistake: not on every start

    close = get_close_matches(name.removeprefix(head), by_part, n=1)
    return by_part[close[0]] if close else None


def _words(name: str) -> list[str]:
    return sorted(word for word in name.removeprefix(PREFIX).split("_") if word)


def _group_head(name: str, options: list[str]) -> str:
    """`MODELYARD_CACHE__` for a name under a group that exists, else `MODELYARD_`."""
    head = name.partition(NESTED)[0] + NESTED
    return head if NESTED in name and any(option.startswith(head) for option in options) else PREFIX
