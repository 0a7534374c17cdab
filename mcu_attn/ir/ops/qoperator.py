"""onnxruntime's QOperator ops beyond the matrix products (those are in quant.py): ONNX `QLinearConv` and the
com.microsoft `QLinearAdd`, `QLinearMul`, `QLinearConcat` and `QLinearSoftmax` that `quantize_static(...,
QuantFormat.QOperator)` writes. Each reference computes what onnxruntime's CPU kernels compute, measured op by op
against onnxruntime 1.32 on one-op models (tests/test_qoperator_ops.py), not just the ideal
quantize(op(dequantize(inputs))), which differs from them by one step near rounding ties:

- QLinearConv: an int32 sum of (x - x_zp) w per output channel (+ the int32 bias), then
  round_half_even(acc * m[o]) + y_zp with m[o] = x_scale * w_scale[o] / y_scale evaluated in float32, like
  QLinearMatMul. Padding reads x_zp (the real value 0).
- QLinearAdd (MLAS): with r_a = a_scale / c_scale, r_b = b_scale / c_scale and the constant
  k = c_zp - r_a a_zp - r_b b_zp, all float32, c = round_half_even(fma(a, r_a, fma(b, r_b, k))): two fused
  multiply-adds, the operand that is a single value folded into the constant first (onnxruntime's x86-64 kernels
  use FMA; a kernel without it can round a near-tie the other way).
- QLinearMul (MLAS): round_half_even((a - a_zp)(b - b_zp) * (a_scale b_scale / c_scale) + c_zp), float32.
- QLinearConcat: every input requantized to the output's parameters, quantize(dequantize(x)) (float32; an input
  that already has them is copied).
- QLinearSoftmax: onnxruntime's table algorithm, which approximates softmax: a float32 table
  T[v] = exp((v - 255 + b / x_scale) x_scale), v = 0..255, with b = max(0, ln(FLT_MAX / D) - 5) for a reduction
  of D values; per row, each x reads T at x - max(row) + 255 (x_zero_point cancels), the row's float32 sum S is
  accumulated in order, and y = sat8(round_half_even(T * floor(1 / y_scale) / S) + y_zp). floor(1 / y_scale)
  is exact for the usual y_scale = 1/256 and rounds other scales down.
The frontend lowers all of them to DequantizeLinear -> float op -> QuantizeLinear (passes/qoperator.py), so that
attention, LayerNorm and GELU are visible to the patterns and the model's scales become the int8 build's.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.conv import _convolve, _out_spatial, geometry
from mcu_attn.ir.ops.quant import INT_RANGES, requantize_float
from mcu_attn.ir.ops.registry import op
from mcu_attn.ir.types import dtype_name

F32 = np.float32


def _scalar(value) -> np.float32:
    return F32(np.asarray(value, F32).reshape(-1)[0])


def _zero_point(value) -> int:
    return 0 if value is None else int(np.asarray(value).reshape(-1)[0])


def _saturate(y: np.ndarray, like: np.ndarray) -> np.ndarray:
    low, high = INT_RANGES[dtype_name(like.dtype)]
    return np.clip(y, low, high).astype(like.dtype)


def _fma(x: np.ndarray, y: np.float32, z: np.ndarray) -> np.ndarray:
    """float32 fused multiply-add: the product of two float32 values is exact in float64, so one rounding of
    the float64 sum to float32 is the fused result (double rounding differs only when the float64 sum is itself
    a float32 tie, which needs more than 53 significant bits here and does not occur)."""
    return (x.astype(np.float64) * np.float64(y) + np.asarray(z, np.float64)).astype(F32)


def _conv_macs(node: Node, graph: Graph) -> int:
    w = graph.shape(node.inputs[3])
    return int(np.prod(graph.shape(node.outputs[0]), dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))


@op("QLinearConv", kind="quant", const_inputs=(3,), params=(3, 8), integer_params=True, macs=_conv_macs)
def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, bias=None, *,
                 auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """ONNX QLinearConv as onnxruntime computes it (module docstring): int32 taps, a float32 multiplier per
    output channel, round half to even."""
    g = geometry(x.shape, w.shape, auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                 pads=pads, strides=strides)
    channels = g["out_c"]
    w_zp = np.broadcast_to(np.asarray(w_zero_point if w_zero_point is not None else 0, np.int64).reshape(-1),
                           (channels,))
    weights = w.astype(np.int64) - w_zp.reshape(-1, *([1] * (w.ndim - 1)))
    x_zp = _zero_point(x_zero_point)
    acc = _convolve(x.astype(np.int64) - x_zp, weights, g, 0)
    if bias is not None:
        acc = acc + bias.astype(np.int64)[None, :, None]
    w_scale = np.broadcast_to(np.asarray(w_scale, F32).reshape(-1), (channels,))
    multiplier = (_scalar(x_scale) * w_scale / _scalar(y_scale)).astype(F32)[None, :, None]
    y = requantize_float(acc, multiplier, _zero_point(y_zero_point), y_zero_point.dtype)
    return y.reshape((x.shape[0], channels) + _out_spatial(x, g))


@op("MsQLinearAdd", kind="quant", onnx="com.microsoft.QLinearAdd")
def qlinear_add(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point=None):
    """onnxruntime's QLinearAdd with numpy broadcasting (module docstring): two float32 fused multiply-adds."""
    ratio_a = _scalar(a_scale) / _scalar(c_scale)
    ratio_b = _scalar(b_scale) / _scalar(c_scale)
    constant = (F32(_zero_point(c_zero_point)) - ratio_a * F32(_zero_point(a_zero_point))
                - ratio_b * F32(_zero_point(b_zero_point)))
    (first, r_first), (second, r_second) = (a, ratio_a), (b, ratio_b)
    if a.size == 1 and b.size != 1:  # the single value joins the constant first
        (first, r_first), (second, r_second) = (b, ratio_b), (a, ratio_a)
    inner = _fma(second.astype(F32), r_second, constant)
    total = _fma(np.broadcast_to(first.astype(F32), np.broadcast_shapes(a.shape, b.shape)), r_first, inner)
    like = c_zero_point if c_zero_point is not None else np.zeros((), np.uint8)
    return _saturate(np.rint(total), like)


@op("MsQLinearMul", kind="quant", onnx="com.microsoft.QLinearMul")
def qlinear_mul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point=None):
    """onnxruntime's QLinearMul with numpy broadcasting (module docstring): one float32 multiplier."""
    multiplier = _scalar(a_scale) * _scalar(b_scale) / _scalar(c_scale)
    product = ((a.astype(F32) - F32(_zero_point(a_zero_point))) * (b.astype(F32) - F32(_zero_point(b_zero_point))))
    like = c_zero_point if c_zero_point is not None else np.zeros((), np.uint8)
    return _saturate(np.rint(product * multiplier + F32(_zero_point(c_zero_point))), like)


@op("MsQLinearConcat", kind="quant", onnx="com.microsoft.QLinearConcat")
def qlinear_concat(y_scale, y_zero_point, *triples, axis=0):
    """Inputs (Y_scale, Y_zero_point, then X, X_scale, X_zero_point per input), each requantized to the
    output's parameters and concatenated along `axis`."""
    if len(triples) % 3 or not triples:
        raise ValueError("QLinearConcat takes the output's scale and zero point, then (x, scale, zero point) "
                         "per input")
    scale, zero_point = _scalar(y_scale), _zero_point(y_zero_point)
    parts = []
    for x, x_scale, x_zero_point in zip(triples[0::3], triples[1::3], triples[2::3]):
        if _scalar(x_scale) == scale and _zero_point(x_zero_point) == zero_point:
            parts.append(x)
            continue
        real = (x.astype(np.int32) - _zero_point(x_zero_point)).astype(F32) * _scalar(x_scale)
        parts.append(_saturate(np.rint(real / scale).astype(np.float64) + zero_point, y_zero_point))
    return np.concatenate(parts, axis=axis).astype(y_zero_point.dtype)


def softmax_table(x_scale: np.float32, length: int) -> np.ndarray:
    """onnxruntime's float32 exp table of QLinearSoftmax, indexed by x - max + 255 (module docstring)."""
    shift = max(0.0, float(np.log(np.float64(np.finfo(F32).max) / length)) - 5.0) / np.float64(x_scale)
    steps = np.arange(256, dtype=np.float64)
    return np.exp((steps - 255 + shift) * np.float64(x_scale)).astype(F32)


@op("MsQLinearSoftmax", kind="quant", onnx="com.microsoft.QLinearSoftmax")
def qlinear_softmax(x, x_scale, x_zero_point, y_scale, y_zero_point=None, *, axis=-1, opset=13):
    """onnxruntime's table softmax (module docstring); before opset 13 over the flattened axes from `axis` on."""
    axis = axis % x.ndim
    moved = x if opset < 13 else np.moveaxis(x, axis, -1)
    length = int(np.prod(x.shape[axis:])) if opset < 13 else x.shape[axis]
    rows = moved.reshape(-1, length).astype(np.int64)
    table = softmax_table(_scalar(x_scale), length)
    values = table[rows - rows.max(axis=1, keepdims=True) + 255]
    sums = np.cumsum(values, axis=1, dtype=F32)[:, -1:]  # in order, like the kernel's loop
    inverse = np.floor(F32(1.0) / _scalar(y_scale)).astype(F32)
    like = y_zero_point if y_zero_point is not None else np.zeros((), np.uint8)
    y = _saturate(np.rint((values * inverse) / sums) + _zero_point(y_zero_point), like).reshape(moved.shape)
    return y if opset < 13 else np.moveaxis(y, -1, axis)


# IR names: the com.microsoft ops carry an "Ms" prefix (QLinearAdd is the fused linear + add, linear_epilogue.py)
QOPERATOR_OPS = ("QLinearConv", "MsQLinearAdd", "MsQLinearMul", "MsQLinearConcat", "MsQLinearSoftmax")
