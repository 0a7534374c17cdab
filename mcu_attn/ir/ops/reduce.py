"""Reductions with ONNX semantics: softmax, means, sums and maxima over axes (kind "reduce")."""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.ops.registry import op


@op("Softmax", kind="reduce")
def softmax(x, *, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


@op("LogSoftmax", kind="reduce")
def log_softmax(x, *, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return (shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))).astype(x.dtype)


def _reduce_axes(x, axes, noop_with_empty_axes):
    if axes is None or len(axes) == 0:
        return None if not noop_with_empty_axes else ()
    return tuple(int(a) % x.ndim for a in axes)


@op("ReduceMean", kind="reduce")
def reduce_mean(x, *, axes=None, keepdims=1, noop_with_empty_axes=0):
    axes = _reduce_axes(x, axes, noop_with_empty_axes)
    if axes == ():
        return x
    return np.mean(x, axis=axes, keepdims=bool(keepdims)).astype(x.dtype)


@op("ReduceSum", kind="reduce")
def reduce_sum(x, *, axes=None, keepdims=1, noop_with_empty_axes=0):
    axes = _reduce_axes(x, axes, noop_with_empty_axes)
    if axes == ():
        return x
    return np.sum(x, axis=axes, keepdims=bool(keepdims)).astype(x.dtype)


@op("ReduceMax", kind="reduce")
def reduce_max(x, *, axes=None, keepdims=1, noop_with_empty_axes=0):
    """The maximum over `axes`; over an empty set it is the lowest value of the dtype (-inf for floats)."""
    axes = _reduce_axes(x, axes, noop_with_empty_axes)
    if axes == ():
        return x
    if np.issubdtype(x.dtype, np.floating):
        lowest = -np.inf
    else:
        lowest = False if x.dtype == np.bool_ else np.iinfo(x.dtype).min
    return np.max(x, axis=axes, keepdims=bool(keepdims), initial=lowest)


@op("GlobalAveragePool", kind="reduce")
def global_average_pool(x):
    """Mean over every axis after the first two (tf2onnx spells a last-axis mean this way)."""
    return np.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype)
