"""The official MCP Inspector CLI (from npm) drives `python -m modelyard serve` over stdio, as a developer would.

The Inspector is pinned and installed once under `.venv/inspector` (ignored with the venv) and reused. The
tests skip only when Node is absent; with Node present, a failed install fails them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from modelyard.sandbox import Sandbox
from modelyard.tools import TOOL_NAMES
from tests.server.conftest import KEY

pytestmark = pytest.mark.anyio

# The newest release whose `engines` accept Node 20: 0.16.0-1.0.3 need node >=22.7.5, 2.x >=22.19.0.
INSPECTOR_VERSION = "0.15.0"
PACKAGE = "@modelcontextprotocol/inspector"
PREFIX = Path(__file__).resolve().parents[2] / ".venv" / "inspector"
INSTALL_TIMEOUT_S = 300


def _installed_version() -> str | None:
    manifest = PREFIX / "node_modules" / PACKAGE / "package.json"
    if not manifest.is_file():
        return None
    version: str = json.loads(manifest.read_text())["version"]
    return version


@pytest.fixture(scope="module")
def inspector() -> Path:
    """The directory holding the pinned Inspector (installed there from the npm registry on first use)."""
    missing = [tool for tool in ("node", "npm", "npx") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the MCP Inspector needs Node.js; not on PATH: {', '.join(missing)}")
    if _installed_version() != INSPECTOR_VERSION:
        PREFIX.mkdir(parents=True, exist_ok=True)
        command = ["npm", "install", "--prefix", str(PREFIX), "--save-exact", "--no-audit", "--no-fund"]
        done = subprocess.run(
            [*command, "--loglevel=error", f"{PACKAGE}@{INSPECTOR_VERSION}"],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"npm install of {PACKAGE}@{INSPECTOR_VERSION} failed:\n{done.stderr}"
        assert _installed_version() == INSPECTOR_VERSION
    return PREFIX


async def _inspect(prefix: Path, sandbox: Sandbox, tmp_path: Path, *method: str) -> dict[str, Any]:
    """Run `npx -y @modelcontextprotocol/inspector@PINNED --cli <python> -m modelyard serve -e ... <method>`
    and return the JSON it prints. Run inside the prefix, npx uses the installed copy and downloads nothing."""
    env_args = [
        "-e",
        f"OPENROUTER_API_KEY={KEY}",
        "-e",
        f"OPENROUTER_BASE_URL={sandbox.base_url}",
        "-e",
        f"MODELYARD_STORE=sqlite:///{tmp_path / 'inspector.db'}",
        "-e",
        f"HOME={tmp_path}",
    ]
    command = [
        "npx",
        "-y",
        f"{PACKAGE}@{INSPECTOR_VERSION}",
        "--cli",
        sys.executable,
        "-m",
        "modelyard",
        "serve",
        *env_args,
        *method,
    ]
    with anyio.fail_after(60):
        done = await anyio.run_process(command, cwd=str(prefix), check=False)
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"inspector exited {done.returncode}:\n{stderr}\n{stdout}"
    result: dict[str, Any] = json.loads(stdout)
    return result


async def test_the_inspector_lists_the_nine_tools_with_their_schemas(
    inspector: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """`--method tools/list` prints the nine tools, each with an input and an output schema."""
    listed = await _inspect(inspector, sandbox, tmp_path, "--method", "tools/list")
    tools = {tool["name"]: tool for tool in listed["tools"]}
    assert set(tools) == set(TOOL_NAMES) and len(tools) == 9
    assert all(tool["inputSchema"]["type"] == "object" and tool["outputSchema"] for tool in tools.values())
    assert tools["list_models"]["annotations"]["readOnlyHint"] is True
    assert "prompt" in tools["execute"]["inputSchema"]["properties"]


async def test_the_inspector_calls_list_models_and_gets_the_catalog_as_structured_content(
    inspector: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """`--method tools/call --tool-name list_models` prints structured rows with per-1M prices."""
    called = await _inspect(inspector, sandbox, tmp_path, "--method", "tools/call", "--tool-name", "list_models")
    assert called["isError"] is False
    data = called["structuredContent"]
    ids = [row["id"] for row in data["models"]]
    assert data["total"] >= 25 and len(ids) == 20  # the default limit
    assert json.loads(called["content"][0]["text"]) == data  # the text block is the same JSON
    assert all({"prompt_per_1m", "completion_per_1m", "tier", "capabilities"} <= set(row) for row in data["models"])


async def test_the_inspector_calls_execute_and_gets_the_answer_model_and_exact_cost(
    inspector: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """`--tool-name execute --tool-arg prompt=hello --tool-arg model=gpt-4o-mini` answers from gpt-4o-mini at
    the cost the sandbox billed."""
    called = await _inspect(
        inspector,
        sandbox,
        tmp_path,
        "--method",
        "tools/call",
        "--tool-name",
        "execute",
        "--tool-arg",
        "prompt=hello",
        "--tool-arg",
        "model=gpt-4o-mini",
    )
    assert called["isError"] is False
    out = called["structuredContent"]
    assert out["content"] and out["model"] == "openai/gpt-4o-mini" and out["requested_model"] == "gpt-4o-mini"
    assert len(sandbox.state.ledger) == 1
    assert Decimal(str(out["cost"])) == sandbox.state.ledger[0].cost == sandbox.state.billed_total() > 0
    assert out["cost_source"] == "upstream" and [a["outcome"] for a in out["attempts"]] == ["ok"]
    assert json.loads(called["content"][0]["text"]) == out
