"""Matrix products: ONNX `MatMul` and `Gemm`, this IR's `Linear` (a product with a constant weight, what the
frontend canonicalises them into) and its integer form `QLinear`.

QLinear (docs/integer-kernels.md): acc[n] = bias[n] + sum_k x[k] w[k, n] on int32 (the quantizer folds
-x_zp * sum_k w[k, n] and the rounded float bias into `bias`, so the inner loop is a plain dot product), then one
requantization per output channel: y = sat8(requant(acc, M[n], s[n]) + y_zp). int4 weights (bits=4) are the
values -8..7 held in an int8 array; the C kernel packs two per byte.

Quantization: weights symmetric per output channel (int8, or int4 where `--bits 4` put the layer), or the
pre-quantized model's own scales and bits; M[n], s[n] = quantize_multiplier(s_x s_w[n] / s_y).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.codegen.cformat import pack_int4
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.lowering import Call, emits, per_channel, require, rows
from mcu_attn.ir.ops.registry import op, quantizes
from mcu_attn.ir.types import QuantParams, TensorType
from mcu_attn.reference.qmath import (as_int64, channel_values, quantize_multiplier, requantize, saturate_int8,
                                      symmetric_scales)


def _matmul_macs(node: Node, graph: Graph) -> int:
    a, b = graph.shape(node.inputs[0]), graph.shape(node.inputs[1])
    out = graph.shape(node.outputs[0])
    k = a[-1] if len(a) else 1
    return int(np.prod(out, dtype=np.int64)) * int(k) if b else 0


@op("MatMul", kind="matmul", params=(0, 1), macs=_matmul_macs)
def matmul(a, b):
    return np.matmul(a, b)


def gemm_macs(node: Node, graph: Graph) -> int:
    """Output elements times the reduction length K (A's last axis, or its first when transposed)."""
    a = graph.shape(node.inputs[0])
    k = a[0] if node.attr("transA", 0) else a[-1]
    return int(np.prod(graph.shape(node.outputs[0]), dtype=np.int64)) * int(k)


@op("Gemm", kind="matmul", params=(0, 1, 2), macs=gemm_macs)
def gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    a = a.T if transA else a
    b = b.T if transB else b
    y = np.asarray(alpha, a.dtype) * (a @ b)
    if c is not None:
        y = y + np.asarray(beta, a.dtype) * c
    return y.astype(a.dtype)


def linear_macs(node: Node, graph: Graph) -> int:
    k, n = graph.shape(node.inputs[1])
    return rows(graph.shape(node.inputs[0])) * int(k) * int(n)


@op("Linear", kind="matmul", const_inputs=(1, 2), params=(1, 2), macs=linear_macs, onnx=())
def linear(x, weight, bias=None):
    """y = x @ weight + bias over the last axis; weight [in, out] is a constant."""
    y = np.matmul(x, weight)
    return (y + bias).astype(x.dtype) if bias is not None else y


@op("QLinear", kind="integer", const_inputs=(1, 2), macs=linear_macs, onnx=())
def qlinear(x, w, bias, *, multiplier=(), shift=(), y_zp=0, bits=8):
    """y = sat8(requant(bias + x @ w, multiplier[n], shift[n]) + y_zp); w [K, N] int8 (int4 values if bits=4)."""
    n = w.shape[1]
    y = requantize(linear_accumulators(x, w, bias, bits), channel_values(multiplier, n, "multiplier"),
                   channel_values(shift, n, "shift"))
    return saturate_int8(y + y_zp)


def linear_accumulators(x, w, bias, bits: int) -> np.ndarray:
    """acc[..., n] = bias[n] + sum_k x[..., k] w[k, n] on int64, after checking the weights' bit width."""
    if bits not in (4, 8):
        raise ValueError(f"QLinear bits must be 4 or 8, not {bits}")
    w64 = as_int64(w)
    low, high = (-8, 7) if bits == 4 else (-128, 127)
    if w64.size and (w64.min() < low or w64.max() > high):
        raise ValueError(f"QLinear weights exceed the int{bits} range")
    return np.matmul(as_int64(x), w64) + channel_values(bias, w64.shape[1], "bias")


def weight_scales(cv, node: Node, weight: np.ndarray, axis: int, default_bits: int) -> tuple[int, np.ndarray]:
    """(bits, symmetric scales per output channel along `axis`) of a weight: a pre-quantized model's own
    (its annotation, zero points 0: the integer weights come back exactly), else max |w| / qmax at the bits
    `--bits` and the sensitivity ranking gave the layer."""
    given = cv.src.type(node.inputs[1]).quant
    if given is not None and all(z == 0 for z in given.zero_point):
        cv.report.prequantized.append(node.name)
        return given.bits, np.broadcast_to(np.asarray(given.scale, np.float64), (weight.shape[axis],)).copy()
    bits = cv.layer_bits.get(node.name, default_bits)
    return bits, symmetric_scales(weight, bits, axis=axis)


@quantizes("Linear")
def _quantize_linear(cv, node: Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    weight = cv.src.const(node.inputs[1]).astype(np.float64)
    bias = cv.src.const(node.inputs[2]).astype(np.float64) if len(node.inputs) > 2 else np.zeros(weight.shape[1])
    s_x, x_zp = cv.param(x)
    s_y, y_zp = cv.param(out)
    bits, scales = weight_scales(cv, node, weight, 1, 8)
    qmax = (1 << (bits - 1)) - 1
    wq = np.clip(np.rint(weight / scales), -qmax, qmax).astype(np.int64)
    bias_q = np.rint(bias / (s_x * scales)).astype(np.int64) - x_zp * wq.sum(axis=0)
    if np.any(np.abs(bias_q) >= 2 ** 31):
        raise UserError(f"node '{node.name}': bias does not fit int32 at these scales")
    multipliers = [quantize_multiplier(s_x * s / s_y) for s in scales]
    w_type = TensorType("int4" if bits == 4 else "int8", wq.shape,
                        QuantParams(tuple(float(s) for s in scales), (0,) * len(scales), 1, bits))
    w_name = cv.dst.add_const(f"{node.name}_w", wq.astype(np.int8), w_type)
    b_name = cv.dst.add_const(f"{node.name}_b", bias_q.astype(np.int32))
    cv.report.layer_bits[node.name] = bits
    cv.emit("QLinear", [x, w_name, b_name], out,
            {"multiplier": tuple(m for m, _ in multipliers), "shift": tuple(s for _, s in multipliers),
             "y_zp": y_zp, "bits": bits}, node.name)


@emits("Linear")
def _emit_linear_f32(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "float32")
    weight = graph.const(node.inputs[1])
    k, n = weight.shape
    w = ctx.weight(node.inputs[1], "nk", lambda: np.ascontiguousarray(weight.T.astype(np.float32)), "float")
    bias = ctx.ptr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else "NULL"
    return [Call("ma_linear_f32", (ctx.ptr(node.inputs[0]), str(rows(graph.shape(node.inputs[0]))), str(k), str(n),
                                   w, bias, ctx.ptr(node.outputs[0], write=True)))]


def linear_call(ctx, node: Node, name: str) -> tuple[str, list[str]]:
    """The kernel `ma_<name>_s8` or `_s4` (by the node's weight bits) and its leading arguments, shared by QLinear
    and the fused linears: x, rows, k, n, the packed weights [n][k], bias and the per-channel multipliers."""
    graph = ctx.graph
    require(node, graph, "int8")
    weight = graph.const(node.inputs[1])
    k, n = weight.shape
    bits = int(node.attr("bits", 8))
    if bits == 4:
        w = ctx.weight(node.inputs[1], "nk_s4", lambda: pack_int4(weight.T), "uint8_t")
    else:
        w = ctx.weight(node.inputs[1], "nk", lambda: np.ascontiguousarray(weight.T.astype(np.int8)), "int8_t")
    mult = ctx.table(f"{node.name}_mult", per_channel(node.attr("multiplier"), n), "int32_t")
    return (f"ma_{name}_s4" if bits == 4 else f"ma_{name}_s8",
            [ctx.ptr(node.inputs[0]), str(rows(graph.shape(node.inputs[0]))), str(k), str(n), w,
             ctx.ptr(node.inputs[2]), mult])


@emits("QLinear")
def _emit_qlinear(ctx, node: Node) -> list[Call]:
    fn, args = linear_call(ctx, node, "linear")
    shift = ctx.table(f"{node.name}_shift", per_channel(node.attr("shift"), int(args[3])), "int32_t")
    return [Call(fn, (*args, shift, str(int(node.attr("y_zp", 0))), ctx.ptr(node.outputs[0], write=True)))]
