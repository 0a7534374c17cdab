"""TensorFlow Lite Micro's interpreter in child processes (`probe.py`): outputs at a given arena size, and the
smallest arena that works.

Every probe is its own process running `probe.py` (by path: any python with tflite-micro will do), so that an allocation failure or a crash inside
TFLM cannot take the caller down. `minimal_arena` bisects the arena size to the byte: the invariant is that
`high` runs and reproduces the outputs of a large arena and `low` does not (0 never can). TFLM aligns each buffer
in its arena to 16 bytes; the arena holds the activations (head) and TFLM's runtime structures and op data
(tail), which `allocations` reads from its RecordingMicroAllocator summary.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

LARGE_ARENA = 1 << 20
INSTALL_HINT = "pip install 'mcu-attn[tflm]' (TensorFlow Lite Micro's Python interpreter; no TensorFlow)"
ALLOCATION = re.compile(r"\[RecordingMicroAllocator\] Arena allocation (total|head|tail) (\d+) bytes")
PROBE_TIMEOUT_S = 600


PROBE = Path(__file__).resolve().with_name("probe.py")


def _command(python: str, *args: str) -> list[str]:
    return [python, str(PROBE), *args]


def check_tflm(python: str = sys.executable) -> str | None:
    """None if `python` can import tflite_micro, else why not (one line)."""
    try:
        done = subprocess.run(_command(python, "check"), capture_output=True, text=True, timeout=120)
    except OSError as error:
        return f"cannot run {python}: {error}"
    if done.returncode == 0:
        return None
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[-1] if lines else f"{python} {PROBE.name} check exited {done.returncode}"


def tflm_version(python: str = sys.executable) -> str:
    done = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('tflite-micro'))"],
                          capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def probe(tflite: Path, arena: int, inputs: Path, labels: Path | None = None, allocations: bool = False,
          python: str = sys.executable) -> dict:
    """One TFLM run in its own process: {"ok", "outputs" | "error", ["accuracy"], ["allocations"]}."""
    command = _command(python, "run", str(tflite), str(arena), str(inputs))
    command += ["--labels", str(labels)] if labels else []
    command += ["--allocations"] if allocations else []
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "timed out"}
    text = done.stdout + done.stderr
    results = [line[len("RESULT "):] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not results:
        last = text.strip().splitlines()[-1:] or [""]
        return {"ok": False, "error": f"exit {done.returncode}: {last[0]}"}
    result = json.loads(results[-1])
    if not result["ok"]:  # TFLM says what it failed to allocate on its own output
        log = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("RESULT ")]
        result["error"] = " | ".join([result["error"], *log])
    if allocations:
        result["allocations"] = {k: int(v) for k, v in ALLOCATION.findall(text)}
    return result


def minimal_arena(tflite: Path, inputs: Path, expected: list, high: int = LARGE_ARENA,
                  python: str = sys.executable,
                  progress: Callable[[], None] | None = None) -> tuple[int, int, dict]:
    """Smallest arena size (bytes) that runs and reproduces `expected`, by bisection; the probe count; and the
    failing result one byte below it. `progress()` is called after each probe."""
    low, probes, below = 0, 0, None
    while high - low > 1:
        middle = (low + high) // 2
        result = probe(tflite, middle, inputs, python=python)
        probes += 1
        if progress:
            progress()
        if result["ok"] and result["outputs"] == expected:
            high = middle
        else:
            low, below = middle, result
    if below is None:  # every probe worked, so arena - 1 = 0 was never run
        below = probe(tflite, low, inputs, python=python)
    return high, probes, below
