"""Paths and helpers shared by the tests (importable thanks to pytest's pythonpath setting)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
DIGITS = ROOT / "examples" / "digits_vit"


def manifest() -> list[dict]:
    return json.loads((FIXTURES / "manifest.json").read_text())


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, exactly as a user would."""
    return subprocess.run([sys.executable, "-m", "mcu_attn.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=600)
