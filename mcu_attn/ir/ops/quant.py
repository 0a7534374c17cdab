"""Quantization ops of pre-quantized ONNX models (QDQ and QOperator forms), with ONNX Runtime's semantics:
round half to even, saturate to the integer range, per-tensor or per-axis (and blocked) scales."""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.ops.linear import gemm_macs
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


@op("QuantizeLinear", kind="quant")
def quantize_linear(x, y_scale, y_zero_point=None, *, axis=1, block_size=0, saturate=1, output_dtype="uint8"):
    dtype = output_dtype if y_zero_point is None else dtype_name(y_zero_point.dtype)
    scale = broadcast_param(y_scale, x, axis, block_size).astype(np.float32)
    zp = 0 if y_zero_point is None else broadcast_param(y_zero_point, x, axis, block_size).astype(np.int64)
    low, high = INT_RANGES[dtype]
    q = np.rint(x.astype(np.float32) / scale).astype(np.float64) + zp
    return np.clip(q, low, high).astype(value_dtype(dtype))


@op("DequantizeLinear", kind="quant")
def dequantize_linear(x, x_scale, x_zero_point=None, *, axis=1, block_size=0):
    scale = broadcast_param(x_scale, x, axis, block_size)
    zp = 0 if x_zero_point is None else broadcast_param(x_zero_point, x, axis, block_size).astype(np.int32)
    return ((x.astype(np.int32) - zp).astype(np.float32) * scale).astype(scale.dtype)


def requantize_float(acc: np.ndarray, multiplier: np.ndarray, zero_point, dtype: np.dtype) -> np.ndarray:
    """ORT's float requantization: round_half_even(acc * multiplier) + zero_point, saturated."""
    low, high = INT_RANGES[dtype_name(dtype)]
    y = np.rint(acc.astype(np.float32) * np.asarray(multiplier, np.float32)).astype(np.float64)
    return np.clip(y + np.asarray(zero_point, np.int64), low, high).astype(dtype)


@op("QLinearMatMul", kind="quant", params=(3,), integer_params=True, macs=gemm_macs)
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


@op("QGemm", kind="quant", onnx="com.microsoft.QGemm", macs=gemm_macs)
def qgemm(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c=None, y_scale=None, y_zero_point=None, *,
          alpha=1.0, transA=0, transB=0):
    """ONNX Runtime's quantized Gemm: acc = C + (A - a_zp)(B - b_zp) in int32 (C is int32 with scale
    alpha*a_scale*b_scale), output scale alpha*a_scale*b_scale[/y_scale] per tensor or per column, computed in
    float32 in that order; requantized like QLinearMatMul when y_zero_point is given, else float32."""
    a = a.T if transA else a
    b = b.T if transB else b
    acc = np.matmul(a.astype(np.int32) - np.asarray(a_zero_point, np.int32),
                    b.astype(np.int32) - _column_param(b_zero_point, b).astype(np.int32))
    if c is not None:
        acc = acc + c.astype(np.int32)
    a_scale = np.asarray(a_scale, np.float32).reshape(())
    scale = np.float32(alpha) * a_scale * _column_param(b_scale, b).astype(np.float32)
    if y_scale is not None:
        scale = scale / np.asarray(y_scale, np.float32).reshape(())
    if y_zero_point is None:
        return (acc.astype(np.float32) * scale).astype(np.float32)
    return requantize_float(acc, scale, np.asarray(y_zero_point).reshape(()), y_zero_point.dtype)


def unpack_nbits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Little-endian bit fields of uint8 bytes along the last axis: value i sits in byte i*bits//8 at bit
    (i*bits) % 8 (for 4 bits: the low nibble first). Returns the first `count` values as int32."""
    per_byte = 8 // bits
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    fields = (packed[..., :, None] >> shifts) & np.uint8((1 << bits) - 1)
    return fields.reshape(*packed.shape[:-1], -1)[..., :count].astype(np.int32)


def matmul_nbits_weight(b, scales, zero_points=None, *, K, N, bits, block_size):
    """The float weight [N, K] of MatMulNBits: W[n, k] = (q[n, k] - zp[n, j]) * scale[n, j], j = k // block_size,
    evaluated in the scales' float type."""
    k_blocks = -(-K // block_size)
    q = unpack_nbits(np.asarray(b, np.uint8).reshape(N, k_blocks, -1), bits, block_size).reshape(N, -1)[:, :K]
    scale = np.asarray(scales).reshape(N, k_blocks)
    if zero_points is None:
        zp = np.full((N, k_blocks), 1 << (bits - 1))
    elif np.issubdtype(zero_points.dtype, np.floating):
        zp = zero_points.reshape(N, k_blocks)
    else:
        zp = unpack_nbits(zero_points.reshape(N, -1), bits, k_blocks)
    block = np.arange(K) // block_size
    return (q.astype(scale.dtype) - zp[:, block].astype(scale.dtype)) * scale[:, block]


@op("MatMulNBits", kind="quant", onnx="com.microsoft.MatMulNBits", const_inputs=(1, 2, 3), params=(1,),
    integer_params=True, macs=gemm_macs)
def matmul_nbits(a, b, scales, zero_points=None, g_idx=None, bias=None, *, K=0, N=0, bits=4, block_size=32,
                 accuracy_level=0, weight_prepacked=0):
    """ONNX Runtime's MatMulNBits: A @ Wᵀ + bias with W dequantized block-wise along K from uint8 B[N, k_blocks,
    blob] (see `matmul_nbits_weight`). Zero points are packed like B, or floats [N, k_blocks], or 2^(bits-1) when
    absent. accuracy_level only allows a runtime to compute in lower precision; this reference is the exact
    (level 0) product. The deprecated g_idx and EP-specific prepacked layouts are refused."""
    if g_idx is not None or weight_prepacked:
        raise ValueError("MatMulNBits with g_idx or a prepacked weight is not supported")
    if bits not in (2, 4, 8):
        raise ValueError(f"MatMulNBits with {bits}-bit weights is not supported (2, 4 or 8)")
    if block_size < 1 or K < 1 or N < 1:
        raise ValueError(f"MatMulNBits with block_size {block_size}, K {K}, N {N}: each must be at least 1")
    weight = matmul_nbits_weight(b, scales, zero_points, K=K, N=N, bits=bits, block_size=block_size)
    y = np.matmul(a, weight.T.astype(a.dtype))
    return (y + bias).astype(a.dtype) if bias is not None else y
