"""Layout and indexing ops with ONNX semantics (kind "layout", and Concat). Shapes, axes and indices that
decide output shapes are attributes or constant inputs, so every shape in the IR is static.

Layout ops move int8 values unchanged, so quantized they are the same op and their outputs keep their input's
(scale, zero point); the inputs of a Concat are requantized to the Concat's parameters (`QRequant`).

Code generation works on any element type. A single-input layout op is analysed on an index probe: its numpy
reference applied to arange(n) says which input element each output element is. Consecutive indices mean a
view (no code); indices affine in the output position mean one strided copy (`ma_copy_strided`, after merging
axes that are contiguous on both sides); anything else (a Gather with irregular indices) is `ma_gather`.
A Transpose is `ma_permute` over its non-unit axes, with axes that stay adjacent merged.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.lowering import Call, emits, label, rows
from mcu_attn.ir.ops.registry import op, quantizes, spec
from mcu_attn.ir.types import QuantParams, TensorType
from mcu_attn.reference.qmath import quantize_multiplier

MAX_RANK = 6  # MA_MAX_RANK (kernels/include/ma_kernels.h): the axes ma_permute and ma_copy_strided take


def _axes(axes, rank: int) -> tuple[int, ...]:
    return tuple(sorted(int(a) % rank for a in axes))


@op("Identity", kind="layout")
def identity(x):
    return x


@op("Transpose", kind="layout")
def transpose(x, *, perm=None):
    return np.transpose(x, None if perm is None else tuple(perm))


@op("Reshape", kind="layout", const_inputs=(1,))
def reshape(x, shape, *, allowzero=0):
    target = [int(d) for d in shape]
    if not allowzero:
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return np.reshape(x, target)


@op("Flatten", kind="layout")
def flatten(x, *, axis=1):
    axis = axis % max(x.ndim, 1) if axis != x.ndim else axis
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return np.reshape(x, (outer, -1) if x.size else (outer, int(np.prod(x.shape[axis:], dtype=np.int64))))


@op("Squeeze", kind="layout")
def squeeze(x, *, axes=None):
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=_axes(axes, x.ndim))


@op("Unsqueeze", kind="layout")
def unsqueeze(x, *, axes=()):
    rank = x.ndim + len(axes)
    out = x
    for axis in _axes(axes, rank):
        out = np.expand_dims(out, axis)
    return out


@op("Concat", kind="concat", params="all")
def concat(*xs, axis=0):
    return np.concatenate([x for x in xs if x is not None], axis=axis)


@op("Split", kind="layout")
def split(x, *, axis=0, split=(), num_outputs=0):
    """`split` gives the sizes; otherwise `num_outputs` near-equal parts (the last one smaller)."""
    if split:
        bounds = np.cumsum([int(s) for s in split])[:-1]
    else:
        part = -(-x.shape[axis] // num_outputs)
        bounds = np.arange(part, x.shape[axis], part)
    return tuple(np.split(x, bounds, axis=axis))


@op("Slice", kind="layout")
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


@op("Gather", kind="layout")
def gather(x, indices, *, axis=0):
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    return np.take(x, idx, axis=axis)


@op("GatherElements", kind="layout")
def gather_elements(x, indices, *, axis=0):
    """y[i][j][k] = x[indices[i][j][k]][j][k] (axis 0; likewise for any axis); negative indices count from the end."""
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    return np.take_along_axis(x, idx, axis=axis)


@op("Expand", kind="layout", const_inputs=(1,))
def expand(x, shape):
    target = np.broadcast_shapes(x.shape, tuple(int(d) for d in shape))
    return np.broadcast_to(x, target).copy()


@op("Tile", kind="layout", const_inputs=(1,))
def tile(x, repeats):
    return np.tile(x, tuple(int(r) for r in repeats))


# ---- quantization ------------------------------------------------------------------------------------------------

@quantizes("Identity", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Gather", "Expand", "Tile")
def _quantize_layout(cv, node: Node) -> None:
    """The same op on int8 values; its output keeps the input's parameters (the quantizer propagates them)."""
    inputs = [node.inputs[0]] + [cv.dst.add_const(f"{v}_c", cv.src.const(v), cv.src.type(v)) if v else ""
                                 for v in node.inputs[1:]]
    cv.emit(node.op, inputs, node.outputs[0], dict(node.attrs), node.name)


@quantizes("Concat")
def _quantize_concat(cv, node: Node) -> None:
    """Every input brought to the Concat's own (scale, zero point): constants quantized with them, other inputs
    requantized by a `QRequant` where their parameters differ."""
    s_y, y_zp = cv.param(node.outputs[0])
    inputs = []
    for value in node.inputs:
        if cv.src.is_const(value):
            inputs.append(cv.const_int8(f"{value}_q", cv.src.const(value), s_y, y_zp))
            continue
        s_x, x_zp = cv.param(value)
        if (s_x, x_zp) != (s_y, y_zp):
            requantized = cv.dst.fresh(f"{value}_rq")
            multiplier, shift = quantize_multiplier(s_x / s_y)
            cv.params[requantized] = (s_y, y_zp)
            cv.dst.types[requantized] = TensorType("int8", cv.src.shape(value), QuantParams((s_y,), (y_zp,)))
            cv.dst.append(Node("QRequant", [value], [requantized], {"in_zp": x_zp, "multiplier": multiplier,
                                                                     "shift": shift, "out_zp": y_zp}, requantized))
            value = requantized
        inputs.append(value)
    cv.emit("Concat", inputs, node.outputs[0], dict(node.attrs), node.name)


# ---- code generation ---------------------------------------------------------------------------------------------

def _probe(graph: Graph, node: Node) -> np.ndarray:
    shape = graph.shape(node.inputs[0])
    index = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)
    args = [index] + [graph.const(v) if v else None for v in node.inputs[1:]]
    return spec(node.op).run(node, args)[0]


def _contiguous_start(probe: np.ndarray) -> int | None:
    flat = probe.reshape(-1)
    if flat.size == 0:
        return 0
    start = int(flat[0])
    return start if np.array_equal(flat, np.arange(start, start + flat.size)) else None


def _layout_view(graph: Graph, node: Node) -> int | None:
    if any(v and not graph.is_const(v) for v in node.inputs[1:]):
        return None
    start = _contiguous_start(_probe(graph, node))
    return None if start is None else start * graph.type(node.inputs[0]).np_dtype.itemsize


def _affine(probe: np.ndarray) -> tuple[int, list[int]] | None:
    """(base, strides in elements) with probe[i] = base + sum_d i_d * strides[d], or None."""
    if probe.size == 0:
        return None
    base = int(probe.reshape(-1)[0])
    strides = []
    for axis, dim in enumerate(probe.shape):
        unit = [0] * probe.ndim
        unit[axis] = 1 if dim > 1 else 0
        strides.append(int(probe[tuple(unit)]) - base if dim > 1 else 0)
    grids = np.indices(probe.shape, dtype=np.int64) if probe.ndim else np.zeros((0,), np.int64)
    rebuilt = base + sum((grids[d] * strides[d] for d in range(probe.ndim)), np.zeros(probe.shape, np.int64))
    return (base, strides) if np.array_equal(rebuilt, probe) else None


def collapse_copy(shape, x_strides, y_strides, elem: int) -> tuple[int, list[int], list[int], list[int]]:
    """Drop unit axes, merge axes that are contiguous in both x and y, and fold a contiguous innermost axis
    into the element size: (elem_size, shape, x_strides, y_strides), strides in bytes."""
    dims = [(d, xs, ys) for d, xs, ys in zip(shape, x_strides, y_strides) if d != 1]
    merged: list[tuple[int, int, int]] = []
    for d, xs, ys in dims:
        if merged and merged[-1][1] == xs * d and merged[-1][2] == ys * d:
            merged[-1] = (merged[-1][0] * d, xs, ys)
        else:
            merged.append((d, xs, ys))
    if merged and merged[-1][1] == elem and merged[-1][2] == elem:
        elem *= merged[-1][0]
        merged.pop()
    return elem, [m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged]


def _strided_copy(ctx, node: Node, source: str, target: str, shape, x_strides, y_strides, x_offset: int,
                  y_offset: int) -> Call:
    elem, dims, xs, ys = collapse_copy(shape, x_strides, y_strides, ctx.graph.type(source).np_dtype.itemsize)
    if len(dims) > MAX_RANK:
        raise UserError(f"{label(node)}: the copy needs {len(dims)} axes after merging; the kernel takes "
                        f"{MAX_RANK}")
    if not dims:  # one contiguous block
        return Call("memcpy", (ctx.raw(target, write=True, offset=y_offset), ctx.raw(source, offset=x_offset),
                               str(elem)))
    return Call("ma_copy_strided", (ctx.raw(source, offset=x_offset), ctx.raw(target, write=True, offset=y_offset),
                                    str(elem), str(len(dims)), ctx.table(f"{node.name}_shape", dims, "int32_t"),
                                    ctx.table(f"{node.name}_xs", xs, "int32_t"),
                                    ctx.table(f"{node.name}_ys", ys, "int32_t")))


def _contiguous_strides(shape, elem: int) -> list[int]:
    strides, step = [], elem
    for dim in reversed(shape):
        strides.insert(0, step)
        step *= dim
    return strides


@emits("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Slice", "Gather", view=_layout_view)
def _emit_select(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    if any(v and not graph.is_const(v) for v in node.inputs[1:]):
        raise UserError(f"{label(node)}: indices and shapes must be constants for the C code")
    probe = _probe(graph, node)
    elem = graph.type(node.inputs[0]).np_dtype.itemsize
    fitted = _affine(probe)
    if fitted is not None:
        base, strides = fitted
        return [_strided_copy(ctx, node, node.inputs[0], node.outputs[0], probe.shape, [s * elem for s in strides],
                              _contiguous_strides(probe.shape, elem), base * elem, 0)]
    # only a Gather with irregular indices is not affine: take along its axis
    shape = graph.shape(node.inputs[0])
    axis = int(node.attr("axis", 0)) % len(shape)
    indices = np.asarray(graph.const(node.inputs[1]), np.int64).reshape(-1)
    indices = np.where(indices < 0, indices + shape[axis], indices)
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64)) * elem
    return [Call("ma_gather", (ctx.raw(node.inputs[0]), ctx.raw(node.outputs[0], write=True),
                               str(rows(shape[:axis + 1])), str(shape[axis]), str(inner),
                               ctx.table(f"{node.name}_indices", indices, "int32_t"), str(indices.size)))]


@emits("Transpose", view=_layout_view)
def _emit_transpose(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    shape = graph.shape(node.inputs[0])
    perm = node.attr("perm") or tuple(reversed(range(len(shape))))
    perm = [int(p) % max(len(shape), 1) for p in perm]
    kept = {axis: rank for rank, axis in enumerate(a for a in range(len(shape)) if shape[a] != 1)}
    perm = [kept[p] for p in perm if p in kept]                       # unit axes carry no data
    shape = [d for d in shape if d != 1]
    groups: list[list[int]] = []                                      # input axes that stay adjacent
    for p in perm:
        if groups and groups[-1][-1] + 1 == p:
            groups[-1].append(p)
        else:
            groups.append([p])
    order = sorted(range(len(groups)), key=lambda g: groups[g][0])    # merged axes in input order
    dims = [int(np.prod([shape[a] for a in groups[g]], dtype=np.int64)) for g in order]
    new_perm = [order.index(g) for g in range(len(groups))]
    if len(dims) > MAX_RANK:
        raise UserError(f"{label(node)}: the transpose has {len(dims)} axes after merging; the kernel takes "
                        f"{MAX_RANK}")
    elem = graph.type(node.inputs[0]).np_dtype.itemsize
    return [Call("ma_permute", (ctx.raw(node.inputs[0]), ctx.raw(node.outputs[0], write=True), str(elem),
                                str(len(dims)), ctx.table(f"{node.name}_shape", dims, "int32_t"),
                                ctx.table(f"{node.name}_perm", new_perm, "int32_t")))]


@emits("Concat")
def _emit_concat(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    out_shape = graph.shape(node.outputs[0])
    axis = int(node.attr("axis", 0)) % len(out_shape)
    elem = graph.type(node.outputs[0]).np_dtype.itemsize
    outer = rows(out_shape[:axis + 1])
    inner = int(np.prod(out_shape[axis + 1:], dtype=np.int64)) * elem
    calls, position = [], 0
    for value in node.inputs:
        if not value:
            continue
        if graph.type(value).dtype != graph.type(node.outputs[0]).dtype:
            raise UserError(f"{label(node)}: inputs of different types")
        chunk = graph.shape(value)[axis] * inner
        if chunk:
            calls.append(_strided_copy(ctx, node, value, node.outputs[0], [outer, chunk // elem],
                                       [chunk, elem], [out_shape[axis] * inner, elem], 0, position))
        position += chunk
    return calls
