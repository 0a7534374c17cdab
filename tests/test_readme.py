"""The README's two set-up commands: CI runs the test command verbatim, and both use a virtual environment."""

from __future__ import annotations

import re

from support import ROOT


def _commands() -> list[str]:
    """The command lines of the README's first two ```bash blocks (the set-up commands)."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[:2]
    return [next(line for line in block.splitlines() if line and not line.startswith("#")) for block in blocks]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    build, tests = _commands()
    assert "pytest" in tests and "mcu-attn build" in build
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_set_up_uses_a_virtual_environment() -> None:
    """The system Python refuses `pip install` (PEP 668): every command installs into and runs from .venv."""
    for command in _commands():
        steps = command.split(" && ")
        assert steps[:2] == ["bash scripts/install-system-deps.sh", "python3 -m venv .venv"], steps
        assert all(step.startswith((".venv/bin/", "bash ", "python3 -m venv")) for step in steps), steps
