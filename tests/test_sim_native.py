"""The native profiler (sim/native.py) records and replays exactly what the Python hooks and `_lru_misses` do.

- The digits ViT, int8 on the Cortex-M4 and float on the Cortex-M7: the same per-layer counts, flash data
  addresses and rows, executed block order and rows, cycle estimate and hot functions from both recorders.
- The flash cache replay: the same misses per row as `cycles._lru_misses` on seeded random streams, for cache
  sizes from none to larger than the stream, with and without prefetch.
- The default inference timeout grows with the model's MACs.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from support import DIGITS

from mcu_attn.sim import cycles, native
from mcu_attn.sim.profile import COUNT_FIELDS, PREAMBLE, Profile, rows_from_marks

MODEL = DIGITS / "digits_vit.onnx"
CALIB = DIGITS / "data" / "calib.npy"

needs_native = pytest.mark.skipif(not native.available(), reason="no host C compiler for the profiler's helper")
needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (scripts/install-system-deps.sh)")


def _profile_both(directory, sample: np.ndarray, monkeypatch) -> tuple:
    from mcu_attn.sim.build_dir import BuildDir
    from mcu_attn.sim.elf import load_firmware
    from mcu_attn.sim.run import estimate_payload, hot_functions
    from mcu_attn.sim.unicorn import UnicornRunner

    build = BuildDir(directory)
    firmware = load_firmware(build.elf)
    layers = build.layers(firmware.symbols)
    raw = np.ascontiguousarray(build.prepare(sample[None])[0]).tobytes()
    runner = UnicornRunner(firmware, build.target)
    results = []
    for use_native in (True, False):
        with monkeypatch.context() as patch:
            if not use_native:
                patch.setattr(native, "library", lambda: None)
            output, profile = runner.profile(raw, layers)
            results.append((output, profile, estimate_payload(build, profile, {}), hot_functions(profile, firmware)))
    return results


@needs_native
@needs_gcc
@pytest.mark.parametrize("target,bits", [("stm32f407", 8), ("stm32", 32)])
def test_native_profile_equals_python_hooks(tmp_path, monkeypatch, digits_test, target, bits):
    from mcu_attn.build import BuildOptions, build

    out = tmp_path / target
    build(MODEL, target, out, BuildOptions(bits=bits, calib=str(CALIB)))
    (fast_out, fast, fast_estimate, fast_hot), (slow_out, slow, slow_estimate, slow_hot) = \
        _profile_both(out, digits_test[0][3], monkeypatch)
    assert fast_out == slow_out
    assert fast.total("instructions") > 500_000  # a whole inference ran (the int8 digits ViT takes ~850,000)
    assert np.array_equal(fast.counts, slow.counts)                       # every class, taken, flash reads per row
    assert np.array_equal(fast.flash_addresses, slow.flash_addresses)     # the data stream of the cache model
    assert np.array_equal(fast.flash_rows, slow.flash_rows)
    assert np.array_equal(fast.code_starts, slow.code_starts)             # the fetch stream of the cache model
    assert np.array_equal(fast.code_ends, slow.code_ends)
    assert np.array_equal(fast.code_rows, slow.code_rows)
    assert fast_estimate == slow_estimate and fast_hot == slow_hot
    assert fast_estimate["memory"]["flash_data_misses"] > 0


def _stream_profile(starts: np.ndarray, ends: np.ndarray, rows: np.ndarray, addresses: np.ndarray,
                    address_rows: np.ndarray, row_count: int) -> Profile:
    pairs, order = np.unique(np.stack([starts, ends], axis=1), axis=0, return_inverse=True)
    order = order.reshape(-1).astype(np.uint32)
    marks = np.flatnonzero(np.diff(rows, prepend=0) != 0)
    assert np.array_equal(rows_from_marks(len(order), marks, rows[marks]), rows)
    counts = np.zeros((row_count, len(COUNT_FIELDS)), np.int64)
    return Profile([PREAMBLE] * row_count, [None] * row_count, [None] * row_count, counts, addresses,
                   address_rows.astype(np.int32), pairs[:, 0], pairs[:, 1], pairs[:, 1] - pairs[:, 0],
                   np.bincount(order, minlength=len(pairs)), order, marks.astype(np.int64),
                   rows[marks].astype(np.int32))


@needs_native
@pytest.mark.parametrize("seed", range(4))
def test_native_cache_replay_equals_lru_misses(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    low, high = 0x0800_0000, 0x0800_4000
    count = 3000
    # code: blocks of 2-40 bytes, mostly near the previous one (loops), some jumps; a few outside flash
    starts = low + 2 * np.cumsum(rng.integers(-24, 30, count)) % (high - low - 64) // 2 * 2
    starts[rng.random(count) < 0.02] = 0x2000_0100
    ends = starts + 2 * rng.integers(1, 20, count)
    rows = np.sort(rng.integers(0, 5, count)).astype(np.int32)
    addresses = low + rng.integers(0, 512, count * 2) * rng.choice([4, 32], count * 2)
    address_rows = np.sort(rng.integers(0, 5, count * 2))
    profile = _stream_profile(starts, ends, rows, addresses.astype(np.int64), address_rows, 5)
    for lines in (0, 1, 4, 64, 10_000):
        for prefetch in (False, True):
            for line_bytes in (16, 32):
                flash = cycles.FlashTiming("t", 5, lines, lines, line_bytes, prefetch)
                fast = cycles.flash_misses(profile, flash, (low, high))
                with monkeypatch.context() as patch:
                    patch.setattr(native, "library", lambda: None)
                    slow = cycles.flash_misses(profile, flash, (low, high))
                assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1]), (lines, prefetch)
                assert fast[0].sum() > 0 and fast[1].sum() > 0


def test_default_timeout_grows_with_macs():
    from mcu_attn.sim.run import inference_timeout
    from mcu_attn.sim.unicorn import INFER_TIMEOUT_S

    assert inference_timeout(0) == inference_timeout(317_888) == INFER_TIMEOUT_S   # the digits ViT
    assert inference_timeout(12_673_472) > 5 * INFER_TIMEOUT_S                        # the 257-token model
    assert inference_timeout(20_000_000) > inference_timeout(12_673_472)
