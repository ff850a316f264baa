"""What the sandbox answers: deterministic text, tool calls, JSON and reasoning.

The answer is a function of the model id and the request's messages, tools, tool choice,
response format and reasoning settings, so the same request always gets the same content and
the same token counts. Replies are short (5 to 40 tokens of text). Reasoning comes first, then the
answer; together they never exceed `max_tokens` (the reply is cut and `finish_reason` is "length").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelyard.sandbox.catalog import CatalogModel
from modelyard.sandbox.schemagen import instance_of
from modelyard.sandbox.tokens import pieces

__all__ = ["Reply", "ToolCall", "plan_reply"]

_VOCABULARY = (
    "the alpha amber answer apple arrow basin beacon birch bright calm canyon cedar clear cloud "
    "coast copper coral crisp delta dune early echo ember field fjord flint forest frost garden "
    "glade granite harbor hazel island ivory jade kestrel lagoon lantern linen maple meadow mellow "
    "misty north ocean olive orchid pebble pine prairie quartz quiet river rowan saffron silver "
    "spruce steady stone summit swift thistle timber tundra valley velvet willow winter "
)
_WORDS = tuple(_VOCABULARY.split())
_EFFORT_TOKENS = {"minimal": 4, "low": 8, "medium": 16, "high": 24, "xhigh": 32, "max": 32}
_DEFAULT_EFFORT = "medium"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The one tool call of a reply; `arguments` is a JSON string (cut short on "length")."""

    id: str
    name: str
    arguments: str
    argument_pieces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reply:
    """A planned completion. `reasoning` is None when none is shown (also when excluded)."""

    content: str | None
    content_pieces: tuple[str, ...]
    reasoning: str | None
    reasoning_pieces: tuple[str, ...]
    tool_call: ToolCall | None
    finish_reason: str
    completion_tokens: int
    reasoning_tokens: int


_CANONICAL = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)


def _digest(*parts: Any) -> bytes:
    text = _CANONICAL.encode(parts)
    return hashlib.sha256(text.encode("utf-8")).digest()


def _words(seed: bytes, count: int) -> list[str]:
    stream = b""
    block = 0
    while len(stream) < count:
        stream += hashlib.sha256(seed + block.to_bytes(4, "big")).digest()
        block += 1
    return [_WORDS[byte % len(_WORDS)] for byte in stream[:count]]


def _sentence(seed: bytes, count: int) -> str:
    words = _words(seed, count)
    return " ".join([words[0].capitalize(), *words[1:]]) + "."


def _reasoning_budget(body: Mapping[str, Any], model: CatalogModel) -> tuple[int, bool]:
    """(reasoning tokens to produce, whether the text is hidden)."""
    if not (model.supports("reasoning") or model.supports("include_reasoning")):
        return 0, False
    raw = body.get("reasoning")
    settings: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    effort = settings.get("effort") or body.get("reasoning_effort")
    hidden = bool(settings.get("exclude")) or body.get("include_reasoning") is False
    if settings.get("enabled") is False or effort == "none":
        return 0, hidden
    wanted = (
        bool(settings.get("enabled"))
        or effort is not None
        or bool(settings.get("max_tokens"))
        or body.get("include_reasoning") is True
        or model.reasoning_mandatory
    )
    if not wanted:
        return 0, hidden
    tokens = _EFFORT_TOKENS.get(str(effort or _DEFAULT_EFFORT), _EFFORT_TOKENS[_DEFAULT_EFFORT])
    limit = settings.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and effort is None:
        tokens = min(limit, _EFFORT_TOKENS["high"])
    return tokens, hidden


def _function_tools(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tools = body.get("tools")
    if not isinstance(tools, list):
        return []
    return [
        tool["function"]
        for tool in tools
        if isinstance(tool, Mapping) and isinstance(tool.get("function"), Mapping) and tool["function"].get("name")
    ]


def _chosen_tool(body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    functions = _function_tools(body)
    choice = body.get("tool_choice")
    if not functions or choice == "none" or (messages and messages[-1].get("role") == "tool"):
        return None
    if isinstance(choice, Mapping):
        wanted = (choice.get("function") or {}).get("name")
        return next((f for f in functions if f.get("name") == wanted), functions[0])
    return functions[0]


def _json_answer(body: Mapping[str, Any], seed: bytes) -> str | None:
    response_format = body.get("response_format")
    if not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        return json.dumps(instance_of(schema or {}), separators=(",", ":"), ensure_ascii=False)
    if kind == "json_object":
        answer = " ".join(_words(seed + b"json", 3 + seed[1] % 4))
        return json.dumps({"answer": answer}, separators=(",", ":"))
    return None


def plan_reply(
    body: Mapping[str, Any],
    messages: Sequence[Mapping[str, Any]],
    model: CatalogModel,
    max_tokens: int | None,
) -> Reply:
    """The deterministic answer of `model` to this request body."""
    seed = _digest(
        model.id,
        messages,
        body.get("tools"),
        body.get("tool_choice"),
        body.get("response_format"),
        body.get("reasoning"),
    )
    reasoning_tokens, hidden = _reasoning_budget(body, model)
    thought = pieces(_sentence(seed + b"reasoning", reasoning_tokens))[:reasoning_tokens] if reasoning_tokens else []
    budget = max_tokens if max_tokens is not None else 1 << 30
    thought = thought[:budget]
    room = budget - len(thought)
    tool = _chosen_tool(body, messages)
    if tool is not None:
        call_id = "call_" + hashlib.sha256(seed + b"call").hexdigest()[:24]
        arguments = json.dumps(
            instance_of(tool.get("parameters") or {"type": "object"}), separators=(",", ":"), ensure_ascii=False
        )
        parts = [str(tool["name"]), *pieces(arguments)]
        kept = parts[: max(room, 0)]
        call = ToolCall(call_id, str(tool["name"]), "".join(kept[1:]), tuple(kept[1:])) if kept else None
        finish = "tool_calls" if len(kept) == len(parts) else "length"
        return _reply(None, (), thought, hidden, call, finish, len(kept))
    text = _json_answer(body, seed) or _sentence(seed, 5 + seed[0] % 30)
    answer = pieces(text)
    kept = answer[: max(room, 0)]
    finish = "stop" if len(kept) == len(answer) else "length"
    return _reply("".join(kept), tuple(kept), thought, hidden, None, finish, len(kept))


def _reply(
    content: str | None,
    content_pieces: tuple[str, ...],
    thought: list[str],
    hidden: bool,
    call: ToolCall | None,
    finish: str,
    answer_tokens: int,
) -> Reply:
    shown = None if hidden or not thought else "".join(thought)
    return Reply(
        content=content,
        content_pieces=content_pieces,
        reasoning=shown,
        reasoning_pieces=() if shown is None else tuple(thought),
        tool_call=call,
        finish_reason=finish,
        completion_tokens=len(thought) + answer_tokens,
        reasoning_tokens=len(thought),
    )
