"""Build a generated project with the host toolchain (`make`) and run its harness on a stack of samples.

The harness reads raw samples on stdin and writes raw outputs on stdout (mcu_attn/firmware_templates/harness/main.c.j2),
so a run is one process with no temporary files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from mcu_attn.codegen.emit import EXECUTABLE
from mcu_attn.errors import UserError


class HarnessError(RuntimeError):
    """The compiled harness failed (a generated-code or kernel bug, or bad samples)."""


def make(project: str | os.PathLike, cflags: str | None = None) -> Path:
    """Run `make` in the project directory (CFLAGS replaced when given); the path of the host executable."""
    project = Path(project)
    tool = shutil.which("make")
    if tool is None:
        raise UserError("building for --target host needs `make` and a C compiler (cc) on PATH")
    overrides = [f"CFLAGS={cflags}"] if cflags is not None else []
    result = subprocess.run([tool, "-s", *overrides, EXECUTABLE], cwd=project, capture_output=True, text=True)
    if result.returncode != 0:
        raise HarnessError(f"make failed in the generated project:\n{result.stdout}{result.stderr}".rstrip())
    return project / EXECUTABLE


def run_harness(executable: str | os.PathLike, samples: np.ndarray, out_dtype: np.dtype,
                out_shape: tuple[int, ...]) -> np.ndarray:
    """Outputs [N, *out_shape] of the harness for samples [N, ...] (already in the model's input dtype)."""
    data = np.ascontiguousarray(samples).tobytes()
    result = subprocess.run([str(Path(executable).resolve())], input=data, capture_output=True)
    if result.returncode != 0:
        raise HarnessError(f"{Path(executable).name} exited with {result.returncode}: "
                           f"{result.stderr.decode(errors='replace').strip()}")
    count = int(samples.shape[0])
    outputs = np.frombuffer(result.stdout, dtype=out_dtype)
    expected = count * int(np.prod(out_shape, dtype=np.int64))
    if outputs.size != expected:
        raise HarnessError(f"{Path(executable).name} wrote {outputs.size} values, expected {expected}")
    return outputs.reshape((count,) + tuple(out_shape))
