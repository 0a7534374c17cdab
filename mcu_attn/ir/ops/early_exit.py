"""Early exit: the model's output, or the logits of a classifier head after an earlier block when that head is
confident (passes/early_exit.py fits the head and places it; docs/dynamic.md).

EarlyExit(full, early, *, threshold): `early` when softmax(early) has a largest probability >= `threshold`,
else `full`. The reference computes both; the firmware stops right after the head when it is confident (the
emitter's `guard`: the rest of the model never runs), so energy depends on the input.

QEarlyExit(full, early, ...) decides on the int8 logits of the head (scale s, zero point z) without a division:
with g_j = max(early) - early_j (an integer in [0, 255]) and table[g] = round(2^15 exp(-s g)),
sum = sum_j table[g_j] is 2^15 / p_max in Q15 (table[0] = 2^15 is the largest logit's own entry), so
p_max >= threshold exactly when sum <= bound = floor(2^15 / threshold). Taken, the output is the head's logits
requantized to the output's parameters: sat8(requant(early - early_zp, multiplier, shift) + out_zp).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Node
from mcu_attn.ir.ops.lowering import Call, count, emits, require
from mcu_attn.ir.ops.registry import op, quantizes, spec
from mcu_attn.reference.qmath import as_int64, quantize_multiplier, requantize, saturate_int8

Q15 = 1 << 15


def confident(early: np.ndarray, threshold: float) -> bool:
    """Float rule: the head's largest softmax probability reaches `threshold`."""
    logits = np.asarray(early, np.float64).reshape(-1)
    weights = np.exp(logits - logits.max())
    return bool(1.0 / weights.sum() >= threshold)


def confident_q(early: np.ndarray, gap_table, bound: int) -> bool:
    """Integer rule: sum_j gap_table[max - early_j] <= bound (see the module docstring)."""
    values = as_int64(early).reshape(-1)
    table = as_int64(gap_table).reshape(-1)
    return bool(int(table[values.max() - values].sum()) <= int(bound))


@op("EarlyExit", kind="logic", onnx=())
def early_exit(full, early, *, threshold=1.0):
    """`early` (the head's logits, the shape of `full`) when its softmax is confident, else `full`."""
    return np.array(early if confident(early, threshold) else full, dtype=full.dtype)


@op("QEarlyExit", kind="integer", onnx=())
def qearly_exit(full, early, *, gap_table=(Q15,) * 256, bound=0, early_zp=0, multiplier=0, shift=0, out_zp=0):
    """int8 `full`, or the int8 head logits `early` requantized to its parameters when the head is confident."""
    if not confident_q(early, gap_table, bound):
        return np.array(full, dtype=np.int8)
    taken = requantize(as_int64(early) - early_zp, multiplier, shift)
    return saturate_int8(taken + out_zp).reshape(np.shape(full))


def gap_table(scale: float) -> tuple[int, ...]:
    """table[g] = round(2^15 exp(-scale g)) for the logit gaps g = 0..255 of int8 logits of `scale`."""
    return tuple(int(round(Q15 * np.exp(-scale * g))) for g in range(256))


def exit_bound(threshold: float) -> int:
    """floor(2^15 / threshold): the largest table sum of a confident head."""
    return int(np.floor(Q15 / threshold))


@quantizes("EarlyExit")
def _quantize_early_exit(cv, node: Node) -> None:
    full, early = node.inputs
    threshold = float(node.attr("threshold", 1.0))
    s_e, e_zp = cv.param(early)
    cv.params[node.outputs[0]] = cv.param(full)  # the output is `full` or the head requantized to its parameters
    s_o, o_zp = cv.param(full)
    multiplier, shift = quantize_multiplier(s_e / s_o)
    cv.emit("QEarlyExit", [full, early], node.outputs[0],
            {"gap_table": gap_table(s_e), "bound": exit_bound(threshold), "early_zp": e_zp,
             "multiplier": multiplier, "shift": shift, "out_zp": o_zp}, node.name)


def _emit_check(ctx, node: Node) -> Call:
    """The guard: `ma_early_exit_s8` returns 1 (having written the output) when the head is confident."""
    graph = ctx.graph
    require(node, graph, "int8", (0, 1))
    full, early = node.inputs
    if count(graph, full) != count(graph, early):
        raise UserError(f"QEarlyExit node '{node.name}': the head gives {count(graph, early)} values, the output "
                        f"has {count(graph, full)}")
    attrs = spec("QEarlyExit").resolve_attrs(node)
    table = ctx.table(f"{node.name}_gaps", np.asarray(attrs["gap_table"], np.int64), "uint16_t")
    params = ctx.struct("ma_early_exit_s8_params", node, [
        ("count", count(graph, early)), ("early_zp", attrs["early_zp"]), ("mult", attrs["multiplier"]),
        ("shift", attrs["shift"]), ("out_zp", attrs["out_zp"]), ("bound", attrs["bound"]), ("gap_table", table)])
    return Call("ma_early_exit_s8", (ctx.ptr(early), f"&{params}", "out"))


# Where the head is not confident the output is `full` itself: a view of input 0, no code at the node's place.
@emits("QEarlyExit", view=lambda graph, node: 0, guard=(1, _emit_check))
def _emit_qearly_exit(ctx, node: Node) -> list[Call]:
    return []
