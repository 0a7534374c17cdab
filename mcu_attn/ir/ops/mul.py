"""Multiplication: ONNX `Mul` (numpy broadcasting) and `QMul`, the int8 product of two run-time tensors (the
gated feed-forward of Llama: silu(gate) * up).

QMul: y = sat8(requant((a - a_zp)(b - b_zp), M, s) + y_zp) with M, s = quantize_multiplier(s_a s_b / s_y); b has
a's shape or repeats over a's leading axes, like QAdd. A product by a scalar constant quantizes to a table
instead (int8_pointwise.as_table).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Node
from mcu_attn.ir.ops.int8_pointwise import as_table
from mcu_attn.ir.ops.lowering import Call, count, emits, repeat_count, require
from mcu_attn.ir.ops.registry import op, quantizes
from mcu_attn.reference.qmath import as_int64, quantize_multiplier, requantize, saturate_int8


@op("Mul", kind="elementwise", params=(0, 1))
def mul(a, b):
    return np.asarray(a * b).astype(a.dtype, copy=False)


@op("QMul", kind="integer", onnx=())
def qmul(a, b, *, a_zp=0, b_zp=0, multiplier=0, shift=0, y_zp=0):
    """y = sat8(requant((a - a_zp)(b - b_zp), multiplier, shift) + y_zp); b repeats over a's leading axes."""
    trailing = tuple(b.shape[next((i for i, d in enumerate(b.shape) if d != 1), b.ndim):])
    if b.ndim > a.ndim or (trailing and tuple(a.shape[a.ndim - len(trailing):]) != trailing):
        raise ValueError(f"QMul cannot repeat b {b.shape} over a {a.shape}")
    y = requantize((as_int64(a) - a_zp) * (as_int64(b) - b_zp), multiplier, shift)
    return np.broadcast_to(saturate_int8(y + y_zp), a.shape).copy()


@quantizes("Mul")
def _quantize_mul(cv, node: Node) -> None:
    a, b = node.inputs
    if cv.src.is_const(a) or cv.src.is_const(b):
        if cv.src.is_const(a):  # the product commutes: the run-time operand goes first
            node = Node(node.op, [b, a], list(node.outputs), dict(node.attrs), node.name)
        as_table(cv, node)
        return
    if cv.src.shape(a) != cv.src.shape(node.outputs[0]):
        a, b = b, a
    (s_a, a_zp), (s_b, b_zp) = cv.param(a), cv.param(b)
    s_y, y_zp = cv.param(node.outputs[0])
    multiplier, shift = quantize_multiplier(s_a * s_b / s_y)
    cv.emit("QMul", [a, b], node.outputs[0], {"a_zp": a_zp, "b_zp": b_zp, "multiplier": multiplier,
                                              "shift": shift, "y_zp": y_zp}, node.name)


@emits("Mul", inplace=(0, 1))
def _emit_mul_f32(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "float32", (0, 1))
    a, b = node.inputs
    if graph.shape(a) != graph.shape(node.outputs[0]):  # the product commutes: the full-size operand goes first
        a, b = b, a
    repeat = repeat_count(node, graph.shape(a), graph.shape(b), graph.shape(node.outputs[0]))
    return [Call("ma_mul_f32", (ctx.ptr(a), ctx.ptr(b), str(count(graph, a)), str(repeat),
                                ctx.ptr(node.outputs[0], write=True)))]


@emits("QMul", inplace=(0,))
def _emit_qmul(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "int8", (0, 1))
    a, b = node.inputs
    repeat = repeat_count(node, graph.shape(a), graph.shape(b), graph.shape(node.outputs[0]))
    attrs = [str(int(node.attr(key, 0))) for key in ("a_zp", "b_zp", "multiplier", "shift", "y_zp")]
    return [Call("ma_mul_s8", (ctx.ptr(a), ctx.ptr(b), str(count(graph, a)), str(repeat), *attrs,
                               ctx.ptr(node.outputs[0], write=True)))]
