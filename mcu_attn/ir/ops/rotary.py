"""Rotary position embeddings (RoPE, Llama's "rotate half" form) on projected q or k: `Rotary` and `QRotary`.

x is [..., S, heads*head_dim]; per head, with half = head_dim/2 and partner(d) = d + half for d < half, else
d - half: y[s, d] = x[s, d] cos[s, d] + x[s, partner(d)] sin'[s, d], where sin' = -sin on the first half and
+sin on the second (rotate_half(x) = concat(-x2, x1)). cos and sin [S, head_dim] are constants: the positions
are fixed by the static sequence, so the exporter's cos/sin computation folds. The frontend recognises the
Mul/Slice/Neg/Concat/Add spelling on the head-split q and k by what it computes and moves it before the head
split (frontend/rotary_pattern.py), where it is one op and the attention pattern sees the projection through it.

QRotary: cos and sin' are stored in Q14 (int16, |value| <= 2^14), acc = (x[d] - x_zp) cos_q[s, d] +
(x[partner] - x_zp) sin_q[s, d] in int32 (|acc| < 2^23), y = sat8(requant(acc, M, s) + y_zp) with
M, s = quantize_multiplier(s_x / (s_y 2^14)).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Node
from mcu_attn.ir.ops.lowering import Call, emits, require, rows
from mcu_attn.ir.ops.registry import op, quantizes
from mcu_attn.reference.qmath import as_int64, quantize_multiplier, requantize, saturate_int8

Q14 = 1 << 14


def signed_sin(sin: np.ndarray) -> np.ndarray:
    """sin' [S, D]: -sin on the first half of each head, +sin on the second (rotate_half's signs folded in)."""
    half = sin.shape[-1] // 2
    return np.concatenate([-sin[..., :half], sin[..., half:]], axis=-1)


def _by_head(x: np.ndarray, heads: int) -> np.ndarray:
    return x.reshape(*x.shape[:-1], heads, x.shape[-1] // heads)


def _partner(x: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    return np.concatenate([x[..., half:], x[..., :half]], axis=-1)


@op("Rotary", kind="elementwise", const_inputs=(1, 2), onnx=())
def rotary(x, cos, sin, *, heads=1):
    """y = x cos + rotate_half(x) sin per head (see the module docstring); cos, sin [S, head_dim]."""
    xh = _by_head(x, heads)
    c, s = cos[..., :, None, :], signed_sin(sin)[..., :, None, :]
    return (xh * c + _partner(xh) * s).reshape(x.shape).astype(x.dtype)


@op("QRotary", kind="integer", const_inputs=(1, 2), onnx=())
def qrotary(x, cos_q, sin_q, *, heads=1, x_zp=0, multiplier=0, shift=0, y_zp=0):
    """Integer RoPE: cos_q and sin_q are cos and sin' in Q14 (see the module docstring)."""
    xh = _by_head(as_int64(x) - x_zp, heads)
    acc = xh * as_int64(cos_q)[..., :, None, :] + _partner(xh) * as_int64(sin_q)[..., :, None, :]
    return saturate_int8(requantize(acc, multiplier, shift) + y_zp).reshape(x.shape)


@quantizes("Rotary")
def _quantize_rotary(cv, node: Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    s_x, x_zp = cv.param(x)
    s_y, y_zp = cv.param(out)
    cos = np.rint(cv.src.const(node.inputs[1]).astype(np.float64) * Q14).astype(np.int16)
    sin = np.rint(signed_sin(cv.src.const(node.inputs[2]).astype(np.float64)) * Q14).astype(np.int16)
    multiplier, shift = quantize_multiplier(s_x / (s_y * Q14))
    cv.emit("QRotary", [x, cv.dst.add_const(f"{node.name}_cos", cos), cv.dst.add_const(f"{node.name}_sin", sin)],
            out, {"heads": int(node.attr("heads", 1)), "x_zp": x_zp, "multiplier": multiplier, "shift": shift,
                  "y_zp": y_zp}, node.name)


def _geometry(ctx, node: Node) -> tuple[str, str, str]:
    shape = ctx.graph.shape(node.inputs[0])
    heads = int(node.attr("heads", 1))
    return str(rows(shape)), str(heads), str(shape[-1] // heads)


@emits("Rotary")
def _emit_rotary_f32(ctx, node: Node) -> list[Call]:
    require(node, ctx.graph, "float32")
    cos = ctx.ptr(node.inputs[1])
    sin = ctx.weight(node.inputs[2], "signed", lambda: np.ascontiguousarray(
        signed_sin(ctx.graph.const(node.inputs[2])).astype(np.float32)), "float")
    return [Call("ma_rotary_f32", (ctx.ptr(node.inputs[0]), *_geometry(ctx, node), cos, sin,
                                   ctx.ptr(node.outputs[0], write=True)))]


@emits("QRotary")
def _emit_qrotary(ctx, node: Node) -> list[Call]:
    require(node, ctx.graph, "int8")
    attrs = [str(int(node.attr(key, 0))) for key in ("x_zp", "multiplier", "shift", "y_zp")]
    return [Call("ma_rotary_s8", (ctx.ptr(node.inputs[0]), *_geometry(ctx, node), ctx.ptr(node.inputs[1]),
                                  ctx.ptr(node.inputs[2]), *attrs, ctx.ptr(node.outputs[0], write=True)))]
