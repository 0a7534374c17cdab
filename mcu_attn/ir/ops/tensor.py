"""Layout and indexing ops with ONNX semantics. Shapes, axes and indices that decide output shapes are
attributes or constant inputs, so every shape in the IR is static."""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.ops.registry import op


def _axes(axes, rank: int) -> tuple[int, ...]:
    return tuple(sorted(int(a) % rank for a in axes))


@op("Transpose")
def transpose(x, *, perm=None):
    return np.transpose(x, None if perm is None else tuple(perm))


@op("Reshape", const_inputs=(1,))
def reshape(x, shape, *, allowzero=0):
    target = [int(d) for d in shape]
    if not allowzero:
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return np.reshape(x, target)


@op("Flatten")
def flatten(x, *, axis=1):
    axis = axis % max(x.ndim, 1) if axis != x.ndim else axis
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return np.reshape(x, (outer, -1) if x.size else (outer, int(np.prod(x.shape[axis:], dtype=np.int64))))


@op("Squeeze")
def squeeze(x, *, axes=None):
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=_axes(axes, x.ndim))


@op("Unsqueeze")
def unsqueeze(x, *, axes=()):
    rank = x.ndim + len(axes)
    out = x
    for axis in _axes(axes, rank):
        out = np.expand_dims(out, axis)
    return out


@op("Concat")
def concat(*xs, axis=0):
    return np.concatenate([x for x in xs if x is not None], axis=axis)


@op("Split")
def split(x, *, axis=0, split=(), num_outputs=0):
    """`split` gives the sizes; otherwise `num_outputs` near-equal parts (the last one smaller)."""
    if split:
        bounds = np.cumsum([int(s) for s in split])[:-1]
    else:
        part = -(-x.shape[axis] // num_outputs)
        bounds = np.arange(part, x.shape[axis], part)
    return tuple(np.split(x, bounds, axis=axis))


@op("Slice")
def slice_(x, *, starts=(), ends=(), axes=None, steps=None):
    """ONNX Slice: per-axis start/end clamped like Python slicing, negative steps allowed."""
    axes = list(range(len(starts))) if axes is None else [int(a) % x.ndim for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    index = [slice(None)] * x.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        dim = x.shape[axis]
        start, end = int(start), int(end)
        if step > 0:
            start = min(max(start + dim if start < 0 else start, 0), dim)
            end = min(max(end + dim if end < 0 else end, 0), dim)
        else:
            start = min(max(start + dim if start < 0 else start, -1), dim - 1)
            end = min(max(end + dim if end < 0 else end, -1), dim - 1)
            end = None if end < 0 else end
        index[axis] = slice(start, end, step)
    return x[tuple(index)]


@op("Gather")
def gather(x, indices, *, axis=0):
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    return np.take(x, idx, axis=axis)


@op("Expand", const_inputs=(1,))
def expand(x, shape):
    target = np.broadcast_shapes(x.shape, tuple(int(d) for d in shape))
    return np.broadcast_to(x, target).copy()


@op("Tile", const_inputs=(1,))
def tile(x, repeats):
    return np.tile(x, tuple(int(r) for r in repeats))
