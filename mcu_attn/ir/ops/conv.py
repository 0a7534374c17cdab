"""Convolution: ONNX `Conv` (1-D and 2-D, NCHW: stride, padding, dilation, groups incl. depthwise) and its
integer form `QConv`.

Both are computed as one dot product per output element over the taps of its receptive field: tap (c, ky, kx) of
output (o, oy, ox) reads x[c, oy*sh - pad_top + ky*dh, ox*sw - pad_left + kx*dw], or padding outside the image.
A 1-D convolution is the 2-D one with a height of 1. The weight [O, C/groups, kh, kw] is, flattened, one row of
K = C/groups*kh*kw taps per output channel (the C kernels read it so), and output channel o reads the input
channels of its group, g = o // (O/groups).

QConv: acc = bias[o] + sum over taps of x_tap w[o, tap] in int32, with padding read as x_zp (the real value 0),
then y = sat8(requant(acc, M[o], s[o]) + y_zp), exactly QLinear's arithmetic (linear.py): the quantizer folds
-x_zp * sum(w[o]) into bias[o], so a padded tap adds x_zp w - x_zp w = 0. int4 weights (bits=4) are the values
-8..7; the C kernel packs two per byte along each row. A convolution whose kernel equals its stride and has no
padding (the patch embedding of a vision transformer) is rewritten into the Linear it is before quantization
(passes/patchify.py); this op is every other convolution (the Whisper encoder's stem, depthwise convolutions).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mcu_attn.codegen.cformat import pack_int4
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.linear import weight_scales
from mcu_attn.ir.ops.lowering import Call, emits, label, per_channel, require
from mcu_attn.ir.ops.registry import op, quantizes
from mcu_attn.ir.types import QuantParams, TensorType
from mcu_attn.reference.qmath import as_int64, channel_values, quantize_multiplier, requantize, saturate_int8


def geometry(x_shape, w_shape, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
             strides=None) -> dict:
    """The 2-D geometry (a 1-D convolution has height 1) as the C kernels' `ma_conv_geometry` fields."""
    spatial = len(x_shape) - 2
    if spatial not in (1, 2) or len(w_shape) != spatial + 2:
        raise ValueError(f"Conv supports 1-D and 2-D inputs, got x {list(x_shape)} and w {list(w_shape)}")
    kernel = tuple(int(k) for k in (kernel_shape or w_shape[2:]))
    strides = tuple(int(s) for s in (strides or (1,) * spatial))
    dilations = tuple(int(d) for d in (dilations or (1,) * spatial))
    size = tuple(int(d) for d in x_shape[2:])
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        total = [max(0, (-(-n // s) - 1) * s + d * (k - 1) + 1 - n) for n, s, d, k in zip(size, strides, dilations,
                                                                                           kernel)]
        low = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        pads = tuple(low) + tuple(t - b for t, b in zip(total, low))
    elif auto_pad == "VALID":
        pads = (0,) * (2 * spatial)
    elif auto_pad != "NOTSET":
        raise ValueError(f"Conv auto_pad={auto_pad!r} is not NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    pads = tuple(int(p) for p in (pads or (0,) * (2 * spatial)))
    channels, out_channels = int(x_shape[1]), int(w_shape[0])
    if group < 1 or channels % group or out_channels % group or int(w_shape[1]) * group != channels:
        raise ValueError(f"Conv with {group} groups cannot map {channels} to {out_channels} channels "
                         f"(weight {list(w_shape)})")
    out = [(n + pads[i] + pads[i + spatial] - d * (k - 1) - 1) // s + 1
           for i, (n, s, d, k) in enumerate(zip(size, strides, dilations, kernel))]
    if min(out) < 1:
        raise ValueError("Conv kernel is larger than the padded input")
    if spatial == 1:
        size, out, kernel, strides, dilations = (1,) + size, [1] + out, (1,) + kernel, (1,) + strides, (1,) + dilations
        pads = (0, pads[0], 0, pads[1])
    return {"in_c": channels, "in_h": size[0], "in_w": size[1], "out_c": out_channels, "out_h": out[0],
            "out_w": out[1], "k_h": kernel[0], "k_w": kernel[1], "stride_h": strides[0], "stride_w": strides[1],
            "pad_top": pads[0], "pad_left": pads[1], "dil_h": dilations[0], "dil_w": dilations[1], "groups": group}


def _taps(x: np.ndarray, g: dict, pad_value) -> np.ndarray:
    """x [C, H, W] -> [groups, C/groups * kh * kw, out_h * out_w]: every output's receptive field (im2col)."""
    height = max(g["pad_top"] + g["in_h"], (g["out_h"] - 1) * g["stride_h"] + (g["k_h"] - 1) * g["dil_h"] + 1)
    width = max(g["pad_left"] + g["in_w"], (g["out_w"] - 1) * g["stride_w"] + (g["k_w"] - 1) * g["dil_w"] + 1)
    padded = np.full((g["in_c"], height, width), pad_value, x.dtype)
    padded[:, g["pad_top"]:g["pad_top"] + g["in_h"], g["pad_left"]:g["pad_left"] + g["in_w"]] = x
    columns = np.empty((g["in_c"], g["k_h"], g["k_w"], g["out_h"], g["out_w"]), x.dtype)
    for ky in range(g["k_h"]):
        for kx in range(g["k_w"]):
            top, left = ky * g["dil_h"], kx * g["dil_w"]
            columns[:, ky, kx] = padded[:, top:top + g["out_h"] * g["stride_h"]:g["stride_h"],
                                        left:left + g["out_w"] * g["stride_w"]:g["stride_w"]]
    return columns.reshape(g["groups"], -1, g["out_h"] * g["out_w"])


def _convolve(x: np.ndarray, w: np.ndarray, g: dict, pad_value) -> np.ndarray:
    """[N, O, out_h * out_w] dot products of each output channel's weight row with its group's taps."""
    rows = w.reshape(g["groups"], g["out_c"] // g["groups"], -1)
    return np.stack([np.concatenate([rows[k] @ taps[k] for k in range(g["groups"])])
                     for taps in (_taps(sample.reshape(g["in_c"], g["in_h"], g["in_w"]), g, pad_value)
                                  for sample in x)])


def _conv_macs(node: Node, graph: Graph) -> int:
    w = graph.shape(node.inputs[1])
    return int(np.prod(graph.shape(node.outputs[0]), dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))


@op("Conv", kind="conv", params=(1, 2), macs=_conv_macs)
def conv(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """ONNX Conv over [N, C, L] or [N, C, H, W] inputs (see the module docstring); sums in float32."""
    g = geometry(x.shape, w.shape, auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
                 pads=pads, strides=strides)
    y = _convolve(x.astype(np.float32), w.astype(np.float32), g, 0.0)
    if b is not None:
        y = y + b.astype(np.float32)[None, :, None]
    return y.reshape((x.shape[0], g["out_c"]) + _out_spatial(x, g)).astype(x.dtype)


def _out_spatial(x: np.ndarray, g: dict) -> tuple[int, ...]:
    return (g["out_w"],) if x.ndim == 3 else (g["out_h"], g["out_w"])


@op("QConv", kind="integer", const_inputs=(1, 2), macs=_conv_macs, onnx=())
def qconv(x, w, bias, *, geometry=(), multiplier=(), shift=(), x_zp=0, y_zp=0, bits=8):
    """y = sat8(requant(bias + taps . w[o], multiplier[o], shift[o]) + y_zp), padding read as x_zp; `geometry`
    is the tuple of `ma_conv_geometry` fields (`GEOMETRY_FIELDS`); w [O, C/groups, kh, kw] int8 (int4 values if
    bits=4)."""
    g = dict(zip(GEOMETRY_FIELDS, geometry))
    if bits not in (4, 8) or len(g) != len(GEOMETRY_FIELDS):
        raise ValueError("QConv takes bits 4 or 8 and a full geometry")
    w64 = as_int64(w)
    low, high = (-8, 7) if bits == 4 else (-128, 127)
    if w64.size and (w64.min() < low or w64.max() > high):
        raise ValueError(f"QConv weights exceed the int{bits} range")
    n = g["out_c"]
    acc = _convolve(as_int64(x), w64, g, x_zp) + channel_values(bias, n, "bias")[None, :, None]
    y = requantize(acc, channel_values(multiplier, n, "multiplier")[None, :, None],
                   channel_values(shift, n, "shift")[None, :, None])
    return saturate_int8(y + y_zp).reshape((x.shape[0], n) + _out_spatial(x, g))


EXPANSION = 4  # QConv runs as im2col rows + QLinear when the rows take at most 4x the input's bytes (im2col.py)
GEOMETRY_FIELDS = ("in_c", "in_h", "in_w", "out_c", "out_h", "out_w", "k_h", "k_w", "stride_h", "stride_w",
                   "pad_top", "pad_left", "dil_h", "dil_w", "groups")


def node_geometry(graph: Graph, node: Node) -> dict:
    attrs = {k: node.attrs[k] for k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
             if k in node.attrs}
    return geometry(graph.shape(node.inputs[0]), graph.shape(node.inputs[1]), **attrs)


@quantizes("Conv")
def _quantize_conv(cv, node: Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    weight = cv.src.const(node.inputs[1]).astype(np.float64)
    channels = weight.shape[0]
    bias = (cv.src.const(node.inputs[2]).astype(np.float64) if len(node.inputs) > 2 and node.inputs[2]
            else np.zeros(channels))
    s_x, x_zp = cv.param(x)
    s_y, y_zp = cv.param(out)
    bits, scales = weight_scales(cv, node, weight, 0, cv.report.weight_bits)
    qmax = (1 << (bits - 1)) - 1
    wq = np.clip(np.rint(weight / scales.reshape(-1, *([1] * (weight.ndim - 1)))), -qmax, qmax).astype(np.int64)
    bias_q = np.rint(bias / (s_x * scales)).astype(np.int64) - x_zp * wq.reshape(channels, -1).sum(axis=1)
    if np.any(np.abs(bias_q) >= 2 ** 31):
        raise UserError(f"node '{node.name}': bias does not fit int32 at these scales")
    multipliers = [quantize_multiplier(s_x * s / s_y) for s in scales]
    w_type = TensorType("int4" if bits == 4 else "int8", wq.shape,
                        QuantParams(tuple(float(s) for s in scales), (0,) * channels, 0, bits))
    b_name = cv.dst.add_const(f"{node.name}_b", bias_q.astype(np.int32))
    cv.layer_bits[node.name] = bits
    g = node_geometry(cv.src, node)
    requant = {"multiplier": tuple(m for m, _ in multipliers), "shift": tuple(s for _, s in multipliers),
               "y_zp": y_zp, "bits": bits}
    taps, positions = wq[0].size, g["out_h"] * g["out_w"]
    if g["groups"] == 1 and taps * positions <= EXPANSION * g["in_c"] * g["in_h"] * g["in_w"]:
        _as_linear(cv, node, g, wq.reshape(channels, taps).T, w_type, b_name, requant, x_zp)
        return
    w_name = cv.dst.add_const(f"{node.name}_w", wq.astype(np.int8), w_type)
    cv.emit("QConv", [x, w_name, b_name], out,
            {"geometry": tuple(g[f] for f in GEOMETRY_FIELDS), "x_zp": x_zp, **requant}, node.name)


def _as_linear(cv, node: Node, g: dict, w_kn: np.ndarray, w_type: TensorType, b_name: str, requant: dict,
               x_zp: int) -> None:
    """QConv as QIm2Col -> QLinear -> [1, P, O] -> Transpose -> Reshape to the conv's output (im2col.py): the
    same integers, computed by the matrix kernels."""
    x, out = node.inputs[0], node.outputs[0]
    quant = cv.qtype(out).quant
    positions, channels = g["out_h"] * g["out_w"], g["out_c"]

    def value(hint: str, shape: tuple[int, ...], params) -> str:
        name = cv.dst.fresh(f"{out}_{hint}")
        cv.dst.types[name] = TensorType("int8", shape, params)
        return name

    rows = value("im2col", (1, positions, w_kn.shape[0]), cv.qtype(x).quant)
    cv.dst.append(Node("QIm2Col", [x], [rows], {"geometry": tuple(g[f] for f in GEOMETRY_FIELDS), "x_zp": x_zp},
                       f"{node.name}_im2col"))
    weight = cv.dst.add_const(f"{node.name}_w", np.ascontiguousarray(w_kn).astype(np.int8),
                              replace(w_type, shape=w_kn.shape, quant=replace(w_type.quant, axis=1)))
    product = value("rows", (1, positions, channels), quant)
    cv.dst.append(Node("QLinear", [rows, weight, b_name], [product], requant, node.name))
    columns = value("columns", (1, channels, positions), quant)
    cv.dst.append(Node("Transpose", [product], [columns], {"perm": (0, 2, 1)}, f"{node.name}_transpose"))
    shape = cv.dst.add_const("shape", np.array(cv.src.shape(out), np.int64))
    cv.dst.types[out] = cv.qtype(out)
    cv.dst.append(Node("Reshape", [columns, shape], [out], {}, f"{node.name}_reshape"))


def _geometry_struct(ctx, node: Node, g: dict) -> str:
    return ctx.struct("ma_conv_geometry", node, [(f, g[f]) for f in GEOMETRY_FIELDS])


def _single_sample(ctx, node: Node) -> None:
    if ctx.graph.shape(node.inputs[0])[0] != 1:
        raise UserError(f"{label(node)}: the C kernel takes a batch of 1")


@emits("Conv")
def _emit_conv_f32(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "float32")
    _single_sample(ctx, node)
    g = node_geometry(graph, node)
    weight = graph.const(node.inputs[1])
    rows = ctx.weight(node.inputs[1], "rows", lambda: np.ascontiguousarray(
        weight.reshape(weight.shape[0], -1).astype(np.float32)), "float")
    bias = ctx.ptr(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else "NULL"
    return [Call("ma_conv_f32", (ctx.ptr(node.inputs[0]), f"&{_geometry_struct(ctx, node, g)}", rows, bias,
                                 ctx.ptr(node.outputs[0], write=True)))]


@emits("QConv")
def _emit_qconv(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "int8")
    _single_sample(ctx, node)
    g = dict(zip(GEOMETRY_FIELDS, node.attr("geometry")))
    weight = graph.const(node.inputs[1]).reshape(g["out_c"], -1)
    bits = int(node.attr("bits", 8))
    if bits == 4:
        rows = ctx.weight(node.inputs[1], "rows_s4", lambda: pack_int4(weight), "uint8_t")
    else:
        rows = ctx.weight(node.inputs[1], "rows", lambda: np.ascontiguousarray(weight.astype(np.int8)), "int8_t")
    mult = ctx.table(f"{node.name}_mult", per_channel(node.attr("multiplier"), g["out_c"]), "int32_t")
    shift = ctx.table(f"{node.name}_shift", per_channel(node.attr("shift"), g["out_c"]), "int32_t")
    return [Call("ma_conv_s4" if bits == 4 else "ma_conv_s8",
                 (ctx.ptr(node.inputs[0]), f"&{_geometry_struct(ctx, node, g)}", rows, ctx.ptr(node.inputs[2]),
                  mult, shift, str(int(node.attr("x_zp", 0))), str(int(node.attr("y_zp", 0))),
                  ctx.ptr(node.outputs[0], write=True)))]
