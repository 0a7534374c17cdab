"""The ONNX `Attention` op (opsets 23-25) decomposed into primitive IR ops.

The IR's own fused `Attention` op is created by the attention pattern matcher from MatMul/Softmax/MatMul
subgraphs; spelling the ONNX op out in primitives lets the same matcher (and the same mask analysis) recognise
it, so there is one way in for every exporter. For the common case (no cache, no extra output, a constant or
absent mask, as many K/V heads as Q heads) the result is the canonical form:

    Q [B,S,H*D] -Reshape-> [B,S,H,D] -Transpose(0,2,1,3)-> Q4                 (3-D inputs; 4-D are used as is)
    K likewise -> K4 -Transpose(0,1,3,2)-> Kᵀ
    scores = MatMul(Q4, Kᵀ) * scale  (+ bias)  -> Softmax(axis=-1) -> MatMul(·, V4)
    -> Transpose(0,2,1,3) -> Reshape [B,S,H*Dv]

Semantics follow the ONNX reference implementation (the node tests' expected outputs), step by step:
- scale defaults to 1/sqrt(head size of Q); it multiplies the Q·Kᵀ product;
- past_key/past_value are concatenated in front of K/V along the sequence axis (present_key/present_value);
- grouped-query attention (q_num_heads a multiple of kv_num_heads) repeats each K/V head for consecutive
  Q heads ([h0, h0, h1, h1, ...]): a Gather on the head axis;
- softcap > 0 maps scores to softcap * tanh(scores / softcap), before any mask;
- the bias is the attention mask (bool: True attends -> 0, False -> -inf; shorter than the key sequence:
  padded with -inf) plus the structural masks, all exactly 0 or -inf: causal (query i attends key j iff
  j <= i + offset, bottom-right aligned: offset is the past length, or nonpad_kv_seqlen[b] - q_len for an
  external cache), the sliding window (opset 25: offset + i - left <= j <= offset + i + right) and the padding
  of an external cache (j < nonpad_kv_seqlen[b]). Constant parts are folded into one constant here;
- a query row whose bias is entirely -inf attends nothing: its probabilities are 0 (not NaN). The guard is a
  Where after the Softmax, with a constant condition when the bias is constant;
- softmax_precision runs the Softmax in that float type and casts the probabilities back;
- qk_matmul_output is the scaled Q·Kᵀ (mode 0), the same after softcap (1), plus the bias (2), or the guarded
  probabilities in the output type (3). (onnx's reference returns the softcapped scores for mode 0 too; no node
  test has mode 0 with a softcap, and the spec text says "the output of qk matmul".)
"""

from __future__ import annotations

import math

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.frontend.importers import ONNX_DTYPES, ImportContext, OnnxNode, const_input, rule
from mcu_attn.ir.types import value_dtype


class _Builder:
    """Emits IR nodes for one ONNX node, naming every new value after the node's first output."""

    def __init__(self, ctx: ImportContext, node: OnnxNode) -> None:
        self.ctx, self.node = ctx, node

    def const(self, hint: str, array: np.ndarray) -> str:
        name = self.ctx.fresh(f"{self.node.outputs[0]}_{hint}")
        self.ctx.define_const(name, np.asarray(array))
        return name

    def op(self, op: str, inputs: list[str], attrs: dict | None = None, out: str = "") -> str:
        out = out or self.ctx.fresh(f"{self.node.outputs[0]}_{op.lower()}")
        self.ctx.emit(op, inputs, [out], attrs or {})
        return out

    def output(self, index: int) -> str:
        """The name of the ONNX node's output `index`, or "" when the model does not ask for it."""
        return self.node.outputs[index] if index < len(self.node.outputs) else ""


@rule("Attention")
def attention(ctx: ImportContext, node: OnnxNode) -> None:
    """Layout to [B, H, S, D], KV cache, GQA, scores, bias, softmax with the masked-row guard, P·V, layout back
    (see the module docstring)."""
    b = _Builder(ctx, node)
    a = node.attrs
    q, k, v = node.inputs[:3]
    rank = len(ctx.shape(q))
    dtype = ctx.dtype(q)
    np_dtype = value_dtype(dtype)
    if rank == 3:
        q4 = _split_heads(b, q, a.get("q_num_heads"))
        k4 = _split_heads(b, k, a.get("kv_num_heads"))
        v4 = _split_heads(b, v, a.get("kv_num_heads"))
    elif rank == 4:
        q4, k4, v4 = q, k, v
    else:
        raise UserError(f"{node.label}: Q must be 3-D or 4-D, got shape {list(ctx.shape(q))}")
    past_len = 0
    if len(node.inputs) > 5 and node.inputs[4] and node.inputs[5]:
        past_len = ctx.shape(node.inputs[4])[2]
        k4 = b.op("Concat", [node.inputs[4], k4], {"axis": 2}, b.output(1))
        v4 = b.op("Concat", [node.inputs[5], v4], {"axis": 2}, b.output(2))
    else:
        for index, value in ((1, k4), (2, v4)):
            if b.output(index):
                b.op("Identity", [value], out=b.output(index))
    batch, q_heads, q_len, head_dim = ctx.shape(q4)
    kv_heads, kv_len = ctx.shape(k4)[1:3]
    if q_heads != kv_heads:
        if q_heads % kv_heads:
            raise UserError(f"{node.label}: {q_heads} query heads do not group over {kv_heads} key/value heads")
        groups = b.const("heads", np.arange(q_heads, dtype=np.int64) // (q_heads // kv_heads))
        k4 = b.op("Gather", [k4, groups], {"axis": 1})
        v4 = b.op("Gather", [v4, groups], {"axis": 1})

    scores = b.op("MatMul", [q4, b.op("Transpose", [k4], {"perm": (0, 1, 3, 2)})])
    scale = a.get("scale")
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    scores = b.op("Mul", [scores, b.const("scale", np.array(scale, np_dtype))])
    scaled = scores
    softcap = float(a.get("softcap", 0.0))
    if softcap > 0:
        cap = b.const("softcap", np.array(softcap, np_dtype))
        scores = b.op("Mul", [b.op("Tanh", [b.op("Div", [scores, cap])]), cap])
    capped = scores

    nonpad = const_input(ctx, node, 6, "nonpad_kv_seqlen") if node.opset >= 24 else None
    if nonpad is not None and past_len:
        raise UserError(f"{node.label}: nonpad_kv_seqlen cannot be combined with past_key/past_value")
    offset = past_len if nonpad is None else np.asarray(nonpad, np.int64).reshape(-1, 1, 1, 1) - q_len
    is_causal = int(a.get("is_causal", 0))
    if is_causal not in (0, 1):
        raise UserError(f"{node.label}: is_causal {is_causal}: the Attention op takes 0 or 1")
    structure = _structural_bias(q_len, kv_len, offset, bool(is_causal),
                                 a.get("left_window_size", -1) if node.opset >= 25 else -1,
                                 a.get("right_window_size", -1) if node.opset >= 25 else -1, nonpad)
    bias = _bias(b, node.inputs[3] if len(node.inputs) > 3 else "", structure, kv_len, np_dtype)
    if bias is not None:
        scores = b.op("Add", [scores, bias])
    with_bias = scores

    precision = a.get("softmax_precision")
    soft_dtype = dtype if precision is None else ONNX_DTYPES[precision]
    if soft_dtype != dtype:
        scores = b.op("Cast", [scores], {"to": soft_dtype})
    probs = b.op("Softmax", [scores], {"axis": -1})
    probs = _guard_masked_rows(b, probs, bias, np_dtype, value_dtype(soft_dtype))
    if soft_dtype != dtype:
        probs = b.op("Cast", [probs], {"to": dtype})

    mode = int(a.get("qk_matmul_output_mode", 0))
    if b.output(3):
        exposed = {0: scaled, 1: capped, 2: with_bias, 3: probs}[mode]
        b.op("Identity", [exposed], out=b.output(3))
    if rank == 3:
        merged = b.op("Transpose", [b.op("MatMul", [probs, v4])], {"perm": (0, 2, 1, 3)})
        b.op("Reshape", [merged, b.const("shape", np.array([batch, q_len, -1], np.int64))], out=node.outputs[0])
    else:
        b.op("MatMul", [probs, v4], out=node.outputs[0])


def _split_heads(b: _Builder, value: str, heads: int | None) -> str:
    """[B, S, H*D] -> [B, H, S, D]."""
    if not heads:
        raise UserError(f"{b.node.label}: 3-D inputs need q_num_heads and kv_num_heads")
    batch, seq, hidden = b.ctx.shape(value)
    if hidden % heads:
        raise UserError(f"{b.node.label}: hidden size {hidden} is not a multiple of {heads} heads")
    shaped = b.op("Reshape", [value, b.const("shape", np.array([batch, seq, heads, hidden // heads], np.int64))])
    return b.op("Transpose", [shaped], {"perm": (0, 2, 1, 3)})


def _structural_bias(q_len: int, kv_len: int, offset, causal: bool, left: int, right: int,
                     nonpad: np.ndarray | None) -> np.ndarray | None:
    """bool allowed[q, kv] (or [B, 1, q, kv] with a per-batch offset) of the causal, window and padding masks;
    None when every key is allowed."""
    i = np.arange(q_len).reshape(-1, 1)
    j = np.arange(kv_len).reshape(1, -1)
    diff = i + offset - j  # how far key j lies behind the query's absolute position
    allowed = np.ones(np.shape(diff), bool)
    if causal:
        allowed &= diff >= 0
    if left >= 0:
        allowed &= diff <= left
    if right >= 0:
        allowed &= -diff <= right
    if nonpad is not None:
        allowed = allowed & (j < np.asarray(nonpad, np.int64).reshape(-1, 1, 1, 1))
    return None if allowed.all() else allowed


def _bias(b: _Builder, mask: str, allowed: np.ndarray | None, kv_len: int, np_dtype: np.dtype) -> str | None:
    """The additive bias (mask + structural masks) as a value name, or None when it is all zeros."""
    structural = None if allowed is None else np.where(allowed, 0, -np.inf).astype(np_dtype)
    if not mask:
        return None if structural is None else b.const("bias", structural)
    mask_value = b.ctx.const(mask)
    pad = kv_len - b.ctx.shape(mask)[-1]
    if mask_value is not None:
        if mask_value.dtype == np.bool_:
            mask_value = np.where(mask_value, 0, -np.inf).astype(np_dtype)
        mask_value = np.concatenate(
            [mask_value, np.full(mask_value.shape[:-1] + (pad,), -np.inf, np_dtype)], axis=-1)
        total = mask_value if structural is None else mask_value + structural
        return b.const("bias", total.astype(np_dtype))
    if b.ctx.dtype(mask) == "bool":
        mask = b.op("Where", [mask, b.const("zero", np.zeros((), np_dtype)),
                              b.const("neg_inf", np.array(-np.inf, np_dtype))])
    if pad > 0:
        # padded keys are masked: zeros here and -inf in the constant part (-inf constants only feed Add/Where)
        zeros = b.const("pad", np.zeros(tuple(b.ctx.shape(mask)[:-1]) + (pad,), np_dtype))
        mask = b.op("Concat", [mask, zeros], {"axis": -1})
        padding = np.zeros(kv_len, np_dtype)
        padding[kv_len - pad:] = -np.inf
        structural = padding if structural is None else (structural + padding).astype(np_dtype)
    return mask if structural is None else b.op("Add", [mask, b.const("bias", structural)])


def _guard_masked_rows(b: _Builder, probs: str, bias: str | None, bias_dtype: np.dtype, probs_dtype: np.dtype) -> str:
    """Zero the probabilities of query rows whose bias is -inf for every key (Softmax gives NaN there)."""
    if bias is None:
        return probs
    zero = b.const("zero", np.zeros((), probs_dtype))
    value = b.ctx.const(bias)
    if value is not None:
        dead = np.isneginf(np.max(value, axis=-1, keepdims=True))
        return b.op("Where", [b.const("dead_rows", dead), zero, probs]) if dead.any() else probs
    # at run time: a row maximum below the lowest finite value is -inf (NaN compares false, as in the reference)
    row_max = b.op("ReduceMax", [bias], {"axes": (-1,), "keepdims": 1})
    dead = b.op("Less", [row_max, b.const("lowest", np.array(np.finfo(bias_dtype).min, bias_dtype))])
    return b.op("Where", [dead, zero, probs])
