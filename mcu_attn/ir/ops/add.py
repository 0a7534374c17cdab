"""Addition: ONNX `Add` (numpy broadcasting) and its integer form `QAdd`, an int8 add with one requantization.

QAdd (docs/integer-kernels.md, "One requantization of a sum"): both operands go to the output scale in one
step, y = sat8(((a - a_zp) << a_k) a_M + ((b - b_zp) << b_k) b_M + 2^(s-1)) >> s) + out_zp) on int64, with
(s, a_k, a_M, b_k, b_M) = qmath.sum_requant_params of the reals s_a / s_y and s_b / s_y. TensorFlow Lite's add
requantizes three times (each operand to a 2^20-finer common scale, then the sum); one step is cheaper and
rounds once. The C kernels repeat b over a's leading axes (a bias or a position embedding added to every row).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Node
from mcu_attn.ir.ops.lowering import Call, count, emits, repeat_count, require
from mcu_attn.ir.ops.registry import op, quantizes, spec
from mcu_attn.reference.qmath import as_int64, requantize_sum, saturate_int8, sum_requant_params


@op("Add", kind="elementwise", params=(0, 1), allows_inf=True)
def add(a, b):
    return np.asarray(a + b).astype(a.dtype, copy=False)


@op("QAdd", kind="integer", onnx=())
def qadd(a, b, *, a_zp=0, b_zp=0, a_multiplier=0, a_left_shift=0, b_multiplier=0, b_left_shift=0, right_shift=1,
         out_zp=0):
    """int8 add in one requantization; b has a's shape or repeats over a's leading axes (b [C] or [1,S,C] vs
    a [1,S,C])."""
    trailing = tuple(b.shape[next((i for i, d in enumerate(b.shape) if d != 1), b.ndim):])
    if b.ndim > a.ndim or (trailing and tuple(a.shape[a.ndim - len(trailing):]) != trailing):
        raise ValueError(f"QAdd cannot repeat b {b.shape} over a {a.shape}")
    y = requantize_sum([(as_int64(a) - a_zp, a_left_shift, a_multiplier),
                        (np.broadcast_to(as_int64(b) - b_zp, a.shape), b_left_shift, b_multiplier)], right_shift)
    return saturate_int8(y + out_zp)


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
    cv.emit("QAdd", [a, b_q], node.outputs[0], {"a_zp": a_zp, "b_zp": b_zp, **add_params(s_a / s_y, s_b / s_y),
                                                 "out_zp": y_zp}, node.name)


def add_params(a_real: float, b_real: float) -> dict:
    """QAdd's multipliers and shifts for operand scales a_real and b_real in units of the output scale."""
    shift, ((a_k, (a_m,)), (b_k, (b_m,))) = sum_requant_params([([a_real], 8), ([b_real], 8)])
    return {"a_multiplier": a_m, "a_left_shift": a_k, "b_multiplier": b_m, "b_left_shift": b_k,
            "right_shift": shift}


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
    keys = ("a_zp", "b_zp", "a_multiplier", "a_left_shift", "b_multiplier", "b_left_shift", "right_shift", "out_zp")
    attrs = spec("QAdd").resolve_attrs(node)
    params = ctx.struct("ma_add_s8_params", node, [(key.replace("multiplier", "mult"), attrs[key]) for key in keys])
    a, b = node.inputs
    repeat = repeat_count(node, graph.shape(a), graph.shape(b), graph.shape(node.outputs[0]))
    return [Call("ma_add_s8", (ctx.ptr(a), ctx.ptr(b), str(count(graph, a)), str(repeat),
                               f"&{params}", ctx.ptr(node.outputs[0], write=True)))]
