"""Addition: ONNX `Add` (numpy broadcasting) and its integer form `QAdd`, TensorFlow Lite's int8 add.

QAdd (docs/integer-kernels.md): both operands rescaled to a common 2^-20-finer scale, added, requantized:
a' = requant((a - a_zp) 2^20, a_M, a_s), b' likewise, y = sat8(requant(a' + b', out_M, out_s) + out_zp), with
twice = 2 max(s_a, s_b), a_M = quantize_multiplier(s_a / twice), b_M likewise and
out_M = quantize_multiplier(twice / (2^20 s_y)). The C kernels repeat b over a's leading axes (a bias or a
position embedding added to every row).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Node
from mcu_attn.ir.ops.lowering import Call, count, emits, repeat_count, require
from mcu_attn.ir.ops.registry import op, quantizes, spec
from mcu_attn.reference.qmath import as_int64, quantize_multiplier, requantize, saturate_int8


@op("Add", kind="elementwise", params=(0, 1), allows_inf=True)
def add(a, b):
    return np.asarray(a + b).astype(a.dtype, copy=False)


@op("QAdd", kind="integer", onnx=())
def qadd(a, b, *, a_zp=0, b_zp=0, a_multiplier=0, a_shift=0, b_multiplier=0, b_shift=0, out_multiplier=0,
         out_shift=0, out_zp=0):
    """TFLite's int8 add; b has a's shape or repeats over a's leading axes (b [C] or [1,S,C] vs a [1,S,C])."""
    trailing = tuple(b.shape[next((i for i, d in enumerate(b.shape) if d != 1), b.ndim):])
    if b.ndim > a.ndim or (trailing and tuple(a.shape[a.ndim - len(trailing):]) != trailing):
        raise ValueError(f"QAdd cannot repeat b {b.shape} over a {a.shape}")
    a1 = requantize((as_int64(a) - a_zp) << 20, a_multiplier, a_shift)
    b1 = requantize((as_int64(b) - b_zp) << 20, b_multiplier, b_shift)
    y = requantize(a1 + b1, out_multiplier, out_shift)
    return np.broadcast_to(saturate_int8(y + out_zp), a.shape).copy()


@quantizes("Add")
def _quantize_add(cv, node: Node) -> None:
    a, b = node.inputs
    if cv.src.is_const(a):
        a, b = b, a
    b_q = cv.activation(b)
    s_a, a_zp = cv.param(a)
    b_quant = cv.dst.type(b_q).quant
    s_b, b_zp = b_quant.scale[0], b_quant.zero_point[0]
    s_y, y_zp = cv.param(node.outputs[0])
    twice = 2.0 * max(s_a, s_b)
    a_m, b_m, o_m = (quantize_multiplier(s_a / twice), quantize_multiplier(s_b / twice),
                     quantize_multiplier(twice / (2 ** 20 * s_y)))
    cv.emit("QAdd", [a, b_q], node.outputs[0],
            {"a_zp": a_zp, "b_zp": b_zp, "a_multiplier": a_m[0], "a_shift": a_m[1], "b_multiplier": b_m[0],
             "b_shift": b_m[1], "out_multiplier": o_m[0], "out_shift": o_m[1], "out_zp": y_zp}, node.name)


@emits("Add", inplace=(0, 1))
def _emit_add_f32(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "float32", (0, 1))
    a, b = node.inputs
    if graph.shape(a) != graph.shape(node.outputs[0]):  # addition commutes: the full-size operand goes first
        a, b = b, a
    repeat = repeat_count(node, graph.shape(a), graph.shape(b), graph.shape(node.outputs[0]))
    return [Call("ma_add_f32", (ctx.ptr(a), ctx.ptr(b), str(count(graph, a)), str(repeat),
                                ctx.ptr(node.outputs[0], write=True)))]


@emits("QAdd", inplace=(0,))
def _emit_qadd(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "int8", (0, 1))
    keys = ("a_zp", "b_zp", "a_multiplier", "a_shift", "b_multiplier", "b_shift", "out_multiplier", "out_shift",
            "out_zp")
    attrs = spec("QAdd").resolve_attrs(node)
    params = ctx.struct("ma_add_s8_params", node, [(key.replace("multiplier", "mult"), attrs[key]) for key in keys])
    a, b = node.inputs
    repeat = repeat_count(node, graph.shape(a), graph.shape(b), graph.shape(node.outputs[0]))
    return [Call("ma_add_s8", (ctx.ptr(a), ctx.ptr(b), str(count(graph, a)), str(repeat),
                               f"&{params}", ctx.ptr(node.outputs[0], write=True)))]
