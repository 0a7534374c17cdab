"""`--streaming [auto|DELTA]`: `ma_step()` computes only the newest position of a causal model, keeping every
attention's past keys and values in a ring buffer in SRAM, and skips the step when the input changed less than
DELTA (docs/dynamic.md, "Streaming").

1. The step graph (`step_graph`): the quantized window model with its input cut to one position ([1, 1, F]
   instead of [1, T, F]); every QAttention becomes a QAttentionStep (ir/ops/attention_step.py) whose state holds
   the window - 1 positions before the new one, and the Gather of the last position reads position 0. What makes
   this exact: every other op works on each position alone (a whitelist: linear, LayerNorm, add of a per-channel
   operand, table lookups, requantization) and every attention is causal and local (a window W). The newest
   output then depends on the last R = 1 + sum over blocks of (W - 1) positions, and a stream gives the same
   output as re-running the window (bit for bit) whenever the window is at least R long, and always when the
   stream starts with the window (a reset state has seen nothing before it).
2. The event test (send-on-delta sampling): an input that differs from the anchor (the last input that did) by
   `delta` or more in some element (in input steps: DELTA / the input scale, rounded up) becomes the anchor and
   is computed. An input within `delta` of the anchor is computed too until R steps in a row were, so that the
   receptive field holds only inputs like it (the output has settled on them); after that such inputs are
   skipped: the state stays and the output is the last one, until an input changes. DELTA 0 never skips.
   Skipping at once instead would freeze the output of a first quiet step that still saw the activity before.
3. `auto` (bare `--streaming`): the largest delta of 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64 steps whose top-1
   class, streaming each calibration window from a reset state, differs from the exact stream's on at most
   `tolerance` of the windows, by bisection (skipping more changes more).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from mcu_attn.data import top1
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.attention import node_pattern
from mcu_attn.ir.ops.attention_step import STEP_ATTRS
from mcu_attn.ir.pattern import AttentionPattern
from mcu_attn.ir.types import TensorType
from mcu_attn.ir.verify import verify
from mcu_attn.passes.blocks import retype
from mcu_attn.progress import progress

PER_POSITION = ("QLinear", "QLinearAdd", "QLinearTable", "QLayerNorm", "QAdd", "QTable", "QRequant")
DELTAS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


@dataclass(frozen=True)
class StreamChoice:
    auto: bool
    delta: float = 0.0

    @staticmethod
    def parse(text: str) -> "StreamChoice":
        if text == "auto":
            return StreamChoice(True)
        if not re.fullmatch(r"[0-9]*\.?[0-9]+(?:[eE]-?[0-9]+)?", text):
            raise UserError(f"--streaming {text!r}: expected auto or DELTA (skip a step whose input changed by less "
                            f"than DELTA, in the input's units; 0 never skips)")
        return StreamChoice(False, float(text))


def _attention_step(graph: Graph, node: Node) -> Node:
    pattern = node_pattern(node)
    causal, window = pattern.causal, pattern.window
    only_window = pattern == AttentionPattern(window=window, causal=True)  # no global tokens, no other keys
    if not causal or window < 1 or not only_window or (len(node.inputs) > 3 and node.inputs[3]):
        raise UserError(f"--streaming: attention '{node.name}' is not causal local attention (causal, a window, "
                        f"no global tokens or mask): a new position would need every earlier one")
    width = graph.shape(node.inputs[0])[-1]
    history = np.zeros((window - 1, width), np.int8)
    keys = graph.add_const(f"{node.name}_keys", history, TensorType("int8", history.shape))
    values = graph.add_const(f"{node.name}_values", history.copy(), TensorType("int8", history.shape))
    filled = graph.add_const(f"{node.name}_filled", np.array(0, np.int64))
    attrs = {key: node.attrs[key] for key in STEP_ATTRS if key in node.attrs}
    attrs["window"] = window  # the QAttention's pattern, as the step op's own attribute
    return Node("QAttentionStep", list(node.inputs[:3]) + [keys, values, filled], list(node.outputs), attrs,
                node.name)


def step_graph(graph: Graph) -> Graph:
    """The one-position step graph of the quantized causal window model `graph` (module docstring, 1)."""
    step = graph.copy()
    x = step.inputs[0]
    shape = step.shape(x)
    if len(shape) != 3 or shape[0] != 1:
        raise UserError(f"--streaming: the input is {list(shape)}; a stream takes [1, T, F] windows of T positions")
    step.types[x] = TensorType(step.type(x).dtype, (1, 1, shape[2]), step.type(x).quant)
    attentions = {id(node): _attention_step(step, node) for node in step.nodes if node.op == "QAttention"}
    nodes = []
    for node in step.nodes:
        if node.op == "QAttention":
            node = attentions[id(node)]
        elif node.op == "Gather":
            index = np.asarray(step.const(node.inputs[1])) if step.is_const(node.inputs[1]) else None
            seq = step.shape(node.inputs[0])[-2] if len(step.shape(node.inputs[0])) == 3 else 0
            if index is None or index.ndim or int(index) % max(seq, 1) != shape[1] - 1 or node.attr("axis") not in (1, -2):
                raise UserError(f"--streaming: node '{node.name}' (Gather) does not read the newest position; a "
                                f"stream computes the output of the newest position only")
            node.inputs[1] = step.add_const(f"{node.name}_newest", np.array(0, np.int64))
        elif node.op not in PER_POSITION:
            raise UserError(f"--streaming: node '{node.name}' ({node.op}) is not one of the ops that work on each "
                            f"position alone ({', '.join(PER_POSITION)}), causal local attention or the read of "
                            f"the newest position")
        nodes.append(node)
    step.set_nodes(nodes)
    retype(step, step.nodes, "--streaming", "the window's length")
    step.prune_unused()
    verify(step)
    return step


def receptive_field(step: Graph) -> int:
    """How many positions the newest output depends on: 1 + the sum of (window - 1) over the attentions."""
    return 1 + sum(int(n.attrs["window"]) - 1 for n in step.nodes if n.op == "QAttentionStep")


def input_steps(graph: Graph, delta: float) -> int:
    """DELTA in the input's units as int8 steps of the input scale, rounded up (0 stays 0: never skip)."""
    return int(min(256, math.ceil(delta / float(graph.type(graph.inputs[0]).quant.scale[0]) - 1e-9)))


def choose(graph: Graph, step: Graph, calib: np.ndarray | None, choice: StreamChoice,
           tolerance: float) -> tuple[int, dict]:
    """The event threshold in input steps and the report (module docstring, 2-3)."""
    from mcu_attn.reference.stream import stream_windows

    window = graph.shape(graph.inputs[0])[1]
    field = receptive_field(step)
    report = {"window": window, "receptive_field": field, "exact_over_a_stream": window >= field,
              "input_scale": float(graph.type(graph.inputs[0]).quant.scale[0]), "tolerance": tolerance}
    if not choice.auto:
        delta = input_steps(graph, choice.delta)
        return delta, {**report, "delta": delta, "chosen": repr(choice.delta)}
    if calib is None:
        raise UserError("--streaming auto chooses the event threshold on calibration data: pass --calib C.npy")
    from mcu_attn.reference.qmath import quantize

    quant = graph.type(graph.inputs[0]).quant
    windows = quantize(calib, quant.scale[0], quant.zero_point[0]).astype(np.int8).reshape(len(calib), window, -1)
    exact, _ = stream_windows(step, windows, 0)
    tried = []
    low, high = 0, len(DELTAS)
    with progress("streaming: event threshold", total=None, unit="candidates") as advance:
        while low < high:   # the largest delta within tolerance
            middle = (low + high) // 2
            outputs, computed = stream_windows(step, windows, DELTAS[middle])
            entry = {"delta": DELTAS[middle], "skipped": float(1.0 - computed.mean()),
                     "changed": float(np.mean(top1(outputs) != top1(exact)))}
            tried.append(entry)
            advance(note=f"delta {DELTAS[middle]}: {entry['skipped']:.3f} skipped, {entry['changed']:.3f} changed")
            low, high = (middle + 1, high) if entry["changed"] <= tolerance else (low, middle)
    fits = [t for t in tried if t["changed"] <= tolerance]
    best = max(fits, key=lambda t: t["delta"]) if fits else {"delta": 0, "skipped": 0.0, "changed": 0.0}
    return best["delta"], {**report, **best, "tried": tried, "samples": int(len(calib)),
                           "chosen": repr(best["delta"] * report["input_scale"]),
                           "compared": "top-1 class of each calibration window streamed from a reset state, "
                                       "against the stream that never skips"}
