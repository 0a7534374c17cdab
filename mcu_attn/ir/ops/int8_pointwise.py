"""Integer pointwise ops: `QTable`, any function of one int8 value as a 256-entry table, and `QRequant`, a
change of scale and zero point.

A float op whose quantize rule is `as_table` (GELU, ReLU, tanh, ... : the unary ops of elementwise.py, and Sub,
Mul, Div by a scalar constant) becomes a QTable: its own float reference is evaluated on the 256 possible inputs, so the table is exact with respect to
the reference, whatever the function: table[i] = sat8(round(f(s_x (i - 128 - x_zp)) / s_y) + y_zp).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Node
from mcu_attn.ir.ops.lowering import Call, count, emits, require
from mcu_attn.ir.ops.registry import op, spec
from mcu_attn.reference.qmath import as_int64, dequantize, requantize, saturate, saturate_int8


@op("QTable", kind="integer", onnx=())
def qtable(x, *, table=tuple(range(-128, 128))):
    """y = table[x + 128]: any pointwise function of an int8 value, precomputed."""
    lut = as_int64(table).reshape(-1)
    if lut.size != 256 or lut.min() < -128 or lut.max() > 127:
        raise ValueError("QTable table needs 256 values in the int8 range")
    return lut[as_int64(x) + 128].astype(np.int8)


@op("QRequant", kind="integer", onnx=())
def qrequant(x, *, in_zp=0, multiplier=0, shift=0, out_zp=0):
    """y = sat8(requant(x - in_zp, multiplier, shift) + out_zp): a change of scale and zero point."""
    return saturate_int8(requantize(as_int64(x) - in_zp, multiplier, shift) + out_zp)


def as_table(cv, node: Node) -> None:
    """The quantize rule of single-input pointwise ops: their float reference evaluated on the 256 possible int8
    inputs (constant extra inputs, such as Clip's bounds, are passed as they are)."""
    x = node.inputs[0]
    if cv.src.is_const(x) or any(v and not (cv.src.is_const(v) and cv.src.const(v).size == 1)
                                 for v in node.inputs[1:]):
        raise UserError(f"node '{node.name}': {node.op} is a table of its first input only with scalar constant "
                        f"other inputs")
    s_x, x_zp = cv.param(x)
    s_y, y_zp = cv.param(node.outputs[0])
    codes = np.arange(-128, 128)
    real = dequantize(codes, s_x, x_zp)
    extra = [cv.src.const(v) if v else None for v in node.inputs[1:]]
    result = spec(node.op).run(node, [real] + extra)[0].astype(np.float64)
    table = saturate(np.rint(result / s_y) + y_zp)
    cv.emit("QTable", [x], node.outputs[0], {"table": tuple(int(v) for v in table)}, node.name)


@emits("QTable", inplace=(0,))
def _emit_qtable(ctx, node: Node) -> list[Call]:
    require(node, ctx.graph, "int8")
    table = ctx.table(f"{node.name}_table", np.asarray(node.attr("table"), np.int64), "int8_t", hot=True)
    return [Call("ma_table_s8", (ctx.ptr(node.inputs[0]), str(count(ctx.graph, node.inputs[0])), table,
                                 ctx.ptr(node.outputs[0], write=True)))]


@emits("QRequant", inplace=(0,))
def _emit_qrequant(ctx, node: Node) -> list[Call]:
    require(node, ctx.graph, "int8")
    attrs = spec("QRequant").resolve_attrs(node)
    return [Call("ma_requant_s8", (ctx.ptr(node.inputs[0]), str(count(ctx.graph, node.inputs[0])),
                                   *(str(int(attrs[key])) for key in ("in_zp", "multiplier", "shift", "out_zp")),
                                   ctx.ptr(node.outputs[0], write=True)))]
