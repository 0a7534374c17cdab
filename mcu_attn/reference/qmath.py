"""Integer arithmetic shared by the quantizer, the integer reference ops and (bit for bit) the C kernels.

Conventions (DESIGN.md section 3; the same as TFLite Micro / gemmlowp):
- real = scale * (q - zero_point); activations int8 per tensor (asymmetric), weights int8/int4 per output
  channel (symmetric, zero point 0), biases int32 with scale s_x * s_w.
- A real multiplier m > 0 is stored as (M, shift): m ~= M * 2^(shift - 31), M in [2^30, 2^31) (negative M for
  negative m). `requantize(acc, M, shift)` is gemmlowp's
  RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc << max(shift, 0), M), max(-shift, 0)):
  a doubling high multiply rounded to nearest, then a rounding right shift with ties away from zero.
- `rshift_round(x, n)` = (x + 2^(n-1)) >> n on int64 (ties toward +inf); used where the C code does the same.
- One requantization of a sum (`sum_requant_params`, `requantize_sum`): several integer terms, each with its own
  real scale, go to the output scale in one step: y = (sum_i (v_i << k_i) M_i + 2^(s-1)) >> s, all on int64 with
  a single floor shift (ties toward +inf). It replaces TFLite's three gemmlowp requantizations of an add and the
  intermediate int8 of a linear followed by an add (docs/integer-kernels.md, "One requantization of a sum").
Everything here is vectorised numpy on int64, written so that C on int32/int64 gives identical bits.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(M, shift) with real ~= M * 2^(shift-31); TFLite's QuantizeMultiplier, extended to negative reals."""
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)  # real = fraction * 2^shift, |fraction| in [0.5, 1)
    multiplier = int(round(fraction * (1 << 31)))
    if abs(multiplier) == (1 << 31):
        multiplier //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise ValueError(f"multiplier {real} too large for a 32-bit requantization")
    return multiplier, shift


def _trunc_div_pow2(x: np.ndarray, bits: int) -> np.ndarray:
    """x / 2^bits truncated toward zero, like C integer division of int64."""
    magnitude = np.abs(x) >> bits
    return np.where(x < 0, -magnitude, magnitude)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    product = a * b
    nudge = np.where(product >= 0, 1 << 30, 1 - (1 << 30))
    result = _trunc_div_pow2(product + nudge, 31)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, result)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def requantize(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """acc * real multiplier, rounded, on int32 values (int64 arrays); broadcasts per-channel parameters."""
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = np.asarray(acc, np.int64) << left
    if np.any((shifted > INT32_MAX) | (shifted < INT32_MIN)):
        raise OverflowError("requantize input exceeds int32 after the left shift")
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


# One requantization of a sum: every product |v << k| |M| stays below 2^SUM_PRODUCT_BITS, so two of them, the
# rounding constant and a folded zero point (|zp| 2^s with s <= SUM_SHIFT_MAX) never leave int64.
SUM_PRODUCT_BITS = 61
SUM_SHIFT_MAX = 53
SUM_SHIFT_PREFERRED = 32  # the ARM kernels take the result from the high word of one SMLAL when s >= 32


def sum_requant_params(terms: list[tuple[list[float], int]]) -> tuple[int, list[tuple[int, list[int]]]]:
    """The right shift s and, per term, (left shift k, multipliers M) of `requantize_sum`.

    `terms` lists (reals, value_bits): the real scales of one integer term (one per output channel, or one) and a
    bound |v| < 2^value_bits on its values. A term may be shifted left by k <= max(0, 30 - value_bits) (v << k
    stays inside int32) and its multipliers have at most mbits = min(31, SUM_PRODUCT_BITS - value_bits - k) bits,
    so |(v << k) M| < 2^SUM_PRODUCT_BITS. A real r = f 2^e (|f| in [0.5, 1)) has full precision, M ~ 2^mbits,
    when s - k = mbits - e. Every term's largest real bounds s from above (k cannot exceed its limit) and asks
    for at least mbits - e from below; s is the smallest value >= 32 that satisfies all of them (the ARM kernels'
    fast form), within [1, SUM_SHIFT_MAX], and a term whose full precision does not fit keeps fewer bits."""
    limits = []
    for reals, value_bits in terms:
        peak = max((abs(r) for r in reals), default=0.0)
        kmax = max(0, 30 - value_bits)
        mbits = min(31, SUM_PRODUCT_BITS - value_bits - kmax)
        e = math.frexp(peak)[1] if peak > 0 else -10 ** 6
        limits.append((value_bits, kmax, mbits, e))
    lower = max(mbits - e for _, _, mbits, e in limits)
    upper = min(SUM_SHIFT_MAX, min(mbits - e + kmax for _, kmax, mbits, e in limits))
    if upper < 1:
        raise ValueError("a real multiplier of at least 2^30 cannot be requantized")
    shift = max(1, min(upper, max(lower, SUM_SHIFT_PREFERRED)))
    while True:
        chosen = []
        for (reals, _), (value_bits, kmax, _, e) in zip(terms, limits):
            k = min(kmax, max(0, shift + e - min(31, SUM_PRODUCT_BITS - value_bits)))
            mbits = min(31, SUM_PRODUCT_BITS - value_bits - k)
            multipliers = [int(round(math.ldexp(r, shift - k))) for r in reals]
            if any(abs(m) >= 2 ** mbits for m in multipliers):  # rounded up to 2^mbits: one bit less
                break
            chosen.append((k, multipliers))
        else:
            return shift, chosen
        shift -= 1


def requantize_sum(terms: list[tuple[np.ndarray, int, np.ndarray]], shift: int) -> np.ndarray:
    """(sum_i (v_i << k_i) M_i + 2^(shift-1)) >> shift for terms (v_i, k_i, M_i), exactly, on int64 (every product
    below 2^SUM_PRODUCT_BITS by `sum_requant_params`); M_i broadcasts (per-channel multipliers)."""
    total = np.int64(1) << np.int64(shift - 1)
    for values, left, multiplier in terms:
        shifted = np.asarray(values, np.int64) << np.int64(left)
        product = shifted * np.asarray(multiplier, np.int64)
        if np.any((shifted < INT32_MIN) | (shifted > INT32_MAX)) or np.any(np.abs(product) >= 2 ** SUM_PRODUCT_BITS):
            raise OverflowError("a term of a requantized sum exceeds its bound")
        total = total + product
    return total >> np.int64(shift)


def rshift_round(x: np.ndarray, bits: int) -> np.ndarray:
    x = np.asarray(x, np.int64)
    return (x + (np.int64(1) << (bits - 1))) >> bits if bits > 0 else x


def saturate(x: np.ndarray, bits: int = 8) -> np.ndarray:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(x, low, high)


def isqrt64(x: np.ndarray) -> np.ndarray:
    """floor(sqrt(x)) of non-negative int64 values, exactly."""
    x = np.asarray(x, np.int64)
    root = np.floor(np.sqrt(x.astype(np.float64))).astype(np.int64)
    root -= (root * root > x)
    root += ((root + 1) * (root + 1) <= x)
    return root


def choose_qparams(low: float, high: float, bits: int = 8) -> tuple[float, int]:
    """Asymmetric per-tensor (scale, zero point) covering [low, high] and always 0 exactly."""
    low, high = min(low, 0.0), max(high, 0.0)
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if high - low < 1e-12:
        return 1.0, 0
    scale = (high - low) / (qmax - qmin)
    zero_point = int(round(qmin - low / scale))
    return float(scale), int(min(max(zero_point, qmin), qmax))


def symmetric_scales(weight: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """Per-channel symmetric scales (zero point 0) for weights, channel along `axis`."""
    qmax = (1 << (bits - 1)) - 1
    reduce_axes = tuple(a for a in range(weight.ndim) if a != axis % weight.ndim)
    peak = np.max(np.abs(weight), axis=reduce_axes).astype(np.float64)
    return np.where(peak > 0, peak / qmax, 1.0)


def quantize(x: np.ndarray, scale, zero_point, bits: int = 8) -> np.ndarray:
    """Round half to even like onnx's QuantizeLinear, then saturate."""
    return saturate(np.rint(np.asarray(x, np.float64) / scale) + zero_point, bits).astype(np.int64)


def dequantize(q: np.ndarray, scale, zero_point) -> np.ndarray:
    return ((np.asarray(q, np.int64) - zero_point) * np.asarray(scale, np.float64)).astype(np.float32)


def as_int64(x) -> np.ndarray:
    return np.asarray(x).astype(np.int64)


def saturate_int8(x: np.ndarray) -> np.ndarray:
    """sat8: clamp to [-128, 127] and store as int8."""
    return saturate(x, 8).astype(np.int8)


def channel_values(values, count: int, name: str) -> np.ndarray:
    """A per-channel integer parameter as `count` int64 values; a ValueError naming it when the count differs."""
    array = as_int64(values).reshape(-1)
    if array.size != count:
        raise ValueError(f"{name} needs {count} values, got {array.size}")
    return array
