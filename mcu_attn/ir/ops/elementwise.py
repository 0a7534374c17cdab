"""Pointwise ops with ONNX semantics (numpy broadcasting; the result keeps the first input's dtype)."""

from __future__ import annotations

import math

import numpy as np

from mcu_attn.ir.ops.registry import op
from mcu_attn.ir.types import value_dtype

_erf = np.frompyfunc(math.erf, 1, 1)


def erf_f32(x: np.ndarray) -> np.ndarray:
    """erf evaluated in double precision and rounded once to the input dtype."""
    return _erf(np.asarray(x, np.float64)).astype(np.float64).astype(x.dtype)


def _same(a: np.ndarray, result: np.ndarray) -> np.ndarray:
    return np.asarray(result).astype(a.dtype, copy=False)


@op("Add")
def add(a, b):
    return _same(a, a + b)


@op("Sub")
def sub(a, b):
    return _same(a, a - b)


@op("Mul")
def mul(a, b):
    return _same(a, a * b)


@op("Div")
def div(a, b):
    if np.issubdtype(a.dtype, np.integer):
        return _same(a, np.trunc(a / np.where(b == 0, 1, b)))
    return _same(a, a / b)


@op("Pow")
def power(a, b):
    return _same(a, np.power(a.astype(np.float64), b.astype(np.float64)))


@op("Max")
def maximum(*xs):
    return _same(xs[0], np.maximum.reduce(np.broadcast_arrays(*xs)))


@op("Min")
def minimum(*xs):
    return _same(xs[0], np.minimum.reduce(np.broadcast_arrays(*xs)))


@op("Neg")
def neg(x):
    return -x


@op("Abs")
def absolute(x):
    return np.abs(x)


@op("Exp")
def exp(x):
    return _same(x, np.exp(x))


@op("Log")
def log(x):
    return _same(x, np.log(x))


@op("Sqrt")
def sqrt(x):
    return _same(x, np.sqrt(x))


@op("Reciprocal")
def reciprocal(x):
    return _same(x, 1.0 / x)


@op("Erf")
def erf(x):
    return erf_f32(x)


@op("Relu")
def relu(x):
    return np.maximum(x, np.zeros((), x.dtype))


@op("Tanh")
def tanh(x):
    return _same(x, np.tanh(x))


@op("Sigmoid")
def sigmoid(x):
    return _same(x, 1.0 / (1.0 + np.exp(-x.astype(np.float64))))


@op("Clip")
def clip(x, low=None, high=None):
    lo = -np.inf if low is None else low
    hi = np.inf if high is None else high
    return _same(x, np.minimum(np.maximum(x, lo), hi))


@op("Gelu")
def gelu(x, *, approximate="none"):
    """GELU: x * Phi(x), exact (erf) or with the tanh approximation, computed in double precision."""
    x64 = x.astype(np.float64)
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x64 + 0.044715 * x64 ** 3)
        return _same(x, 0.5 * x64 * (1.0 + np.tanh(inner)))
    if approximate != "none":
        raise ValueError(f"Gelu approximate={approximate!r} is not 'none' or 'tanh'")
    return _same(x, 0.5 * x64 * (1.0 + _erf(x64 / math.sqrt(2.0)).astype(np.float64)))


@op("Where")
def where(condition, a, b):
    return np.where(condition, a, b).astype(np.result_type(a, b))


@op("Equal")
def equal(a, b):
    return np.equal(a, b)


@op("Less")
def less(a, b):
    return np.less(a, b)


@op("Greater")
def greater(a, b):
    return np.greater(a, b)


@op("Not")
def logical_not(x):
    return np.logical_not(x)


@op("And")
def logical_and(a, b):
    return np.logical_and(a, b)


@op("Or")
def logical_or(a, b):
    return np.logical_or(a, b)


@op("Cast")
def cast(x, *, to="float32"):
    """Cast to the IR dtype named by `to` (the frontend translates ONNX's enum); sub-byte targets wrap like
    ONNX (ml_dtypes' conversion)."""
    return x.astype(value_dtype(to))


@op("Identity")
def identity(x):
    return x
