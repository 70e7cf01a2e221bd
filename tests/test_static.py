"""The code base passes its own lint and strict type check (ruff, mypy --strict)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(module: str) -> None:
    if (
        shutil.which(module) is None
        and subprocess.run(
            [sys.executable, "-m", module, "--version"], capture_output=True, check=False
        ).returncode
        != 0
    ):
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")


def test_ruff_is_clean() -> None:
    """ruff (configured in pyproject.toml) reports nothing."""
    _tool("ruff")
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "coordgap", "tests", "examples", "benchmarks"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_is_clean() -> None:
    """mypy --strict on the package reports nothing."""
    _tool("mypy")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "coordgap"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_import_layers_are_kept() -> None:
    """lint-imports (the layers contract in pyproject.toml): every module imports only the
    layers below it, so data flows one way: graph -> interception -> ledger -> sinks ->
    report -> planning, rendering, CLI, pytest plugin."""
    tool = Path(sys.executable).with_name("lint-imports")
    if not tool.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    out = subprocess.run(
        [str(tool), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout, out.stdout
