"""Token pruning: keep the class token and the `keep` tokens it attends to most (passes/token_prune.py places the
op after a block's attention; docs/dynamic.md).

TokenSelect(x, q, k, *, heads, head_dim, scale, keep, cls): x [..., S, E] is the residual stream, q and k
[..., S, heads*head_dim] the query and key projections of the attention just computed. The score of token j is
the class token's attention to it summed over heads, sum_h softmax_j(scale q_h[cls] . k_h[j]); the result is
[..., keep + 1, E]: the class token first, then the `keep` other tokens with the highest scores (ties: the lower
index) in their original order. The layers after it run on keep + 1 tokens.

QTokenSelect does the same on int8 values, with the attention's integer softmax (ir/ops/attention.py): per head
l_j = (q[cls] - q_zp) . (k_j - k_zp) on int32, m = max_j l_j, e_j = exp_table[t(m - l_j)] (t: the logit gap in
steps of SCORE_STEP, clamped at 255), sum = sum_j e_j (in [2^15, S 2^15]), inv = floor(2^47 / sum) and
p_j = floor(e_j inv / 2^32), the probability in Q15; score_j = sum_h p_j. The rows are copied unchanged, so the
output keeps x's scale and zero point.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.attention import SCORE_STEP, _exp_index, _exp_table
from mcu_attn.ir.ops.lowering import Call, emits, label, require, rows
from mcu_attn.ir.ops.registry import op, quantizes, spec
from mcu_attn.reference.qmath import as_int64, quantize_multiplier


def ranked(scores: np.ndarray, cls: int, keep: int) -> np.ndarray:
    """The row order of the result: `cls`, then the `keep` other indices with the highest scores (ties: the
    lower index) in ascending order."""
    others = [j for j in range(len(scores)) if j != cls]
    best = sorted(others, key=lambda j: (-scores[j], j))[:keep]
    return np.array([cls] + sorted(best), np.int64)


def _check(x, keep: int, cls: int) -> int:
    seq = x.shape[-2]
    if not 0 <= cls < seq or not 0 <= keep < seq:
        raise ValueError(f"TokenSelect: class token {cls} and keep {keep} need 0 <= cls < {seq} and keep < {seq}")
    if int(np.prod(x.shape[:-2], dtype=np.int64)) != 1:
        raise ValueError("TokenSelect takes one sequence (leading axes of size 1)")
    return seq


def _heads_of(t, seq: int, heads: int, head_dim: int) -> np.ndarray:
    return np.asarray(t).reshape(seq, heads, head_dim).swapaxes(0, 1)   # [H, S, D]


@op("TokenSelect", kind="attention", onnx=())
def token_select(x, q, k, *, heads=1, head_dim=1, scale=1.0, keep=0, cls=0):
    """The class token and the `keep` tokens its attention weights most (see the module docstring)."""
    seq = _check(x, keep, cls)
    qh, kh = _heads_of(q, seq, heads, head_dim), _heads_of(k, seq, heads, head_dim)
    logits = np.einsum("hd,hjd->hj", qh[:, cls].astype(np.float64), kh.astype(np.float64)) * scale
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    scores = (weights / weights.sum(axis=1, keepdims=True)).sum(axis=0)
    return np.take(x, ranked(scores, cls, keep), axis=-2)


def integer_scores(q, k, *, heads, head_dim, cls, q_zp, k_zp, score_multiplier, score_shift, exp_table) -> np.ndarray:
    """score_j of QTokenSelect (int64 [S]): the class token's integer attention summed over heads."""
    seq = np.shape(q)[-2]
    table = _exp_table(exp_table)
    qh = _heads_of(as_int64(q) - q_zp, seq, heads, head_dim)
    kh = _heads_of(as_int64(k) - k_zp, seq, heads, head_dim)
    logits = np.einsum("hd,hjd->hj", qh[:, cls], kh)                         # [H, S]
    e = table[_exp_index(logits.max(axis=1, keepdims=True) - logits, score_multiplier, score_shift)]
    inv = (np.int64(1) << 47) // e.sum(axis=1, keepdims=True)
    return ((e * inv) >> 32).sum(axis=0)


@op("QTokenSelect", kind="integer", onnx=())
def qtoken_select(x, q, k, *, heads=1, head_dim=1, keep=0, cls=0, q_zp=0, k_zp=0, score_multiplier=0,
                  score_shift=0, exp_table=(1 << 15,) * 256):
    """TokenSelect on int8 values with integer scores (see the module docstring)."""
    _check(x, keep, cls)
    scores = integer_scores(q, k, heads=heads, head_dim=head_dim, cls=cls, q_zp=q_zp, k_zp=k_zp,
                            score_multiplier=score_multiplier, score_shift=score_shift, exp_table=exp_table)
    return np.take(x, ranked(scores, cls, keep), axis=-2)


@quantizes("TokenSelect")
def _quantize_token_select(cv, node: Node) -> None:
    x, q, k = node.inputs
    (s_q, q_zp), (s_k, k_zp) = cv.param(q), cv.param(k)
    cv.params[node.outputs[0]] = cv.param(x)   # rows are copied: the output keeps x's parameters
    multiplier, shift = quantize_multiplier(s_q * s_k * float(node.attrs["scale"]) / SCORE_STEP)
    attrs = {key: int(node.attr(key, 0)) for key in ("heads", "head_dim", "keep", "cls")}
    attrs.update(q_zp=q_zp, k_zp=k_zp, score_multiplier=multiplier, score_shift=shift,
                 exp_table=tuple(int(round(2 ** 15 * np.exp(-SCORE_STEP * t))) for t in range(256)))
    cv.emit("QTokenSelect", [x, q, k], node.outputs[0], attrs, node.name)


def _scratch(graph: Graph, node: Node, query_tile: int) -> int:
    """ma_token_select_s8_scratch: 9 seq bytes (int32 logits, uint32 scores, one flag per token), 8-aligned."""
    return (9 * graph.shape(node.inputs[0])[-2] + 7) // 8 * 8


@emits("QTokenSelect", scratch=_scratch)
def _emit_qtoken_select(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "int8", (0, 1, 2))
    x, q, k = node.inputs
    shape = graph.shape(x)
    if rows(shape) != shape[-2] or graph.shape(q) != graph.shape(k) or graph.shape(q)[-2] != shape[-2]:
        raise UserError(f"{label(node)}: the C kernel takes one sequence, with q and k as long as x")
    attrs = spec("QTokenSelect").resolve_attrs(node)
    table = ctx.table(f"{node.name}_exp", np.asarray(attrs["exp_table"], np.int64), "uint16_t")
    params = ctx.struct("ma_token_select_s8_params", node, [
        ("seq", shape[-2]), ("width", shape[-1])] + [(key, attrs[key]) for key in (
            "heads", "head_dim", "keep", "cls", "q_zp", "k_zp")] + [
        ("score_mult", attrs["score_multiplier"]), ("score_shift", attrs["score_shift"]), ("exp_table", table)])
    ctx.check(f"ma_token_select_s8_scratch(&{params})", _scratch(graph, node, ctx.query_tile))
    return [Call("ma_token_select_s8", (ctx.ptr(x), ctx.ptr(q), ctx.ptr(k), f"&{params}", ctx.scratch("uint32_t"),
                                        ctx.ptr(node.outputs[0], write=True)))]
