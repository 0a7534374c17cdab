"""Pointwise ops with ONNX semantics (numpy broadcasting; the result keeps the first input's dtype).

Float arithmetic is kind "elementwise"; comparisons, logic, selection and casts are kind "logic". The unary
functions quantize to a 256-entry table of their own reference (`int8_pointwise.as_table`); Gelu also has a
float kernel. `Add` and `Mul` have their own modules (add.py, mul.py): they have integer kernels for two
run-time operands.
"""

from __future__ import annotations

import math

import numpy as np

from mcu_attn.ir.graph import Node
from mcu_attn.ir.ops.int8_pointwise import as_table
from mcu_attn.ir.ops.lowering import Call, count, emits, require
from mcu_attn.ir.ops.registry import op
from mcu_attn.ir.types import value_dtype

_erf = np.frompyfunc(math.erf, 1, 1)


def erf_f32(x: np.ndarray) -> np.ndarray:
    """erf evaluated in double precision and rounded once to the input dtype."""
    return _erf(np.asarray(x, np.float64)).astype(np.float64).astype(x.dtype)


def _same(a: np.ndarray, result: np.ndarray) -> np.ndarray:
    return np.asarray(result).astype(a.dtype, copy=False)


@op("Sub", kind="elementwise", params=(0, 1), quantize=as_table)
def sub(a, b):
    return _same(a, a - b)


@op("Div", kind="elementwise", quantize=as_table)
def div(a, b):
    if np.issubdtype(a.dtype, np.integer):
        return _same(a, np.trunc(a / np.where(b == 0, 1, b)))
    return _same(a, a / b)


@op("Pow", kind="elementwise")
def power(a, b):
    return _same(a, np.power(a.astype(np.float64), b.astype(np.float64)))


@op("Max", kind="elementwise", allows_inf=True)
def maximum(*xs):
    return _same(xs[0], np.maximum.reduce(np.broadcast_arrays(*xs)))


@op("Min", kind="elementwise", allows_inf=True)
def minimum(*xs):
    return _same(xs[0], np.minimum.reduce(np.broadcast_arrays(*xs)))


@op("Neg", kind="elementwise", quantize=as_table)
def neg(x):
    return -x


@op("Abs", kind="elementwise", quantize=as_table)
def absolute(x):
    return np.abs(x)


@op("Exp", kind="elementwise", quantize=as_table)
def exp(x):
    return _same(x, np.exp(x))


@op("Log", kind="elementwise")
def log(x):
    return _same(x, np.log(x))


@op("Sqrt", kind="elementwise", quantize=as_table)
def sqrt(x):
    return _same(x, np.sqrt(x))


@op("Reciprocal", kind="elementwise")
def reciprocal(x):
    return _same(x, 1.0 / x)


@op("Erf", kind="elementwise", quantize=as_table)
def erf(x):
    return erf_f32(x)


@op("Relu", kind="elementwise", quantize=as_table)
def relu(x):
    return np.maximum(x, np.zeros((), x.dtype))


@op("Tanh", kind="elementwise", quantize=as_table)
def tanh(x):
    return _same(x, np.tanh(x))


@op("Sigmoid", kind="elementwise", quantize=as_table)
def sigmoid(x):
    return _same(x, 1.0 / (1.0 + np.exp(-x.astype(np.float64))))


@op("Clip", kind="elementwise", allows_inf=True, quantize=as_table)
def clip(x, low=None, high=None):
    lo = -np.inf if low is None else low
    hi = np.inf if high is None else high
    return _same(x, np.minimum(np.maximum(x, lo), hi))


@op("Gelu", kind="elementwise", quantize=as_table)
def gelu(x, *, approximate="none"):
    """GELU: x * Phi(x), exact (erf) or with the tanh approximation, computed in double precision."""
    x64 = x.astype(np.float64)
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x64 + 0.044715 * x64 ** 3)
        return _same(x, 0.5 * x64 * (1.0 + np.tanh(inner)))
    if approximate != "none":
        raise ValueError(f"Gelu approximate={approximate!r} is not 'none' or 'tanh'")
    return _same(x, 0.5 * x64 * (1.0 + _erf(x64 / math.sqrt(2.0)).astype(np.float64)))


@op("Silu", kind="elementwise", quantize=as_table, onnx=())
def silu(x):
    """x * sigmoid(x) (SiLU, Swish), computed in double precision."""
    x64 = x.astype(np.float64)
    return _same(x, x64 / (1.0 + np.exp(-x64)))


@op("Where", kind="logic", allows_inf=True)
def where(condition, a, b):
    return np.where(condition, a, b).astype(np.result_type(a, b))


@op("IsNaN", kind="logic")
def isnan(x):
    return np.isnan(x)


@op("Equal", kind="logic")
def equal(a, b):
    return np.equal(a, b)


@op("Less", kind="logic")
def less(a, b):
    return np.less(a, b)


@op("Greater", kind="logic")
def greater(a, b):
    return np.greater(a, b)


@op("Not", kind="logic")
def logical_not(x):
    return np.logical_not(x)


@op("And", kind="logic")
def logical_and(a, b):
    return np.logical_and(a, b)


@op("Or", kind="logic")
def logical_or(a, b):
    return np.logical_or(a, b)


@op("Cast", kind="logic")
def cast(x, *, to="float32"):
    """Cast to the IR dtype named by `to` (the frontend translates ONNX's enum); sub-byte targets wrap like
    ONNX (ml_dtypes' conversion)."""
    return x.astype(value_dtype(to))



@emits("Gelu", inplace=(0,))
def _emit_gelu_f32(ctx, node: Node) -> list[Call]:
    require(node, ctx.graph, "float32")
    tanh = {"none": "0", "tanh": "1"}[node.attr("approximate", "none")]
    return [Call("ma_gelu_f32", (ctx.ptr(node.inputs[0]), str(count(ctx.graph, node.inputs[0])), tanh,
                                 ctx.ptr(node.outputs[0], write=True)))]


@emits("Silu", inplace=(0,))
def _emit_silu_f32(ctx, node: Node) -> list[Call]:
    require(node, ctx.graph, "float32")
    return [Call("ma_silu_f32", (ctx.ptr(node.inputs[0]), str(count(ctx.graph, node.inputs[0])),
                                 ctx.ptr(node.outputs[0], write=True)))]
