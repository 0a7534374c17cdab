"""Linear layers with the op that reads their output folded into the requantizing epilogue: `QLinearTable` and
`QLinearAdd`. The fusion passes (`passes/fuse.py`) build them from a QLinear and its only reader; `fuse_table` and
`fuse_residual` below are their quantize rules (the fused op's parameters from the integer graph's scales).

QLinearTable: y = table[QLinear's y + 128] (the GELU of an FFN's first linear): exactly QLinear followed by QTable,
without writing and reading the int8 in between.

QLinearAdd (docs/integer-kernels.md, "One requantization of a sum"): a linear whose output is added to a residual
r, in one requantization instead of the linear's and the add's:
    acc[n] = bias[n] + sum_k x[k] w[k, n]                                   (int32, as QLinear's)
    y = sat8((acc M[n] + ((r - r_zp) << r_k) r_M + 2^(s-1)) >> s) + y_zp)    (int64, one floor shift)
with (s, M, r_k, r_M) = qmath.sum_requant_params of the reals s_x s_w[n] / s_y (the accumulator's scale in
output units, per channel) and s_r / s_y. No intermediate int8 (no rounding, no saturation) sits between the
product and the sum, so the result is the rounded real sum itself.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.linear import linear_accumulators, linear_call, linear_macs, qlinear
from mcu_attn.ir.ops.lowering import Call, emits, per_channel
from mcu_attn.ir.ops.registry import op, spec
from mcu_attn.reference.qmath import as_int64, channel_values, requantize_sum, saturate_int8, sum_requant_params


@op("QLinearTable", kind="integer", const_inputs=(1, 2), macs=linear_macs, onnx=())
def qlinear_table(x, w, bias, *, multiplier=(), shift=(), y_zp=0, bits=8, table=tuple(range(-128, 128))):
    """y = table[QLinear(x, w, bias) + 128]."""
    lut = as_int64(table).reshape(-1)
    if lut.size != 256 or lut.min() < -128 or lut.max() > 127:
        raise ValueError("QLinearTable table needs 256 values in the int8 range")
    y = qlinear(x, w, bias, multiplier=multiplier, shift=shift, y_zp=y_zp, bits=bits)
    return lut[as_int64(y) + 128].astype(np.int8)


@op("QLinearAdd", kind="integer", const_inputs=(1, 2), macs=linear_macs, onnx=())
def qlinear_add(x, w, bias, r, *, multiplier=(), right_shift=32, r_multiplier=0, r_left_shift=0, r_zp=0, y_zp=0,
                bits=8):
    """y = sat8((acc M[n] + ((r - r_zp) << r_left_shift) r_multiplier + 2^(right_shift-1)) >> right_shift) + y_zp),
    acc = bias + x @ w; r has y's shape."""
    acc = linear_accumulators(x, w, bias, bits)
    if as_int64(r).shape != acc.shape:
        raise ValueError(f"QLinearAdd residual {np.shape(r)} differs from the output {acc.shape}")
    y = requantize_sum([(acc, 0, channel_values(multiplier, acc.shape[-1], "multiplier")),
                        (as_int64(r) - r_zp, r_left_shift, r_multiplier)], right_shift)
    return saturate_int8(y + y_zp)


def fuse_table(linear: Node, table: Node) -> Node:
    """QLinear `linear` and the QTable reading its output as one QLinearTable node."""
    attrs = {**spec("QLinear").resolve_attrs(linear), "table": tuple(table.attr("table"))}
    return Node("QLinearTable", list(linear.inputs), list(table.outputs), attrs, linear.name)


def fuse_residual(graph: Graph, linear: Node, add: Node) -> Node:
    """QLinear `linear` and the QAdd adding its output to a residual as one QLinearAdd node, its parameters from
    the real scales: s_x, s_w[n] (the weight's per-channel scales), s_r and the add's output scale s_y."""
    x, w = linear.inputs[0], linear.inputs[1]
    residual = add.inputs[1] if add.inputs[0] == linear.outputs[0] else add.inputs[0]
    s_x = graph.type(x).quant.scale[0]
    weight = graph.type(w).quant
    n = graph.shape(w)[1]
    s_w = np.broadcast_to(np.asarray(weight.scale, np.float64), (n,))
    r_quant, y_quant = graph.type(residual).quant, graph.type(add.outputs[0]).quant
    s_y = y_quant.scale[0]
    shift, ((_, acc_multipliers), (r_k, (r_m,))) = sum_requant_params([([float(s_x * s / s_y) for s in s_w], 31),
                                                                      ([r_quant.scale[0] / s_y], 8)])
    attrs = {"multiplier": tuple(acc_multipliers), "right_shift": shift, "r_multiplier": r_m, "r_left_shift": r_k,
             "r_zp": int(r_quant.zero_point[0]), "y_zp": int(y_quant.zero_point[0]),
             "bits": int(linear.attr("bits", 8))}
    return Node("QLinearAdd", [x, w, linear.inputs[2], residual], list(add.outputs), attrs, linear.name)


@emits("QLinearTable")
def _emit_qlinear_table(ctx, node: Node) -> list[Call]:
    fn, args = linear_call(ctx, node, "linear_table")
    shift = ctx.table(f"{node.name}_shift", per_channel(node.attr("shift"), int(args[3])), "int32_t")
    table = ctx.table(f"{node.name}_table", np.asarray(node.attr("table"), np.int64), "int8_t", hot=True)
    return [Call(fn, (*args, shift, str(int(node.attr("y_zp", 0))), table, ctx.ptr(node.outputs[0], write=True)))]


@emits("QLinearAdd", inplace=(3,))
def _emit_qlinear_add(ctx, node: Node) -> list[Call]:
    fn, args = linear_call(ctx, node, "linear_add")
    attrs = spec("QLinearAdd").resolve_attrs(node)
    params = ctx.struct("ma_linear_add_params", node,
                        [("right_shift", attrs["right_shift"]), ("r_mult", attrs["r_multiplier"]),
                         ("r_left_shift", attrs["r_left_shift"]), ("r_zp", attrs["r_zp"]), ("y_zp", attrs["y_zp"])])
    return [Call(fn, (*args, f"&{params}", ctx.ptr(node.inputs[3]), ctx.ptr(node.outputs[0], write=True)))]
