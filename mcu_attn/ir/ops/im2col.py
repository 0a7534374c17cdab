"""`QIm2Col`: the receptive field of every output position of a convolution as one row of int8 taps (im2col), so
that an integer convolution runs as `QLinear` over those rows, on the fast matrix kernels of each variant.

QIm2Col(x [1, C, H, W] or [1, C, L]) -> [1, P, K], P = out_h * out_w output positions, K = C * kh * kw taps in the
order of a weight row (input channel, ky, kx); a tap outside the image reads x_zp (the real value 0). With
w [O, K] and QConv's bias and requantization, QLinear(QIm2Col(x), wᵀ) is QConv(x) transposed to [1, P, O], bit
for bit: the same int32 sum and the same requantization of every output (conv.py's quantize rule makes the
rewrite, for one group, when the rows cost at most `EXPANSION` times the input's bytes).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Node
from mcu_attn.ir.ops.conv import EXPANSION, GEOMETRY_FIELDS, _taps
from mcu_attn.ir.ops.lowering import Call, emits, require
from mcu_attn.ir.ops.registry import op

__all__ = ["EXPANSION", "qim2col"]


@op("QIm2Col", kind="integer", onnx=())
def qim2col(x, *, geometry=(), x_zp=0):
    """[1, P, K] rows of taps of x (module docstring); `geometry` is the tuple of `ma_conv_geometry` fields."""
    g = dict(zip(GEOMETRY_FIELDS, geometry))
    if len(g) != len(GEOMETRY_FIELDS) or g["groups"] != 1 or x.shape[0] != 1:
        raise ValueError("QIm2Col takes a full geometry of one group and a batch of 1")
    taps = _taps(np.asarray(x).reshape(g["in_c"], g["in_h"], g["in_w"]), g, np.int8(x_zp).astype(x.dtype))
    return np.ascontiguousarray(taps[0].T)[None]


@emits("QIm2Col")
def _emit_qim2col(ctx, node: Node) -> list[Call]:
    require(node, ctx.graph, "int8")
    g = dict(zip(GEOMETRY_FIELDS, node.attr("geometry")))
    geometry = ctx.struct("ma_conv_geometry", node, [(f, g[f]) for f in GEOMETRY_FIELDS])
    return [Call("ma_im2col_s8", (ctx.ptr(node.inputs[0]), f"&{geometry}", str(int(node.attr("x_zp", 0))),
                                  ctx.ptr(node.outputs[0], write=True)))]
