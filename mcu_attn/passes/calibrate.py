"""Calibration: run the float reference over calibration samples and choose int8 ranges per tensor.

Observers, per activation tensor (values are subsampled to at most `MAX_VALUES` per tensor):
- `minmax`: the observed [min, max];
- `mse`: the clipping of [min, max] (ratios 1.0, 0.98, ... 0.30 of each side, shrinking both ends
  proportionally) that minimises the mean squared int8 quantization error over the observed values, so
  outliers that would waste resolution are clipped, and min/max is kept where it is best (ratio 1.0).
The chosen observer is reported per tensor. A tensor that overflows to infinity or NaN on the calibration samples
has no range: that is an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph
from mcu_attn.progress import progress
from mcu_attn.reference.interpreter import run
from mcu_attn.reference.qmath import choose_qparams, dequantize, quantize

MAX_VALUES = 200_000
CLIP_RATIOS = tuple(np.round(np.arange(1.0, 0.295, -0.02), 2))


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    observer: str
    clip: float = 1.0


def collect(graph: Graph, samples: np.ndarray) -> dict[str, np.ndarray]:
    """Observed float values of every non-constant float tensor (a seeded subsample for large tensors)."""
    rng = np.random.default_rng(0)
    gathered: dict[str, list[np.ndarray]] = {}
    with progress("calibrating", total=len(samples), unit="samples") as advance:
        for sample in samples:
            values = run(graph, {graph.inputs[0]: sample}, keep=True)
            for name, value in values.items():
                if name in graph.constants or value.dtype != np.float32:
                    continue
                gathered.setdefault(name, []).append(value.reshape(-1))
            advance()
    observed = {}
    for name, chunks in gathered.items():
        flat = np.concatenate(chunks)
        if not np.all(np.isfinite(flat)):
            raise UserError(f"calibration data: tensor {name!r} overflows to infinity or NaN on the calibration "
                            f"samples (they reach |x| = {float(np.abs(samples).max()):.3g}): calibrate on data the "
                            "model is meant for")
        if flat.size > MAX_VALUES:
            flat = rng.choice(flat, MAX_VALUES, replace=False)
        observed[name] = flat
    return observed


def _quant_error(values: np.ndarray, low: float, high: float) -> float:
    scale, zero_point = choose_qparams(low, high)
    return float(np.mean(np.square(dequantize(quantize(values, scale, zero_point), scale, zero_point) - values)))


def choose_range(values: np.ndarray, observer: str = "mse") -> Range:
    low, high = float(values.min()), float(values.max())
    if observer == "minmax" or high - low < 1e-12:
        return Range(low, high, "minmax")
    errors = [(_quant_error(values, low * r, high * r), r) for r in CLIP_RATIOS]
    _, best_ratio = min(errors, key=lambda e: (e[0], -e[1]))
    if best_ratio == 1.0:
        return Range(low, high, "minmax")
    return Range(low * best_ratio, high * best_ratio, "mse", float(best_ratio))
