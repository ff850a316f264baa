"""The house rules hold: ruff and mypy are clean, and the layers import in one direction."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "modelyard"


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.skip(f"{name} is not installed in this environment (pip install -e '.[dev]')")
    return path


def test_ruff_finds_nothing() -> None:
    """`ruff check` passes over the package, the tests and the benchmarks."""
    result = subprocess.run(
        [_tool("ruff"), "check", "modelyard", "tests", "bench"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing() -> None:
    """`mypy --strict` (configured in pyproject.toml) passes over the package."""
    result = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _imports(folder: str, pattern: str) -> list[str]:
    rule = re.compile(pattern, re.MULTILINE)
    return [
        f"{path.relative_to(ROOT)}: {m.group(0).strip()}"
        for path in (PACKAGE / folder).rglob("*.py")
        for m in rule.finditer(path.read_text())
    ]


def test_routing_never_imports_mcp_and_tools_never_import_the_http_client() -> None:
    """DESIGN §1: tools → server → routing → openrouter/store → errors/settings."""
    assert _imports("routing", r"^\s*(from|import) (mcp|modelyard\.(server|tools))\b") == []
    assert _imports("tools", r"^\s*(from|import) (httpx2?|modelyard\.openrouter\.client)\b") == []
    assert _imports("openrouter", r"^\s*(from|import) modelyard\.(routing|store|server|tools)\b") == []
    assert _imports("store", r"^\s*(from|import) modelyard\.(routing|server|tools|openrouter)\b") == []
