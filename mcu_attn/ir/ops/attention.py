"""Multi-head attention: the fused float `Attention` op the frontend recognises, and its integer form.

QAttention (docs/integer-kernels.md): per head and query row i, an online softmax over the keys j that the
block's `pattern` (an `AttentionPattern`: window, causality, global tokens) and the optional constant 0/1 `mask` [S, S]
allows, visited in ascending order, one key at a time; no score is kept beyond the one in hand:
1. s_j = (q_i - q_zp) . (k_j - k_zp), the exact integer logit;
2. the running maximum m: when s_j > m, the running sum and the head_dim accumulators are rescaled by
   f = exp_table[t(s_j - m)] / 2^15 (rounded), and m = s_j;
3. e_j = exp_table[t(m - s_j)] with t(g) = min(255, requant(g)) the logit gap in steps of Delta (`SCORE_STEP`),
   so exp_table[t] = round(2^15 exp(-Delta t)) is a table lookup instead of an exponential;
   sum += e_j and acc += e_j v_j (the raw int8 v: its zero point is taken out once, at the end);
4. at the end of the row ONE reciprocal: with sh = max(0, bitlen(sum) - 16), inv = floor(2^31 / (sum >> sh))
   and o = round(((acc - v_zp sum) >> sh) inv / 2^23) = 256 (acc - v_zp sum) / sum (the output in 1/256 units
   of the probabilities), out = requant(o) + out_zp with the 1/256 folded into the output multiplier.
Because keys are taken one at a time in ascending order, the result does not depend on how a kernel tiles
queries or keys: a dense row that skips masked keys and a sparse row that never visits them are bit-identical.
sum >= 2^15 (the maximum's own entry) and sum <= S 2^15, so sum >> sh is in [2^15, 2^16); -128 sum <= acc <=
127 sum, so acc fits int32 while a row sees at most 512 keys (the ARM kernel's fast path), and every product fits
int64. The gap is clamped so that requant's left shift cannot leave int32: any clamped gap already maps to
t = 255, so this only makes the op total (the contract's min(255, .) of the exact value).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.lowering import Call, emits, label, require, rows
from mcu_attn.ir.ops.registry import op, quantizes, spec
from mcu_attn.ir.pattern import DENSE, AttentionPattern
from mcu_attn.reference.qmath import INT32_MAX, as_int64, quantize_multiplier, requantize, rshift_round, saturate_int8

MASKED = -1e4  # an additive mask value at or below this hides the key: exp() underflows to exactly 0 in float32
SCORE_STEP = 1.0 / 16.0  # logit gap per exp-table entry: t=255 is a gap of ~16, where exp(-16) ~ 1e-7


def shared_mask(mask: np.ndarray, seq_len: int) -> np.ndarray | None:
    """The [S, S] mask every head shares, from a constant mask broadcastable to [..., S, S]; None when it does
    not broadcast or differs between heads (the kernels take one mask for all heads)."""
    try:
        square = np.broadcast_to(mask, np.broadcast_shapes(np.shape(mask), (seq_len, seq_len)))
    except ValueError:
        return None
    square = square.reshape(-1, seq_len, seq_len)
    return None if (square != square[:1]).any() else square[0]


def node_pattern(node: Node) -> AttentionPattern:
    """The `AttentionPattern` of an attention node (dense when it has none)."""
    return node.attr("pattern", DENSE)


def node_allowed(graph: Graph, node: Node) -> np.ndarray:
    """bool[S, S_kv] of an attention node: its pattern over the sequence length of its q input, or every key when
    k has another length (keys projected along the sequence, `key_sets`)."""
    return key_sets(graph.shape(node.inputs[0])[-2], graph.shape(node.inputs[1])[-2], node_pattern(node))


def key_sets(seq: int, keys: int, pattern: AttentionPattern) -> np.ndarray:
    """bool[seq, keys]: `pattern.allowed` when the keys are the queries' own tokens; with another number of keys
    (Linformer's keys projected along the sequence, passes/linformer.py) no key is any token's, so there is no
    pattern and no causality to apply: every query sees every key."""
    if keys == seq:
        return pattern.allowed(seq)
    if not pattern.dense or pattern.causal:
        raise ValueError(f"attention over {keys} projected keys for {seq} queries cannot have a pattern or "
                         f"causality ({pattern.describe()})")
    return np.ones((seq, keys), bool)


def _attention_macs(node: Node, graph: Graph) -> int:
    return 2 * int(node_allowed(graph, node).sum()) * int(node.attrs["heads"]) * int(node.attrs["head_dim"])


@op("Attention", kind="attention", const_inputs=(3,), macs=_attention_macs, onnx=())
def attention(q, k, v, mask=None, *, heads=1, head_dim=1, scale=1.0, pattern=DENSE):
    """Multi-head scaled dot-product attention over projected q [..., S, heads*head_dim] and k, v
    [..., S_kv, heads*head_dim] (S_kv = S but for Linformer's projected keys, `key_sets`).

    out[s, h*D:(h+1)*D] = softmax_j(scale * q_h[s] . k_h[j] + mask[s, j]) v_h[j], over the keys j that
    `pattern` (an `AttentionPattern`) permits; `mask` is an optional constant additive mask broadcastable to
    [heads, S, S] for masks that are not a pattern.
    """
    lead, seq, keys = q.shape[:-2], q.shape[-2], k.shape[-2]
    qh = q.reshape(*lead, seq, heads, head_dim).swapaxes(-2, -3)
    kh = k.reshape(*lead, keys, heads, head_dim).swapaxes(-2, -3)
    vh = v.reshape(*lead, keys, heads, head_dim).swapaxes(-2, -3)
    scores = np.matmul(qh, kh.swapaxes(-1, -2)) * np.asarray(scale, q.dtype)
    if mask is not None:
        scores = scores + mask
    scores = np.where(key_sets(seq, keys, pattern), scores, -np.inf)
    probs = np.exp(scores - np.max(scores, axis=-1, keepdims=True))
    probs = probs / np.sum(probs, axis=-1, keepdims=True)
    out = np.matmul(probs.astype(q.dtype), vh)
    return out.swapaxes(-2, -3).reshape(q.shape).astype(q.dtype)


# ---- integer -----------------------------------------------------------------------------------------------------

def _qattention_macs(node: Node, graph: Graph) -> int:
    allowed = node_allowed(graph, node)
    if len(node.inputs) > 3 and node.inputs[3]:
        allowed = allowed & (graph.const(node.inputs[3]) != 0)
    return 2 * int(allowed.sum()) * int(node.attr("heads", 1)) * int(node.attr("head_dim", 1))


def _exp_table(table) -> np.ndarray:
    array = as_int64(table).reshape(-1)
    if array.size != 256 or array.min() < 0 or array.max() > 1 << 15:
        raise ValueError("exp_table needs 256 values in [0, 2^15] (Q15)")
    if array[0] != 1 << 15:
        raise ValueError("exp_table[0] (a zero logit gap) must be 2^15, exp(0) in Q15")
    return array


def _exp_index(gap, multiplier: int, shift: int) -> np.ndarray:
    """t(gap) = min(255, requant(gap)) of non-negative logit gaps, clamped so requant's left shift stays in int32."""
    gap = np.minimum(as_int64(gap), INT32_MAX >> max(int(shift), 0))
    return np.minimum(255, requantize(gap, multiplier, shift))


def _key_mask(mask, seq: int) -> np.ndarray:
    if mask is None:
        return np.ones((seq, seq), bool)
    array = np.asarray(mask)
    if array.shape != (seq, seq) or not np.isin(array, (0, 1)).all():
        raise ValueError(f"QAttention mask must be 0/1 of shape [{seq}, {seq}], got {array.shape}")
    return array.astype(bool)


@op("QAttention", kind="integer", macs=_qattention_macs, onnx=(), const_inputs=(3,))
def qattention(q, k, v, mask=None, *, heads=1, head_dim=1, pattern=DENSE, q_zp=0, k_zp=0, v_zp=0, out_zp=0, score_multiplier=0, score_shift=0, exp_table=(1 << 15,) * 256, out_multiplier=0,
               out_shift=0):
    """Integer online-softmax attention over q int8 [..., S, heads*head_dim] and k, v int8 [..., S_kv,
    heads*head_dim] (S_kv = S but for Linformer's projected keys, `key_sets`; see the module docstring)."""
    if score_multiplier < 0:
        raise ValueError("QAttention score_multiplier must be non-negative")
    table = _exp_table(exp_table)
    lead, seq, keys = q.shape[:-2], q.shape[-2], k.shape[-2]
    allowed = key_sets(seq, keys, pattern)
    if mask is not None:
        allowed = allowed & _key_mask(mask, seq)
    if not allowed.any(axis=-1).all():
        raise ValueError("QAttention: every query needs at least one key its mask allows")

    def split(t, zp):  # [..., S, H*D] -> [..., H, S, D], zero point removed
        return (as_int64(t) - zp).reshape(*lead, t.shape[-2], heads, head_dim).swapaxes(-2, -3)

    qh, kh, vh = split(q, q_zp), split(k, k_zp), split(v, 0)
    logits = np.matmul(qh, kh.swapaxes(-1, -2))                                # [..., H, S(query), S(key)]
    top = np.full(logits.shape[:-1], np.iinfo(np.int32).min, np.int64)         # running maximum per query
    total = np.zeros_like(top)                                                 # running sum of table entries
    acc = np.zeros(qh.shape, np.int64)                                         # [..., H, S, D]
    for j in range(keys):                                                      # keys in ascending order
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
    o = rshift_round(((acc - v_zp * total[..., None]) >> shift[..., None]) * inv[..., None], 23)
    out = requantize(o, out_multiplier, out_shift)
    return saturate_int8(out + out_zp).swapaxes(-2, -3).reshape(q.shape)


def _quantized_key_mask(cv, node: Node) -> list[str]:
    """The 0/1 key mask the integer kernel takes for an additive 0/-inf mask input ([] when there is none)."""
    if len(node.inputs) < 4 or not node.inputs[3]:
        return []
    square = shared_mask(cv.src.const(node.inputs[3]), cv.src.shape(node.inputs[0])[-2])
    if square is None:
        raise UserError(f"node '{node.name}': integer attention takes one mask for every head")
    finite = square[square > MASKED]
    if np.any(finite != 0):
        raise UserError(f"node '{node.name}': integer attention supports masks of 0 and -inf only; this one adds "
                        f"learned biases (e.g. {float(finite[finite != 0][0]):.4g})")
    return [cv.dst.add_const(f"{node.name}_keys", (square > MASKED).astype(np.uint8))]


@quantizes("Attention")
def _quantize_attention(cv, node: Node) -> None:
    mask = _quantized_key_mask(cv, node)
    (s_q, q_zp), (s_k, k_zp), (s_v, v_zp) = (cv.param(v) for v in node.inputs[:3])
    s_o, o_zp = cv.param(node.outputs[0])
    score = quantize_multiplier(s_q * s_k * float(node.attrs["scale"]) / SCORE_STEP)
    output = quantize_multiplier(s_v / (256.0 * s_o))
    table = tuple(int(round(2 ** 15 * np.exp(-SCORE_STEP * t))) for t in range(256))
    attrs = {key: int(node.attr(key, 0)) for key in ("heads", "head_dim")}
    attrs.update(pattern=node_pattern(node), q_zp=q_zp, k_zp=k_zp, v_zp=v_zp, out_zp=o_zp, score_multiplier=score[0], score_shift=score[1],
                 exp_table=table, out_multiplier=output[0], out_shift=output[1])
    cv.emit("QAttention", list(node.inputs[:3]) + mask, node.outputs[0], attrs, node.name)


# ---- code generation ---------------------------------------------------------------------------------------------

def _heads(graph: Graph, node: Node, keys: bool = False) -> tuple[int, ...]:
    """(leading slices, seq, width) of q/k/v [..., S, H*D]; one kernel call per leading slice. With `keys`:
    (leading slices, seq, kv_seq, width), where k and v may have another sequence length than q (`key_sets`)."""
    shape, kv_shape = graph.shape(node.inputs[0]), graph.shape(node.inputs[1])
    if graph.shape(node.inputs[2]) != kv_shape or kv_shape[:-2] + kv_shape[-1:] != shape[:-2] + shape[-1:] or (
            not keys and kv_shape != shape):
        raise UserError(f"{label(node)}: q, k and v must have the same shape for the C kernel")
    return (rows(shape[:-1]), shape[-2], kv_shape[-2], shape[-1]) if keys else (rows(shape[:-1]), shape[-2], shape[-1])


def _emitted_mask(ctx, node: Node, seq: int, make, ctype: str) -> str:
    """The mask input as a [seq][seq] constant in weights.c (`make(array)` converts it), or NULL."""
    if len(node.inputs) < 4 or not node.inputs[3]:
        return "NULL"
    square = shared_mask(ctx.graph.const(node.inputs[3]), seq)
    if square is None:
        raise UserError(f"{label(node)}: the C kernels take one [{seq}, {seq}] attention mask for every head")
    return ctx.weight(node.inputs[3], "mask", lambda: np.ascontiguousarray(make(square)), ctype)


def _pattern_fields(pattern: AttentionPattern) -> list[tuple[str, int]]:
    """The `ma_attention_pattern` descriptor inside a kernel's parameter struct, as designated initializers."""
    return [(f"pattern.{name}", value) for name, value in pattern.c_fields()]


def _calls(ctx, node: Node, kernel: str, params: str, scratch: str, lead: int, step: int) -> list[Call]:
    """One attention kernel call per leading (batch) slice of q, k, v and the output, `step` bytes apart."""
    return [Call(kernel, (*(ctx.ptr(v, offset=i * step) for v in node.inputs[:3]), f"&{params}",
                          ctx.scratch(scratch), ctx.ptr(node.outputs[0], write=True, offset=i * step)))
            for i in range(lead)]


def _scratch_f32(graph: Graph, node: Node, query_tile: int) -> int:
    """ma_attention_f32_scratch: query_tile * (4 head_dim + 8) bytes (model.c's ma_check verifies it)."""
    return query_tile * (4 * int(node.attr("head_dim", 1)) + 8)


@emits("Attention", scratch=_scratch_f32, inplace=(0,))  # ma_attention_f32 allows out == q
def _emit_attention_f32(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "float32", (0, 1, 2))
    if graph.shape(node.inputs[1])[-2] != graph.shape(node.inputs[0])[-2]:
        raise UserError(f"{label(node)}: attention over projected keys (--attention linformer) runs on the integer "
                        f"kernels only: build with --bits 8 or 4")
    lead, seq, width = _heads(graph, node)
    attrs = spec("Attention").resolve_attrs(node)
    # -inf (a hidden key) is stored as -FLT_MAX: C initializers hold finite numbers, and exp(-FLT_MAX - m) is 0
    mask = _emitted_mask(ctx, node, seq, lambda m: np.maximum(m, np.finfo(np.float32).min).astype(np.float32),
                         "float")
    params = ctx.struct("ma_attention_f32_params", node, [
        ("seq", seq), ("heads", attrs["heads"]), ("head_dim", attrs["head_dim"]), *_pattern_fields(attrs["pattern"]),
        ("query_tile", ctx.query_tile), ("scale", float(attrs["scale"])), ("mask", mask)])
    ctx.check(f"ma_attention_f32_scratch(&{params})", _scratch_f32(graph, node, ctx.query_tile))
    return _calls(ctx, node, "ma_attention_f32", params, "float", lead, seq * width * 4)


def _scratch_s8(graph: Graph, node: Node, query_tile: int) -> int:
    """ma_attention_s8_scratch: query_tile * (8 head_dim + 8) bytes (model.c's ma_check verifies it)."""
    return query_tile * (8 * int(node.attr("head_dim", 1)) + 8)


@emits("QAttention", scratch=_scratch_s8)
def _emit_qattention(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "int8", (0, 1, 2))
    lead, seq, keys, width = _heads(graph, node, keys=True)
    attrs = spec("QAttention").resolve_attrs(node)
    table = ctx.table(f"{node.name}_exp", np.asarray(attrs["exp_table"], np.int64), "uint16_t", hot=True)
    mask = _emitted_mask(ctx, node, seq, lambda m: (m != 0).astype(np.uint8), "uint8_t")
    fields = [("seq", seq), ("heads", attrs["heads"]), ("head_dim", attrs["head_dim"]),
              *_pattern_fields(attrs["pattern"])] + [(key, attrs[key]) for key in ("q_zp", "k_zp", "v_zp", "out_zp")]
    fields += [("score_mult", attrs["score_multiplier"]), ("score_shift", attrs["score_shift"]),
               ("out_mult", attrs["out_multiplier"]), ("out_shift", attrs["out_shift"]),
               ("query_tile", ctx.query_tile), ("exp_table", table), ("mask", mask)]
    params = ctx.struct("ma_attention_s8_params", node, fields)
    kernel = "ma_attention_s8" if keys == seq else "ma_attention_kv_s8"
    ctx.check(f"{kernel}_scratch(&{params})", _scratch_s8(graph, node, ctx.query_tile))
    if keys != seq:  # projected keys (Linformer): ma_attention_kv_s8, every query over the kv_seq keys
        return [Call(kernel, (ctx.ptr(node.inputs[0], offset=i * seq * width),
                              *(ctx.ptr(v, offset=i * keys * width) for v in node.inputs[1:3]), f"&{params}",
                              str(keys), ctx.scratch("int64_t"),
                              ctx.ptr(node.outputs[0], write=True, offset=i * seq * width)))
                for i in range(lead)]
    return _calls(ctx, node, kernel, params, "int64_t", lead, seq * width)
