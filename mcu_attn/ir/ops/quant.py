"""Quantization ops of pre-quantized ONNX models (QDQ and QOperator forms), with ONNX Runtime's semantics:
round half to even, saturate to the integer range, per-tensor or per-axis (and blocked) scales."""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.ops.registry import op
from mcu_attn.ir.types import dtype_name, value_dtype

INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535),
              "int4": (-8, 7), "uint4": (0, 15), "int2": (-2, 1), "uint2": (0, 3), "int32": (-2**31, 2**31 - 1)}


def broadcast_param(param: np.ndarray, x: np.ndarray, axis: int, block_size: int = 0) -> np.ndarray:
    """Reshape a per-tensor, per-axis or blocked scale/zero-point so it broadcasts against x."""
    param = np.asarray(param)
    if param.ndim == 0 or param.size == 1 and param.ndim <= 1:
        return param.reshape(())
    axis = axis % x.ndim
    if block_size:
        return np.repeat(param, block_size, axis=axis).take(np.arange(x.shape[axis]), axis=axis)
    shape = [1] * x.ndim
    shape[axis] = param.size
    return param.reshape(shape)


@op("QuantizeLinear")
def quantize_linear(x, y_scale, y_zero_point=None, *, axis=1, block_size=0, saturate=1, output_dtype="uint8"):
    dtype = output_dtype if y_zero_point is None else dtype_name(y_zero_point.dtype)
    scale = broadcast_param(y_scale, x, axis, block_size).astype(np.float32)
    zp = 0 if y_zero_point is None else broadcast_param(y_zero_point, x, axis, block_size).astype(np.int64)
    low, high = INT_RANGES[dtype]
    q = np.rint(x.astype(np.float32) / scale).astype(np.float64) + zp
    return np.clip(q, low, high).astype(value_dtype(dtype))


@op("DequantizeLinear")
def dequantize_linear(x, x_scale, x_zero_point=None, *, axis=1, block_size=0):
    scale = broadcast_param(x_scale, x, axis, block_size)
    zp = 0 if x_zero_point is None else broadcast_param(x_zero_point, x, axis, block_size).astype(np.int32)
    return ((x.astype(np.int32) - zp).astype(np.float32) * scale).astype(scale.dtype)


def requantize_float(acc: np.ndarray, multiplier: np.ndarray, zero_point, dtype: np.dtype) -> np.ndarray:
    """ORT's float requantization: round_half_even(acc * multiplier) + zero_point, saturated."""
    low, high = INT_RANGES[dtype_name(dtype)]
    y = np.rint(acc.astype(np.float32) * np.asarray(multiplier, np.float32)).astype(np.float64)
    return np.clip(y + np.asarray(zero_point, np.int64), low, high).astype(dtype)


@op("QLinearMatMul")
def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """Integer matmul of (a - a_zp) and (b - b_zp) in int32, requantized by a_scale*b_scale/y_scale."""
    acc = np.matmul(a.astype(np.int32) - np.asarray(a_zero_point, np.int32),
                    b.astype(np.int32) - _column_param(b_zero_point, b).astype(np.int32))
    multiplier = np.asarray(a_scale, np.float32) * _column_param(b_scale, b).astype(np.float32) / np.float32(y_scale)
    return requantize_float(acc, multiplier, y_zero_point, y_zero_point.dtype)


def _column_param(param: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A per-column (last axis) parameter of the right operand of a matmul, or a scalar."""
    param = np.asarray(param)
    return param.reshape(()) if param.size == 1 else param.reshape(1, -1)
