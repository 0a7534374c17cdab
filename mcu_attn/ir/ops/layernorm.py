"""LayerNorm over the last axis: ONNX `LayerNormalization` and its integer form `QLayerNorm`.

QLayerNorm (docs/integer-kernels.md): per row of C values, the mean and variance in integers: S = sum x,
d_i = C x_i - S (C times the centred value, so no division), V = sum d_i^2 = C (C sum x^2 - S^2),
sigma = isqrt(V / C + eps) (= C times the standard deviation in input steps; eps is C^2 epsilon / s_x^2),
inv = floor(2^30 / sigma) (one reciprocal per row), n_i = round(d_i inv / 2^15) = (x_i - mean) / std in Q15,
and a per-channel requantization folds gamma_i / s_y; beta_i / s_y is the int32 bias. The input zero point
cancels in d_i.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Node
from mcu_attn.ir.ops.lowering import Call, emits, label, per_channel, require, rows
from mcu_attn.ir.ops.registry import op, quantizes
from mcu_attn.reference.qmath import (as_int64, channel_values, isqrt64, quantize_multiplier, requantize,
                                      rshift_round, saturate_int8)


@op("LayerNormalization", kind="norm", params=(1, 2))
def layer_norm(x, scale, bias=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """Normalise over axes [axis, rank); outputs Y, Mean and InvStdDev (the last two in float32)."""
    axis = axis % x.ndim
    axes = tuple(range(axis, x.ndim))
    xf = x.astype(np.float32)
    mean = np.mean(xf, axis=axes, keepdims=True)
    var = np.mean(np.square(xf - mean), axis=axes, keepdims=True)
    inv_std = (1.0 / np.sqrt(var + np.float32(epsilon))).astype(np.float32)
    y = (xf - mean) * inv_std * scale
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype), mean.astype(np.float32), inv_std


@op("QLayerNorm", kind="integer", const_inputs=(1,), onnx=())
def qlayernorm(x, bias, *, multiplier=(), shift=(), eps=0, out_zp=0):
    """Integer LayerNorm over the last axis (see the module docstring); bias int32 [C] is beta / s_y."""
    if eps < 0:
        raise ValueError("QLayerNorm eps must be non-negative")
    channels = x.shape[-1]
    x64 = as_int64(x)
    total = np.sum(x64, axis=-1, keepdims=True)
    d = channels * x64 - total
    variance = np.sum(d * d, axis=-1, keepdims=True) // channels + int(eps)
    sigma = np.maximum(1, isqrt64(variance))
    inv = (np.int64(1) << 30) // sigma
    n = rshift_round(d * inv, 15)
    y = requantize(n, channel_values(multiplier, channels, "multiplier"), channel_values(shift, channels, "shift"))
    return saturate_int8(y + channel_values(bias, channels, "bias") + out_zp)


@quantizes("LayerNormalization")
def _quantize_layer_norm(cv, node: Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    if node.attr("axis", -1) % len(cv.src.shape(x)) != len(cv.src.shape(x)) - 1:
        raise UserError(f"node '{node.name}': integer LayerNorm normalises the last axis only")
    channels = cv.src.shape(x)[-1]
    gamma = cv.src.const(node.inputs[1]).astype(np.float64).reshape(-1)
    beta = (cv.src.const(node.inputs[2]).astype(np.float64).reshape(-1) if len(node.inputs) > 2 and node.inputs[2]
            else np.zeros(channels))
    gamma, beta = np.broadcast_to(gamma, (channels,)), np.broadcast_to(beta, (channels,))
    s_x, _ = cv.param(x)
    s_y, y_zp = cv.param(out)
    multipliers = [quantize_multiplier(g / (s_y * 2 ** 15)) for g in gamma]
    bias = cv.dst.add_const(f"{node.name}_b", np.rint(beta / s_y).astype(np.int32))
    eps = int(round(channels * channels * float(node.attr("epsilon", 1e-5)) / (s_x * s_x)))
    cv.emit("QLayerNorm", [x, bias], out, {"multiplier": tuple(m for m, _ in multipliers),
                                           "shift": tuple(s for _, s in multipliers), "eps": eps,
                                           "out_zp": y_zp}, node.name)


@emits("LayerNormalization")
def _emit_layernorm_f32(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "float32")
    shape = graph.shape(node.inputs[0])
    if node.attr("axis", -1) % len(shape) != len(shape) - 1:
        raise UserError(f"{label(node)}: the C kernel normalises the last axis only")
    channels = shape[-1]

    def vector(position: int) -> str:
        value = node.inputs[position]
        array = np.broadcast_to(graph.const(value).astype(np.float32).reshape(-1), (channels,))
        return ctx.weight(value, "vector", lambda: np.ascontiguousarray(array), "float")

    beta = vector(2) if len(node.inputs) > 2 and node.inputs[2] else "NULL"
    eps = ctx.literal(float(node.attr("epsilon", 1e-5)), "float")
    return [Call("ma_layernorm_f32", (ctx.ptr(node.inputs[0]), str(rows(shape)), str(channels), vector(1), beta,
                                      eps, ctx.ptr(node.outputs[0], write=True)))]


@emits("QLayerNorm")
def _emit_qlayernorm(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "int8")
    shape = graph.shape(node.inputs[0])
    channels = shape[-1]
    fields = [("c", channels), ("out_zp", int(node.attr("out_zp", 0))), ("eps", ("int64_t", node.attr("eps", 0))),
              ("mult", ctx.table(f"{node.name}_mult", per_channel(node.attr("multiplier"), channels), "int32_t")),
              ("shift", ctx.table(f"{node.name}_shift", per_channel(node.attr("shift"), channels), "int32_t")),
              ("bias", ctx.ptr(node.inputs[1]))]
    params = ctx.struct("ma_layernorm_s8_params", node, fields)
    return [Call("ma_layernorm_s8", (ctx.ptr(node.inputs[0]), str(rows(shape)), f"&{params}",
                                     ctx.ptr(node.outputs[0], write=True)))]
