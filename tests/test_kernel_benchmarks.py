"""docs/kernel-benchmarks.md is what `benchmarks/kernels.py` prints: its kernel tables are recomputed here and
must appear in the file unchanged (emulated instruction counts and the cycle model are deterministic, so any
difference is a real change that needs `python benchmarks/kernels.py --markdown docs/kernel-benchmarks.md`).
Slow: every kernel case runs on two cores and both variants in the emulator."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed")
def test_kernel_tables_match_the_docs() -> None:
    spec = importlib.util.spec_from_file_location("kernel_benchmarks", ROOT / "benchmarks" / "kernels.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.measure_kernels(quick=False)
    committed = (ROOT / "docs" / "kernel-benchmarks.md").read_text().splitlines()
    for line in bench.kernel_table(results, False) + bench.softmax_table(results, False):
        assert line in committed, f"docs/kernel-benchmarks.md is out of date: {line}"
