"""RMSNorm over the last axis (Llama): ONNX `RMSNormalization` (opset 23) and its integer form `QRMSNorm`.

y = x / sqrt(mean(x^2) + epsilon) * scale: LayerNorm without the centring and without a bias. The frontend
recognises the decomposed Pow/ReduceMean/Add/Sqrt/Div/Mul spelling by what it computes
(frontend/pointwise_patterns.py).

QRMSNorm: per row of C values, in integers: x_i - x_zp is the real value in input steps, so d_i = C (x_i - x_zp)
(C times, for the precision QLayerNorm gets the same way), V = sum d_i^2, sigma = isqrt(V / C + eps) (= C times
the root mean square in input steps; eps = C^2 epsilon / s_x^2), inv = floor(2^30 / sigma) (one reciprocal per
row), n_i = round(d_i inv / 2^15) = x_i / rms in Q15, and y_i = sat8(requant(n_i, M_i, s_i) + y_zp) with
M_i, s_i = quantize_multiplier(scale_i / (s_y 2^15)).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Node
from mcu_attn.ir.ops.lowering import Call, emits, label, per_channel, require, rows
from mcu_attn.ir.ops.registry import op, quantizes
from mcu_attn.reference.qmath import (as_int64, channel_values, isqrt64, quantize_multiplier, requantize,
                                      rshift_round, saturate_int8)


@op("RMSNormalization", kind="norm", params=(1,))
def rms_norm(x, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    """x / sqrt(mean(x^2 over axes [axis, rank)) + epsilon) * scale, computed in float32."""
    axes = tuple(range(axis % x.ndim, x.ndim))
    xf = x.astype(np.float32)
    mean_square = np.mean(np.square(xf), axis=axes, keepdims=True)
    return (xf / np.sqrt(mean_square + np.float32(epsilon)) * scale).astype(x.dtype)


@op("QRMSNorm", kind="integer", onnx=())
def qrmsnorm(x, *, multiplier=(), shift=(), eps=0, in_zp=0, out_zp=0):
    """Integer RMSNorm over the last axis (see the module docstring)."""
    if eps < 0:
        raise ValueError("QRMSNorm eps must be non-negative")
    channels = x.shape[-1]
    d = channels * (as_int64(x) - in_zp)
    sigma = np.maximum(1, isqrt64(np.sum(d * d, axis=-1, keepdims=True) // channels + int(eps)))
    n = rshift_round(d * ((np.int64(1) << 30) // sigma), 15)
    y = requantize(n, channel_values(multiplier, channels, "multiplier"), channel_values(shift, channels, "shift"))
    return saturate_int8(y + out_zp)


def _last_axis(node: Node, rank: int, what: str) -> None:
    if int(node.attr("axis", -1)) % rank != rank - 1:
        raise UserError(f"{label(node)}: {what} normalises the last axis only")


@quantizes("RMSNormalization")
def _quantize_rms_norm(cv, node: Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    _last_axis(node, len(cv.src.shape(x)), "integer RMSNorm")
    channels = cv.src.shape(x)[-1]
    gamma = np.broadcast_to(cv.src.const(node.inputs[1]).astype(np.float64).reshape(-1), (channels,))
    s_x, x_zp = cv.param(x)
    s_y, y_zp = cv.param(out)
    multipliers = [quantize_multiplier(g / (s_y * 2 ** 15)) for g in gamma]
    eps = int(round(channels * channels * float(node.attr("epsilon", 1e-5)) / (s_x * s_x)))
    cv.emit("QRMSNorm", [x], out, {"multiplier": tuple(m for m, _ in multipliers),
                                   "shift": tuple(s for _, s in multipliers), "eps": eps, "in_zp": x_zp,
                                   "out_zp": y_zp}, node.name)


@emits("RMSNormalization")
def _emit_rms_norm_f32(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "float32")
    shape = graph.shape(node.inputs[0])
    _last_axis(node, len(shape), "the C kernel")
    gamma = np.broadcast_to(graph.const(node.inputs[1]).astype(np.float32).reshape(-1), (shape[-1],))
    scale = ctx.weight(node.inputs[1], "vector", lambda: np.ascontiguousarray(gamma), "float")
    eps = ctx.literal(float(node.attr("epsilon", 1e-5)), "float")
    return [Call("ma_rmsnorm_f32", (ctx.ptr(node.inputs[0]), str(rows(shape)), str(shape[-1]), scale, eps,
                                    ctx.ptr(node.outputs[0], write=True)))]


@emits("QRMSNorm")
def _emit_qrmsnorm(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "int8")
    shape = graph.shape(node.inputs[0])
    channels = shape[-1]
    fields = [("c", channels), ("in_zp", int(node.attr("in_zp", 0))), ("out_zp", int(node.attr("out_zp", 0))),
              ("eps", ("int64_t", node.attr("eps", 0))),
              ("mult", ctx.table(f"{node.name}_mult", per_channel(node.attr("multiplier"), channels), "int32_t")),
              ("shift", ctx.table(f"{node.name}_shift", per_channel(node.attr("shift"), channels), "int32_t"))]
    params = ctx.struct("ma_rmsnorm_s8_params", node, fields)
    return [Call("ma_rmsnorm_s8", (ctx.ptr(node.inputs[0]), str(rows(shape)), f"&{params}",
                                   ctx.ptr(node.outputs[0], write=True)))]
