"""The code emitters: one entry per IR op, registered in one table (`EMITTERS`).

An emitter turns one node into kernel calls (`Call`: a C function and its argument expressions) and registers
the data those calls need through the context (`emit.EmitContext`): constant tensors go to weights.c, op
parameters (per-channel multipliers, tables, parameter structs, strides) become static consts in model.c.
Besides `emit` an entry may declare
- `view(graph, node)`: the byte offset at which the output is a contiguous block of input 0, or None (the
  memory planner then makes the output an alias and the node emits nothing);
- `inplace`: input positions the output may overwrite: the kernel reads every input element before it writes
  the output element at the same place (elementwise kernels; float attention for q);
- `scratch(graph, node, query_tile)`: kernel scratch bytes, planned in the arena like a tensor (attention
  kernels take `query_tile` query rows at a time; their scratch grows with it, their results do not).
Layout ops work on any element type, so the same entries serve float and int8 graphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from mcu_attn.codegen.cformat import pack_int4
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import spec
from mcu_attn.ir.ops.nn import shared_mask


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class OpEmitter:
    emit: Callable[[Any, Node], list[Call]]
    view: Callable[[Graph, Node], int | None] | None = None
    inplace: tuple[int, ...] = ()
    scratch: Callable[[Graph, Node, int], int] | None = None


EMITTERS: dict[str, OpEmitter] = {}
MAX_RANK = 6  # MA_MAX_RANK (kernels/include/ma_kernels.h): the axes ma_permute and ma_copy_strided take


def emitter(*ops: str, view=None, inplace: tuple[int, ...] = (), scratch=None):
    def register(fn):
        for op in ops:
            if op in EMITTERS:
                raise ValueError(f"emitter for {op} registered twice")
            EMITTERS[op] = OpEmitter(fn, view, inplace, scratch)
        return fn
    return register


def lookup(node: Node) -> OpEmitter:
    try:
        return EMITTERS[node.op]
    except KeyError:
        supported = ", ".join(sorted(EMITTERS))
        raise UserError(f"code generation does not support {node.op} (node '{node.name or node.outputs[0]}'); "
                        f"supported ops: {supported}") from None


# ---- helpers ---------------------------------------------------------------------------------------------------

def _label(node: Node) -> str:
    return f"{node.op} node '{node.name or node.outputs[0]}'"


def _require(node: Node, graph: Graph, dtype: str, positions: tuple[int, ...] = (0,)) -> None:
    for position in positions:
        found = graph.type(node.inputs[position]).dtype
        if found != dtype:
            raise UserError(f"{_label(node)}: input {position} is {found}; the C kernel takes {dtype}")


def _rows(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape[:-1], dtype=np.int64))


def _count(graph: Graph, value: str) -> int:
    return graph.type(value).size


def only_first_output(node: Node, graph: Graph) -> None:
    """The kernels write a node's first output only: refuse a node whose other outputs (LayerNormalization's
    Mean/InvStdDev, say) are used."""
    for extra in node.outputs[1:]:
        if extra and (graph.consumers(extra) or extra in graph.outputs):
            raise UserError(f"{_label(node)}: output {extra!r} is used; the C kernel produces only the first")


def _per_channel(values, count: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(values, np.int64).reshape(-1), (count,))


def _repeat_count(node: Node, a_shape: tuple[int, ...], b_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """How many elements of b repeat along a (b broadcast over a's leading axes), for the Add kernels."""
    trimmed = list(b_shape)
    while trimmed and trimmed[0] == 1:
        trimmed.pop(0)
    if a_shape != out_shape or (trimmed and tuple(a_shape[len(a_shape) - len(trimmed):]) != tuple(trimmed)):
        raise UserError(f"{_label(node)}: cannot add {list(b_shape)} to {list(a_shape)} (the kernel repeats the "
                        f"second operand over leading axes only)")
    return max(1, int(np.prod(trimmed, dtype=np.int64)))


# ---- float baseline ----------------------------------------------------------------------------------------------

@emitter("Linear")
def _linear_f32(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    _require(node, graph, "float32")
    weight = graph.const(node.inputs[1])
    k, n = weight.shape
    w = ctx.weight(node.inputs[1], "nk", lambda: np.ascontiguousarray(weight.T.astype(np.float32)), "float")
    bias = ctx.ptr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else "NULL"
    rows = _rows(graph.shape(node.inputs[0]))
    return [Call("ma_linear_f32", (ctx.ptr(node.inputs[0]), str(rows), str(k), str(n), w, bias,
                                   ctx.ptr(node.outputs[0], write=True)))]


def _attention_scratch_f32(graph: Graph, node: Node, query_tile: int) -> int:
    """ma_attention_f32_scratch: query_tile * (4 head_dim + 20) bytes (model.c's ma_check verifies it)."""
    return query_tile * (4 * int(node.attr("head_dim", 1)) + 20)


def _heads(graph: Graph, node: Node) -> tuple[int, int, int]:
    """(leading slices, seq, width) of q/k/v [..., S, H*D]; one kernel call per leading slice."""
    shape = graph.shape(node.inputs[0])
    if any(graph.shape(v) != shape for v in node.inputs[1:3]):
        raise UserError(f"{_label(node)}: q, k and v must have the same shape for the C kernel")
    return _rows(shape[:-1]), shape[-2], shape[-1]


def _attention_mask(ctx, node: Node, seq: int, make, ctype: str) -> str:
    """The mask input as a [seq][seq] constant in weights.c (`make(array)` converts it), or NULL."""
    if len(node.inputs) < 4 or not node.inputs[3]:
        return "NULL"
    square = shared_mask(ctx.graph.const(node.inputs[3]), seq)
    if square is None:
        raise UserError(f"{_label(node)}: the C kernels take one [{seq}, {seq}] attention mask for every head")
    return ctx.weight(node.inputs[3], "mask", lambda: np.ascontiguousarray(make(square)), ctype)


@emitter("Attention", scratch=_attention_scratch_f32, inplace=(0,))  # ma_attention_f32 allows out == q
def _attention_f32(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    _require(node, graph, "float32", (0, 1, 2))
    lead, seq, width = _heads(graph, node)
    attrs = spec("Attention").resolve_attrs(node)
    # -inf (a hidden key) is stored as -FLT_MAX: C initializers hold finite numbers, and exp(-FLT_MAX - m) is 0
    mask = _attention_mask(ctx, node, seq, lambda m: np.maximum(m, np.finfo(np.float32).min).astype(np.float32),
                           "float")
    params = ctx.struct("ma_attention_f32_params", node, [
        ("seq", seq), ("heads", attrs["heads"]), ("head_dim", attrs["head_dim"]), ("window", attrs["window"]),
        ("causal", attrs["causal"]), ("global_tokens", attrs["global_tokens"]), ("query_tile", ctx.query_tile),
        ("scale", float(attrs["scale"])), ("mask", mask)])
    ctx.check(f"ma_attention_f32_scratch(&{params})", _attention_scratch_f32(graph, node, ctx.query_tile))
    return _attention_calls(ctx, node, "ma_attention_f32", params, "float", lead, seq * width * 4)


def _attention_calls(ctx, node: Node, kernel: str, params: str, scratch: str, lead: int, step: int) -> list[Call]:
    """One attention kernel call per leading (batch) slice of q, k, v and the output, `step` bytes apart."""
    return [Call(kernel, (*(ctx.ptr(v, offset=i * step) for v in node.inputs[:3]), f"&{params}",
                          ctx.scratch(scratch), ctx.ptr(node.outputs[0], write=True, offset=i * step)))
            for i in range(lead)]


@emitter("LayerNormalization")
def _layernorm_f32(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    _require(node, graph, "float32")
    shape = graph.shape(node.inputs[0])
    if node.attr("axis", -1) % len(shape) != len(shape) - 1:
        raise UserError(f"{_label(node)}: the C kernel normalises the last axis only")
    channels = shape[-1]

    def vector(position: int) -> str:
        value = node.inputs[position]
        array = np.broadcast_to(graph.const(value).astype(np.float32).reshape(-1), (channels,))
        return ctx.weight(value, "vector", lambda: np.ascontiguousarray(array), "float")

    beta = vector(2) if len(node.inputs) > 2 and node.inputs[2] else "NULL"
    eps = ctx.literal(float(node.attr("epsilon", 1e-5)), "float")
    return [Call("ma_layernorm_f32", (ctx.ptr(node.inputs[0]), str(_rows(shape)), str(channels), vector(1), beta,
                                      eps, ctx.ptr(node.outputs[0], write=True)))]


@emitter("Gelu", inplace=(0,))
def _gelu_f32(ctx, node: Node) -> list[Call]:
    _require(node, ctx.graph, "float32")
    tanh = {"none": "0", "tanh": "1"}[node.attr("approximate", "none")]
    return [Call("ma_gelu_f32", (ctx.ptr(node.inputs[0]), str(_count(ctx.graph, node.inputs[0])), tanh,
                                 ctx.ptr(node.outputs[0], write=True)))]


@emitter("Add", inplace=(0, 1))
def _add_f32(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    _require(node, graph, "float32", (0, 1))
    a, b = node.inputs
    if graph.shape(a) != graph.shape(node.outputs[0]):  # addition commutes: the full-size operand goes first
        a, b = b, a
    repeat = _repeat_count(node, graph.shape(a), graph.shape(b), graph.shape(node.outputs[0]))
    return [Call("ma_add_f32", (ctx.ptr(a), ctx.ptr(b), str(_count(graph, a)), str(repeat),
                                ctx.ptr(node.outputs[0], write=True)))]


# ---- integer ops (docs/integer-kernels.md) -----------------------------------------------------------------------

@emitter("QLinear")
def _qlinear(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    _require(node, graph, "int8")
    weight = graph.const(node.inputs[1])
    k, n = weight.shape
    bits = int(node.attr("bits", 8))
    if bits == 4:
        w = ctx.weight(node.inputs[1], "nk_s4", lambda: pack_int4(weight.T), "uint8_t")
    else:
        w = ctx.weight(node.inputs[1], "nk", lambda: np.ascontiguousarray(weight.T.astype(np.int8)), "int8_t")
    mult = ctx.table(f"{node.name}_mult", _per_channel(node.attr("multiplier"), n), "int32_t")
    shift = ctx.table(f"{node.name}_shift", _per_channel(node.attr("shift"), n), "int32_t")
    rows = _rows(graph.shape(node.inputs[0]))
    return [Call("ma_linear_s4" if bits == 4 else "ma_linear_s8",
                 (ctx.ptr(node.inputs[0]), str(rows), str(k), str(n), w, ctx.ptr(node.inputs[2]), mult, shift,
                  str(int(node.attr("y_zp", 0))), ctx.ptr(node.outputs[0], write=True)))]


def _attention_scratch_s8(graph: Graph, node: Node, query_tile: int) -> int:
    """ma_attention_s8_scratch: query_tile * (8 head_dim + 20) bytes (model.c's ma_check verifies it)."""
    return query_tile * (8 * int(node.attr("head_dim", 1)) + 20)


@emitter("QAttention", scratch=_attention_scratch_s8)
def _qattention(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    _require(node, graph, "int8", (0, 1, 2))
    lead, seq, width = _heads(graph, node)
    attrs = spec("QAttention").resolve_attrs(node)
    table = ctx.table(f"{node.name}_exp", np.asarray(attrs["exp_table"], np.int64), "uint16_t")
    mask = _attention_mask(ctx, node, seq, lambda m: (m != 0).astype(np.uint8), "uint8_t")
    fields = [("seq", seq)] + [(key, attrs[key]) for key in ("heads", "head_dim", "window", "causal",
                                                             "global_tokens", "q_zp", "k_zp", "v_zp", "out_zp")]
    fields += [("score_mult", attrs["score_multiplier"]), ("score_shift", attrs["score_shift"]),
               ("out_mult", attrs["out_multiplier"]), ("out_shift", attrs["out_shift"]),
               ("query_tile", ctx.query_tile), ("exp_table", table), ("mask", mask)]
    params = ctx.struct("ma_attention_s8_params", node, fields)
    ctx.check(f"ma_attention_s8_scratch(&{params})", _attention_scratch_s8(graph, node, ctx.query_tile))
    return _attention_calls(ctx, node, "ma_attention_s8", params, "int64_t", lead, seq * width)


@emitter("QLayerNorm")
def _qlayernorm(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    _require(node, graph, "int8")
    shape = graph.shape(node.inputs[0])
    channels = shape[-1]
    fields = [("c", channels), ("out_zp", int(node.attr("out_zp", 0))), ("eps", ("int64_t", node.attr("eps", 0))),
              ("mult", ctx.table(f"{node.name}_mult", _per_channel(node.attr("multiplier"), channels), "int32_t")),
              ("shift", ctx.table(f"{node.name}_shift", _per_channel(node.attr("shift"), channels), "int32_t")),
              ("bias", ctx.ptr(node.inputs[1]))]
    params = ctx.struct("ma_layernorm_s8_params", node, fields)
    return [Call("ma_layernorm_s8", (ctx.ptr(node.inputs[0]), str(_rows(shape)), f"&{params}",
                                     ctx.ptr(node.outputs[0], write=True)))]


@emitter("QTable", inplace=(0,))
def _qtable(ctx, node: Node) -> list[Call]:
    _require(node, ctx.graph, "int8")
    table = ctx.table(f"{node.name}_table", np.asarray(node.attr("table"), np.int64), "int8_t")
    return [Call("ma_table_s8", (ctx.ptr(node.inputs[0]), str(_count(ctx.graph, node.inputs[0])), table,
                                 ctx.ptr(node.outputs[0], write=True)))]


@emitter("QAdd", inplace=(0,))
def _qadd(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    _require(node, graph, "int8", (0, 1))
    keys = ("a_zp", "b_zp", "a_multiplier", "a_shift", "b_multiplier", "b_shift", "out_multiplier", "out_shift",
            "out_zp")
    attrs = spec("QAdd").resolve_attrs(node)
    params = ctx.struct("ma_add_s8_params", node, [(key.replace("multiplier", "mult"), attrs[key]) for key in keys])
    a, b = node.inputs
    repeat = _repeat_count(node, graph.shape(a), graph.shape(b), graph.shape(node.outputs[0]))
    return [Call("ma_add_s8", (ctx.ptr(a), ctx.ptr(b), str(_count(graph, a)), str(repeat),
                               f"&{params}", ctx.ptr(node.outputs[0], write=True)))]


@emitter("QRequant", inplace=(0,))
def _qrequant(ctx, node: Node) -> list[Call]:
    _require(node, ctx.graph, "int8")
    attrs = spec("QRequant").resolve_attrs(node)
    return [Call("ma_requant_s8", (ctx.ptr(node.inputs[0]), str(_count(ctx.graph, node.inputs[0])),
                                   *(str(int(attrs[key])) for key in ("in_zp", "multiplier", "shift", "out_zp")),
                                   ctx.ptr(node.outputs[0], write=True)))]


# ---- layout (any element type) -----------------------------------------------------------------------------------
# Single-input layout ops are analysed on an index probe: their numpy reference applied to arange(n) says which
# input element each output element is. Consecutive indices mean a view; indices affine in the output position
# mean one strided copy; anything else (a Gather with irregular indices) is a gather.

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
        raise UserError(f"{_label(node)}: the copy needs {len(dims)} axes after merging; the kernel takes "
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


@emitter("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Slice", "Gather", view=_layout_view)
def _select(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    if any(v and not graph.is_const(v) for v in node.inputs[1:]):
        raise UserError(f"{_label(node)}: indices and shapes must be constants for the C code")
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
                               str(_rows(shape[:axis + 1])), str(shape[axis]), str(inner),
                               ctx.table(f"{node.name}_indices", indices, "int32_t"), str(indices.size)))]


@emitter("Transpose", view=_layout_view)
def _transpose(ctx, node: Node) -> list[Call]:
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
        raise UserError(f"{_label(node)}: the transpose has {len(dims)} axes after merging; the kernel takes "
                        f"{MAX_RANK}")
    elem = graph.type(node.inputs[0]).np_dtype.itemsize
    return [Call("ma_permute", (ctx.raw(node.inputs[0]), ctx.raw(node.outputs[0], write=True), str(elem),
                                str(len(dims)), ctx.table(f"{node.name}_shape", dims, "int32_t"),
                                ctx.table(f"{node.name}_perm", new_perm, "int32_t")))]


@emitter("Concat")
def _concat(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    out_shape = graph.shape(node.outputs[0])
    axis = int(node.attr("axis", 0)) % len(out_shape)
    elem = graph.type(node.outputs[0]).np_dtype.itemsize
    outer = _rows(out_shape[:axis + 1])
    inner = int(np.prod(out_shape[axis + 1:], dtype=np.int64)) * elem
    calls, position = [], 0
    for value in node.inputs:
        if not value:
            continue
        if graph.type(value).dtype != graph.type(node.outputs[0]).dtype:
            raise UserError(f"{_label(node)}: inputs of different types")
        chunk = graph.shape(value)[axis] * inner
        if chunk:
            calls.append(_strided_copy(ctx, node, value, node.outputs[0], [outer, chunk // elem],
                                       [chunk, elem], [out_shape[axis] * inner, elem], 0, position))
        position += chunk
    return calls
