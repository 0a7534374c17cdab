"""LayerNorm over the last axis: ONNX `LayerNormalization` and its integer form `QLayerNorm`.

QLayerNorm (docs/integer-kernels.md): per row of C values, one pass of integer sums, S = sum x and
V = C sum x^2 - S^2 (= C^2 times the variance in input steps), sigma = max(1, isqrt(V + eps)) (= C times the
standard deviation; eps is C^2 epsilon / s_x^2) and one reciprocal R = floor(2^P / sigma). Each element is then
t_i = (C x_i - S) R (= (x_i - mean) / std in units of 2^-P; the input zero point cancels) and one multiply and one
shift: y_i = sat8((t_i G_i + B_i) >> s), where G_i holds gamma_i / (s_y 2^P) and the int64 B_i holds beta_i / s_y,
the output zero point and the rounding, all scaled by 2^s. P = 30 - ceil(log2(C - 1) / 2) keeps t inside int32:
|C x_i - S| < (sigma + 1) sqrt(C - 1) (Samuelson's bound), so |t| < 2 sqrt(C - 1) 2^P <= 2^31.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Node
from mcu_attn.ir.ops.lowering import Call, emits, label, per_channel, require, rows
from mcu_attn.ir.ops.registry import op, quantizes
from mcu_attn.reference.qmath import as_int64, channel_values, isqrt64, saturate_int8, sum_requant_params


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
def qlayernorm(x, bias, *, multiplier=(), recip_shift=30, right_shift=32, eps=0):
    """Integer LayerNorm over the last axis (see the module docstring); bias int64 [C] is B_i."""
    if eps < 0:
        raise ValueError("QLayerNorm eps must be non-negative")
    channels = x.shape[-1]
    x64 = as_int64(x)
    total = np.sum(x64, axis=-1, keepdims=True)
    variance = channels * np.sum(x64 * x64, axis=-1, keepdims=True) - total * total
    sigma = np.maximum(1, isqrt64(variance + int(eps)))
    t = (channels * x64 - total) * ((np.int64(1) << np.int64(recip_shift)) // sigma)
    if np.any(np.abs(t) >= 2 ** 31):
        raise OverflowError("QLayerNorm: the normalised value leaves int32 (recip_shift too large for C)")
    y = (t * channel_values(multiplier, channels, "multiplier") + channel_values(bias, channels, "bias")) >> np.int64(
        right_shift)
    return saturate_int8(y)


def recip_shift(channels: int) -> int:
    """P of the module docstring: 30 - ceil(log2(C - 1) / 2), i.e. 2^(30 - P) >= sqrt(C - 1)."""
    half = 0
    while 4 ** half < channels - 1:
        half += 1
    return 30 - half


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
    attrs, bias = layernorm_params(gamma / s_y, beta / s_y, y_zp)
    if max(abs(b) for b in bias) >= 2 ** 62:
        raise UserError(f"node '{node.name}': a LayerNorm bias is too large for its output scale")
    bias_name = cv.dst.add_const(f"{node.name}_b", np.asarray(bias, np.int64))
    eps = int(round(channels * channels * float(node.attr("epsilon", 1e-5)) / (s_x * s_x)))
    cv.emit("QLayerNorm", [x, bias_name], out, {**attrs, "eps": eps}, node.name)


def layernorm_params(gamma, beta, y_zp: int) -> tuple[dict, list[int]]:
    """QLayerNorm's multipliers and shifts, and its int64 bias B_i, for gamma and beta in units of the output scale:
    G_i ~ gamma_i 2^(s - P) (qmath.sum_requant_params: |G| < 2^30, so |t G| < 2^61), B_i = round(beta_i 2^s) +
    y_zp 2^s + 2^(s-1)."""
    p = recip_shift(len(gamma))
    shift, ((_, multipliers),) = sum_requant_params([([float(g) * 2.0 ** -p for g in gamma], 31)])
    bias = [int(round(float(b) * 2.0 ** shift)) + (y_zp << shift) + (1 << (shift - 1)) for b in beta]
    return {"multiplier": tuple(multipliers), "recip_shift": p, "right_shift": shift}, bias


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
    fields = [("c", channels), ("recip_shift", int(node.attr("recip_shift", 30))),
              ("right_shift", int(node.attr("right_shift", 32))), ("eps", ("int64_t", node.attr("eps", 0))),
              ("mult", ctx.table(f"{node.name}_mult", per_channel(node.attr("multiplier"), channels), "int32_t",
                                 hot=True)),
              ("bias", ctx.table(f"{node.name}_bias", per_channel(graph.const(node.inputs[1]), channels), "int64_t",
                                 hot=True))]
    params = ctx.struct("ma_layernorm_s8_params", node, fields)
    return [Call("ma_layernorm_s8", (ctx.ptr(node.inputs[0]), str(rows(shape)), f"&{params}",
                                     ctx.ptr(node.outputs[0], write=True)))]
