"""Profiling speed: emulated instructions per host second of `simulate`'s profiled inference, native hooks
(C callbacks, sim/native.py) against the Python hooks they replaced, with identical counts.

1. The digits ViT (int8, stm32f407): both profilers on the same sample; the instruction counts, flash streams
   and estimates must be equal, and the ratio of their speeds is printed.
2. The 257-token long-sequence example (examples/digits_long, float, dense attention, stm32 = STM32F746): the
   whole `simulate` of one sample with its full per-layer profile (reference, boot, profiled inference, cycle
   model), and the profiled inference alone. `--baseline` also profiles it with the Python hooks (minutes).

Host seconds are wall-clock and CPU (process) time; on a shared machine the CPU time is the steadier figure.

    python benchmarks/simulate_speed.py [--baseline]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mcu_attn.build import BuildOptions, build
from mcu_attn.sim import native
from mcu_attn.sim.build_dir import BuildDir
from mcu_attn.sim.elf import load_firmware
from mcu_attn.sim.run import SimOptions, estimate_payload, simulate
from mcu_attn.sim.unicorn import UnicornRunner

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits_vit"
LONG = ROOT / "examples" / "digits_long"


@contextmanager
def timed(into: dict):
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into["wall"], into["cpu"] = time.perf_counter() - wall, time.process_time() - cpu


@contextmanager
def python_hooks():
    """The profiler as it was: a Python callback per executed block, the cache model in Python."""
    library = native.library
    native.library = lambda: None
    try:
        yield
    finally:
        native.library = library


def profile_once(directory: Path) -> tuple[int, dict, dict]:
    """(instructions, estimate, times) of one profiled inference on the first calibration sample."""
    build_dir = BuildDir(directory)
    firmware = load_firmware(build_dir.elf)
    runner = UnicornRunner(firmware, build_dir.target)
    sample = np.ascontiguousarray(build_dir.prepare(build_dir.default_samples(1)[0])[0]).tobytes()
    times: dict = {}
    with timed(times):
        _, profile = runner.profile(sample, build_dir.layers(firmware.symbols))
        estimate = estimate_payload(build_dir, profile, {})
    return profile.total("instructions"), estimate, times


def rate(instructions: int, times: dict) -> str:
    return (f"{times['wall']:7.2f} s wall ({instructions / times['wall'] / 1e6:6.1f} M instr/s), "
            f"{times['cpu']:7.2f} s CPU ({instructions / times['cpu'] / 1e6:6.1f} M instr/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", action="store_true", help="also profile the long model with Python hooks")
    args = parser.parse_args()
    if not native.available():
        raise SystemExit("the native profiler could not be built (no host C compiler): nothing to compare")
    with tempfile.TemporaryDirectory(prefix="mcu-attn-speed-") as scratch:
        digits = Path(scratch) / "digits"
        build(DIGITS / "digits_vit.onnx", "stm32f407", digits,
              BuildOptions(bits=8, calib=str(DIGITS / "data" / "calib.npy")))
        fast_n, fast_estimate, fast_times = profile_once(digits)
        with python_hooks():
            slow_n, slow_estimate, slow_times = profile_once(digits)
        assert fast_n == slow_n and fast_estimate == slow_estimate, "the profilers disagree"
        print(f"digits ViT int8 on stm32f407: {fast_n:,} instructions per inference, the same from both profilers")
        print(f"  Python hooks: {rate(slow_n, slow_times)}")
        print(f"  native hooks: {rate(fast_n, fast_times)}")
        print(f"  speed-up: {slow_times['wall'] / fast_times['wall']:.1f}x wall, "
              f"{slow_times['cpu'] / fast_times['cpu']:.1f}x CPU")

        long_dir = Path(scratch) / "long"
        build(LONG / "digits_long_dense.onnx", "stm32", long_dir, BuildOptions(bits=32))
        whole: dict = {}
        with timed(whole):
            result = simulate(str(long_dir), options=SimOptions(limit=1))
        n = result["instructions"]
        print(f"257-token digits_long_dense, float, on stm32 (F746): {n:,} instructions per inference, "
              f"{result['macs']:,} MACs, {len(result['layers'])} profile rows, bit-exact {result['bit_exact']}")
        print(f"  simulate --limit 1 (everything):  {rate(n, whole)}")
        long_n, _, long_times = profile_once(long_dir)
        print(f"  profiled inference alone:        {rate(long_n, long_times)}")
        if args.baseline:
            with python_hooks():
                base_n, _, base_times = profile_once(long_dir)
            print(f"  Python hooks, profiled inference: {rate(base_n, base_times)}; speed-up "
                  f"{base_times['wall'] / long_times['wall']:.1f}x wall, {base_times['cpu'] / long_times['cpu']:.1f}x CPU")


if __name__ == "__main__":
    main()
