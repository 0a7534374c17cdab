"""Paths and helpers shared by the tests (importable thanks to pytest's pythonpath setting)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
DIGITS = ROOT / "examples" / "digits_vit"


def manifest() -> list[dict]:
    return json.loads((FIXTURES / "manifest.json").read_text())


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, exactly as a user would, without progress lines: whether a step lasts
    long enough to print one depends on the machine's load (tests/test_progress.py checks them)."""
    return subprocess.run([sys.executable, "-m", "mcu_attn.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=600, env={**os.environ, "MCU_ATTN_PROGRESS": "0"})
