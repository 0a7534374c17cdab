"""Streaming attention: one new position of a causal local attention, over the keys and values of the positions
before it kept in a ring buffer (passes/streaming.py builds the step graph; docs/dynamic.md, "Streaming").

QAttentionStep(q, k, v, keys, values, filled, *, window, ...): q, k, v int8 [1, 1, heads*head_dim] are the new
position's projections; `keys` and `values` [window - 1, heads*head_dim] hold the projections of the positions
before it, oldest first, of which the last `filled` rows are valid (the state; constants of the step graph that
the stream runner, reference/stream.py, replaces after every step). The result is the row QAttention computes
for the last query of a causal window: the new query over its `filled` predecessors and itself, keys in
ascending time, with QAttention's integer online softmax (ir/ops/attention.py), so a stream is bit-identical to
re-running the whole window whenever the window holds the positions the stream has seen.

The C kernel keeps the state in a ring of `window` slots in SRAM (`ma_attention_step_s8`): it writes the new
k and v over the oldest slot, then visits the slots from the oldest to the newest.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.attention import qattention
from mcu_attn.ir.ops.lowering import Call, emits, label, require
from mcu_attn.ir.ops.registry import op, spec
from mcu_attn.ir.pattern import AttentionPattern

STEP_ATTRS = ("heads", "head_dim", "window", "q_zp", "k_zp", "v_zp", "out_zp", "score_multiplier", "score_shift",
              "exp_table", "out_multiplier", "out_shift")


def _macs(node: Node, graph: Graph) -> int:
    """A full ring: the new query against `window` keys."""
    return 2 * int(node.attr("window", 1)) * int(node.attr("heads", 1)) * int(node.attr("head_dim", 1))


@op("QAttentionStep", kind="integer", const_inputs=(3, 4, 5), macs=_macs, onnx=())
def qattention_step(q, k, v, keys, values, filled, *, heads=1, head_dim=1, window=1, q_zp=0, k_zp=0, v_zp=0,
                    out_zp=0, score_multiplier=0, score_shift=0, exp_table=(1 << 15,) * 256, out_multiplier=0,
                    out_shift=0):
    """The new position's attention output, int8 [1, 1, heads*head_dim] (see the module docstring)."""
    width = heads * head_dim
    count = int(filled)
    if not 0 <= count <= window - 1 or np.shape(keys) != (window - 1, width) or np.shape(values) != np.shape(keys):
        raise ValueError(f"QAttentionStep: state of {window - 1} rows of {width} with 0 <= filled < {window}")
    kept_k = np.concatenate([np.asarray(keys)[window - 1 - count:], np.reshape(k, (1, width))])
    kept_v = np.concatenate([np.asarray(values)[window - 1 - count:], np.reshape(v, (1, width))])
    queries = np.zeros_like(kept_k)
    queries[-1] = np.reshape(q, width)
    rows = qattention(queries[None], kept_k[None], kept_v[None], heads=heads, head_dim=head_dim,
                      pattern=AttentionPattern(window=window, causal=True), q_zp=q_zp, k_zp=k_zp, v_zp=v_zp, out_zp=out_zp, score_multiplier=score_multiplier,
                      score_shift=score_shift, exp_table=exp_table, out_multiplier=out_multiplier,
                      out_shift=out_shift)
    return rows[0, -1].reshape(np.shape(q))


def advance(history: np.ndarray, row: np.ndarray, filled: int) -> tuple[np.ndarray, int]:
    """The state after a step: the new row appended, the oldest dropped; how many rows are valid."""
    if history.shape[0] == 0:
        return history, 0
    return np.concatenate([history[1:], np.reshape(row, (1, -1))]).astype(history.dtype), min(filled + 1,
                                                                                               history.shape[0])


def ring_bytes(window: int, width: int) -> int:
    """The C state: two int32 (the next slot, the slots filled), then `window` slots of keys, then of values."""
    return 2 * window * width + 8


def _scratch(graph: Graph, node: Node, query_tile: int) -> int:
    """ma_attention_step_s8_scratch: head_dim int64 accumulators."""
    return 8 * int(node.attr("head_dim", 1))


@emits("QAttentionStep", scratch=_scratch)
def _emit_qattention_step(ctx, node: Node) -> list[Call]:
    graph = ctx.graph
    require(node, graph, "int8", (0, 1, 2))
    attrs = spec("QAttentionStep").resolve_attrs(node)
    width = attrs["heads"] * attrs["head_dim"]
    if any(graph.type(v).size != width for v in node.inputs[:3]):
        raise UserError(f"{label(node)}: q, k and v must be one position of {width} values")
    table = ctx.table(f"{node.name}_exp", np.asarray(attrs["exp_table"], np.int64), "uint16_t", hot=True)
    fields = [("seq", attrs["window"])] + [(key, attrs[key]) for key in ("heads", "head_dim")]
    fields += [(f"pattern.{name}", value) for name, value in
               AttentionPattern(window=attrs["window"], causal=True).c_fields()]
    fields += [(key, attrs[key]) for key in ("q_zp", "k_zp", "v_zp", "out_zp")]
    fields += [("score_mult", attrs["score_multiplier"]), ("score_shift", attrs["score_shift"]),
               ("out_mult", attrs["out_multiplier"]), ("out_shift", attrs["out_shift"]), ("query_tile", 1),
               ("exp_table", table), ("mask", "NULL")]
    params = ctx.struct("ma_attention_s8_params", node, fields)
    ring = ctx.state(node.name, ring_bytes(attrs["window"], width))
    ctx.check(f"ma_attention_step_s8_scratch(&{params})", _scratch(graph, node, 1))
    return [Call("ma_attention_step_s8", (*(ctx.ptr(v) for v in node.inputs[:3]), f"&{params}", ring,
                                          ctx.scratch("int64_t"), ctx.ptr(node.outputs[0], write=True)))]
