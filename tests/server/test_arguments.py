"""`ArgumentCheck` over pydantic's JSON schemas: what it reads as closed, and where it looks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from modelyard.server.arguments import ArgumentCheck, closed


class Leaf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    colour: str = ""
    children: list[Leaf] | None = None


class Open(BaseModel):
    anything: dict[str, Any] | None = None
    leaf: Leaf | None = None


class Arguments(BaseModel):
    leaves: list[Leaf] | None = None
    open: Open | None = None
    count: int = 0


CHECK = ArgumentCheck(closed(Arguments.model_json_schema()))


def test_known_arguments_pass() -> None:
    assert CHECK.problem({"count": 1, "leaves": [{"colour": "red", "children": [{"colour": "blue"}]}]}) is None


def test_a_closed_model_inside_an_optional_list_is_checked_at_every_depth_of_its_recursion() -> None:
    problem = CHECK.problem({"leaves": [{"colour": "red", "children": [{"color": "blue"}]}]})
    assert problem == "unknown argument 'leaves.0.children.0.color'; did you mean 'leaves.0.children.0.colour'?"


def test_an_open_model_keeps_unknown_keys_but_a_closed_one_inside_it_does_not() -> None:
    assert CHECK.problem({"open": {"extra": 1, "anything": {"x": 1}}}) is None
    assert CHECK.problem({"open": {"leaf": {"hue": "red"}}}) == (
        "unknown argument 'open.leaf.hue'; the arguments of open.leaf are colour, children."
    )


def test_a_value_of_the_wrong_type_is_left_to_validation() -> None:
    """A number where a list of leaves belongs, or JSON text that is no list: no unknown names to report."""
    assert CHECK.problem({"leaves": 3}) is None
    assert CHECK.problem({"leaves": "not json"}) is None
    assert CHECK.problem({"leaves": [1, None]}) is None


def test_a_name_some_hosts_add_to_every_call_is_ignored_but_a_misspelling_is_not() -> None:
    """n8n 1.119-1.123 send `toolCallId` with every call's arguments: refused, those hosts could call no tool."""
    assert CHECK.problem({"count": 1, "toolCallId": "call_1"}) is None
    assert CHECK.problem({"count": 1, "toolcallid": "call_1"}) is not None
