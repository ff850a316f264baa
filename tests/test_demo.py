"""`modelyard demo`: the offline tour the README opens with."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelyard import demo
from modelyard.tools import TOOL_NAMES


def test_the_demo_runs_all_nine_steps_offline_and_exits_0() -> None:
    """`python -m modelyard demo` exits 0 and shows each step doing what it describes."""
    done = subprocess.run(
        [sys.executable, "-m", "modelyard", "demo"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for number in range(1, 10):
        assert f"[{number}/9]" in out
    expected = [
        "test_connection: sandbox yes, key valid",
        "models excluded, for example:",
        "(the plan's first choice)",
        "attempt openai/gpt-4o-mini: failed: 500 Internal Server Error",
        "attempt mistralai/mistral-small-3.2-24b-instruct: ok",
        "2nd call: cached=true, cost $0, saved $",
        "tool call: get_weather({",
        "progress notifications; final:",
        "refused (is_error): ",
        "Refused before sending",
        "cache         1 hits",
        "== sandbox billed_total()",
        "exact match",
        "All 9 steps behaved as described",
    ]
    for text in expected:
        assert text in out, text


@pytest.mark.anyio
async def test_the_demo_fails_loudly_when_a_step_does_not_behave(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step whose check fails stops the demo with DemoFailedError naming the step."""
    monkeypatch.setattr(demo, "TOOL_NAMES", (*TOOL_NAMES, "teleport"))
    with pytest.raises(demo.DemoFailedError, match=r"step 1 \(Tools and connection\) failed: expected the tools"):
        await demo.run_demo(verbose=False)
