"""Integer ops: the quantized model's IR, with numpy references that the C kernels match bit for bit.

docs/integer-kernels.md is the contract; each function below is its row of the table, on int64 numpy arrays
built from the `qmath` primitives, returning int8. `requant(acc, M, s)` is `qmath.requantize` (a doubling high
multiply by M in [2^30, 2^31), then a rounding shift, ties away from zero); `sat8` clamps to [-128, 127].

QLinear: acc[n] = bias[n] + sum_k x[k] w[k, n] on int32 (the quantizer folds -x_zp * sum_k w[k, n] and the
    rounded float bias into `bias`, so the inner loop is a plain dot product), then one requantization per output
    channel. int4 weights (bits=4) are the values -8..7 held in an int8 array; the C kernel packs two per byte.

QAttention: per head and query row i, an online softmax over the keys j that `nn.attention_allowed` permits
    (window, causality, global tokens) and the optional constant 0/1 `mask` [S, S] allows, visited in ascending
    order, one key at a time; no score is kept beyond the one in hand:
    1. s_j = (q_i - q_zp) . (k_j - k_zp), the exact integer logit;
    2. the running maximum m: when s_j > m, the running sum and the head_dim int64 accumulators are rescaled by
       f = exp_table[t(s_j - m)] / 2^15 (rounded), and m = s_j;
    3. e_j = exp_table[t(m - s_j)] with t(g) = min(255, requant(g)) the logit gap in steps of Delta (1/16 by
       default), so exp_table[t] = round(2^15 exp(-Delta t)) is a table lookup instead of an exponential;
       sum += e_j and acc += e_j (v_j - v_zp);
    4. at the end of the row ONE reciprocal: with sh = max(0, bitlen(sum) - 16), inv = floor(2^31 / (sum >> sh))
       and o = round((acc >> sh) inv / 2^23) = 256 acc / sum (the output in 1/256 units of the probabilities),
       out = requant(o) + out_zp with the 1/256 folded into the output multiplier.
    Because keys are taken one at a time in ascending order, the result does not depend on how a kernel tiles
    queries or keys: a dense row that skips masked keys and a sparse row that never visits them are bit-identical.
    sum >= 2^15 (the maximum's own entry) and sum <= S 2^15, so sum >> sh is in [2^15, 2^16) and every product
    fits int64. The gap is clamped so that requant's left shift cannot leave int32: any clamped gap already maps
    to t = 255, so this only makes the op total (the contract's min(255, .) of the exact value).

QLayerNorm: per row of C values, the mean and variance in integers: S = sum x, d_i = C x_i - S (C times the
    centred value, so no division), V = sum d_i^2 = C (C sum x^2 - S^2), sigma = isqrt(V / C + eps) (= C times the
    standard deviation in input steps; eps is C^2 epsilon / s_x^2), inv = floor(2^30 / sigma) (one reciprocal
    per row), n_i = round(d_i inv / 2^15) = (x_i - mean) / std in Q15, and a per-channel requantization folds
    gamma_i / s_y; beta_i / s_y is the int32 bias. The input zero point cancels in d_i.

QTable: a 256-entry lookup (GELU and other pointwise nonlinearities, precomputed by the quantizer).
QAdd: TensorFlow Lite's int8 add: both operands rescaled to a common 2^-20-finer scale, added, requantized.
QRequant: a change of (scale, zero point).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.nn import attention_allowed, linear_macs, node_allowed
from mcu_attn.ir.ops.registry import op
from mcu_attn.reference.qmath import INT32_MAX, isqrt64, requantize, rshift_round, saturate


def _i64(x) -> np.ndarray:
    return np.asarray(x).astype(np.int64)


def _sat8(x: np.ndarray) -> np.ndarray:
    return saturate(x, 8).astype(np.int8)


def _per_channel(values, count: int, name: str) -> np.ndarray:
    array = _i64(values).reshape(-1)
    if array.size != count:
        raise ValueError(f"{name} needs {count} values, got {array.size}")
    return array


@op("QLinear", const_inputs=(1, 2), macs=linear_macs, onnx=())
def qlinear(x, w, bias, *, multiplier=(), shift=(), y_zp=0, bits=8):
    """y = sat8(requant(bias + x @ w, multiplier[n], shift[n]) + y_zp); w [K, N] int8 (int4 values if bits=4)."""
    if bits not in (4, 8):
        raise ValueError(f"QLinear bits must be 4 or 8, not {bits}")
    w64 = _i64(w)
    low, high = (-8, 7) if bits == 4 else (-128, 127)
    if w64.size and (w64.min() < low or w64.max() > high):
        raise ValueError(f"QLinear weights exceed the int{bits} range")
    n = w64.shape[1]
    acc = np.matmul(_i64(x), w64) + _per_channel(bias, n, "bias")
    y = requantize(acc, _per_channel(multiplier, n, "multiplier"), _per_channel(shift, n, "shift"))
    return _sat8(y + y_zp)


def _qattention_macs(node: Node, graph: Graph) -> int:
    allowed = node_allowed(graph, node)
    if len(node.inputs) > 3 and node.inputs[3]:
        allowed = allowed & (graph.const(node.inputs[3]) != 0)
    return 2 * int(allowed.sum()) * int(node.attr("heads", 1)) * int(node.attr("head_dim", 1))


def _exp_table(table) -> np.ndarray:
    array = _i64(table).reshape(-1)
    if array.size != 256 or array.min() < 0 or array.max() > 1 << 15:
        raise ValueError("exp_table needs 256 values in [0, 2^15] (Q15)")
    if array[0] != 1 << 15:
        raise ValueError("exp_table[0] (a zero logit gap) must be 2^15, exp(0) in Q15")
    return array


def _exp_index(gap, multiplier: int, shift: int) -> np.ndarray:
    """t(gap) = min(255, requant(gap)) of non-negative logit gaps, clamped so requant's left shift stays in int32."""
    gap = np.minimum(_i64(gap), INT32_MAX >> max(int(shift), 0))
    return np.minimum(255, requantize(gap, multiplier, shift))


def _key_mask(mask, seq: int) -> np.ndarray:
    if mask is None:
        return np.ones((seq, seq), bool)
    array = np.asarray(mask)
    if array.shape != (seq, seq) or not np.isin(array, (0, 1)).all():
        raise ValueError(f"QAttention mask must be 0/1 of shape [{seq}, {seq}], got {array.shape}")
    return array.astype(bool)


@op("QAttention", macs=_qattention_macs, onnx=(), const_inputs=(3,))
def qattention(q, k, v, mask=None, *, heads=1, head_dim=1, window=0, causal=0, global_tokens=0, q_zp=0, k_zp=0,
               v_zp=0, out_zp=0, score_multiplier=0, score_shift=0, exp_table=(1 << 15,) * 256, out_multiplier=0,
               out_shift=0):
    """Integer online-softmax attention over q, k, v int8 [..., S, heads*head_dim] (see the module docstring)."""
    if score_multiplier < 0:
        raise ValueError("QAttention score_multiplier must be non-negative")
    table = _exp_table(exp_table)
    lead, seq = q.shape[:-2], q.shape[-2]
    allowed = attention_allowed(seq, window, global_tokens, causal) & _key_mask(mask, seq)
    if not allowed.any(axis=-1).all():
        raise ValueError("QAttention: every query needs at least one key its mask allows")

    def split(t, zp):  # [..., S, H*D] -> [..., H, S, D], zero point removed
        return (_i64(t) - zp).reshape(*lead, seq, heads, head_dim).swapaxes(-2, -3)

    qh, kh, vh = split(q, q_zp), split(k, k_zp), split(v, v_zp)
    logits = np.matmul(qh, kh.swapaxes(-1, -2))                                # [..., H, S(query), S(key)]
    top = np.full(logits.shape[:-1], np.iinfo(np.int32).min, np.int64)         # running maximum per query
    total = np.zeros_like(top)                                                 # running sum of table entries
    acc = np.zeros(qh.shape, np.int64)                                         # [..., H, S, D]
    for j in range(seq):                                                       # keys in ascending order
        visible = allowed[:, j]
        s = logits[..., j]
        rise = visible & (s > top)
        f = table[_exp_index(np.where(rise, s - top, 0), score_multiplier, score_shift)]
        total = np.where(rise, rshift_round(total * f, 15), total)
        acc = np.where(rise[..., None], rshift_round(acc * f[..., None], 15), acc)
        top = np.where(rise, s, top)
        e = np.where(visible, table[_exp_index(np.where(visible, top - s, 0), score_multiplier, score_shift)], 0)
        total = total + e
        acc = acc + e[..., None] * vh[..., j:j + 1, :]
    shift = np.zeros_like(total)
    while np.any((total >> shift) >= 1 << 16):
        shift += (total >> shift) >= 1 << 16
    inv = (np.int64(1) << 31) // (total >> shift)
    o = rshift_round((acc >> shift[..., None]) * inv[..., None], 23)
    out = requantize(o, out_multiplier, out_shift)
    return _sat8(out + out_zp).swapaxes(-2, -3).reshape(q.shape)


@op("QLayerNorm", const_inputs=(1,), onnx=())
def qlayernorm(x, bias, *, multiplier=(), shift=(), eps=0, out_zp=0):
    """Integer LayerNorm over the last axis (see the module docstring); bias int32 [C] is beta / s_y."""
    if eps < 0:
        raise ValueError("QLayerNorm eps must be non-negative")
    channels = x.shape[-1]
    x64 = _i64(x)
    total = np.sum(x64, axis=-1, keepdims=True)
    d = channels * x64 - total
    variance = np.sum(d * d, axis=-1, keepdims=True) // channels + int(eps)
    sigma = np.maximum(1, isqrt64(variance))
    inv = (np.int64(1) << 30) // sigma
    n = rshift_round(d * inv, 15)
    y = requantize(n, _per_channel(multiplier, channels, "multiplier"), _per_channel(shift, channels, "shift"))
    return _sat8(y + _per_channel(bias, channels, "bias") + out_zp)


@op("QTable", onnx=())
def qtable(x, *, table=tuple(range(-128, 128))):
    """y = table[x + 128]: any pointwise function of an int8 value, precomputed."""
    lut = _i64(table).reshape(-1)
    if lut.size != 256 or lut.min() < -128 or lut.max() > 127:
        raise ValueError("QTable table needs 256 values in the int8 range")
    return lut[_i64(x) + 128].astype(np.int8)


@op("QAdd", onnx=())
def qadd(a, b, *, a_zp=0, b_zp=0, a_multiplier=0, a_shift=0, b_multiplier=0, b_shift=0, out_multiplier=0,
         out_shift=0, out_zp=0):
    """TFLite's int8 add; b has a's shape or repeats over a's leading axes (b [C] or [1,S,C] vs a [1,S,C])."""
    trailing = tuple(b.shape[next((i for i, d in enumerate(b.shape) if d != 1), b.ndim):])
    if b.ndim > a.ndim or (trailing and tuple(a.shape[a.ndim - len(trailing):]) != trailing):
        raise ValueError(f"QAdd cannot repeat b {b.shape} over a {a.shape}")
    a1 = requantize((_i64(a) - a_zp) << 20, a_multiplier, a_shift)
    b1 = requantize((_i64(b) - b_zp) << 20, b_multiplier, b_shift)
    y = requantize(a1 + b1, out_multiplier, out_shift)
    return np.broadcast_to(_sat8(y + out_zp), a.shape).copy()


@op("QRequant", onnx=())
def qrequant(x, *, in_zp=0, multiplier=0, shift=0, out_zp=0):
    """y = sat8(requant(x - in_zp, multiplier, shift) + out_zp): a change of scale and zero point."""
    return _sat8(requantize(_i64(x) - in_zp, multiplier, shift) + out_zp)
