"""The numpy reference of `ma_step` (docs/dynamic.md, "Streaming"): a stream of int8 inputs through the step
graph of passes/streaming.py, one position at a time.

`Stream` holds what the firmware holds: per QAttentionStep the keys and values of the positions before the new
one (the step graph's `keys`, `values` and `filled` constants, replaced after every computed step with
`attention_step.advance`), the event test's anchor input and count of steady steps, and the last output.
`step(x)` is ma_step: when the event test skips the step, the last output is returned and nothing changes;
otherwise the step graph runs, the state advances and the output is kept.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Graph
from mcu_attn.ir.ops.attention_step import advance
from mcu_attn.reference.interpreter import run


class Stream:
    def __init__(self, step: Graph, delta: int) -> None:
        from mcu_attn.passes.streaming import receptive_field

        self.graph = step.copy()
        self.delta = int(delta)
        self.settle = receptive_field(step)
        self.attentions = [n for n in self.graph.nodes if n.op == "QAttentionStep"]
        self.anchor: np.ndarray | None = None   # the input the steady run is measured against
        self.steady = 0                         # computed steps in a row within delta of the anchor
        self.last_output: np.ndarray | None = None

    def _compute(self, x: np.ndarray) -> bool:
        """The event test (ma_event_s8): compute a changed input, and an unchanged one until `settle` steps in a
        row were computed; skip after that."""
        if self.anchor is None or bool(np.any(np.abs(x.astype(np.int32) - self.anchor) >= self.delta)):
            self.anchor, self.steady = x.astype(np.int32), 1
            return True
        if self.steady < self.settle:
            self.steady += 1
            return True
        return False

    def step(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        """The output after input `x` (int8, the step graph's input shape) and whether the step was computed."""
        x = np.asarray(x, np.int8).reshape(self.graph.shape(self.graph.inputs[0]))
        if not self._compute(x):
            return self.last_output, False
        wanted = {v for n in self.attentions for v in n.inputs[1:3]}
        values = run(self.graph, {self.graph.inputs[0]: x}, keep=wanted)
        for node in self.attentions:
            keys, rows, filled = node.inputs[3], node.inputs[4], node.inputs[5]
            count = int(self.graph.constants[filled])
            self.graph.constants[keys], _ = advance(self.graph.constants[keys], values[node.inputs[1]], count)
            self.graph.constants[rows], count = advance(self.graph.constants[rows], values[node.inputs[2]], count)
            self.graph.constants[filled] = np.array(count, np.int64)
        self.last_output = values[self.graph.outputs[0]]
        return self.last_output, True


def run_stream(step: Graph, inputs: np.ndarray, delta: int) -> tuple[np.ndarray, np.ndarray]:
    """Every output of one stream from a reset state (int8 inputs [S, ...]) and which steps were computed."""
    stream = Stream(step, delta)
    outputs, computed = zip(*(stream.step(x) for x in inputs)) if len(inputs) else ((), ())
    return np.stack(outputs), np.array(computed, bool)


def stream_windows(step: Graph, windows: np.ndarray, delta: int) -> tuple[np.ndarray, np.ndarray]:
    """Each window [N, T, F] streamed from a reset state: the outputs after its last position [N, ...] and which
    steps were computed [N, T]."""
    finals, computed = [], []
    for window in windows:
        outputs, done = run_stream(step, window, delta)
        finals.append(outputs[-1])
        computed.append(done)
    return np.stack(finals), np.stack(computed)


def stream_float_windows(compilation, data: np.ndarray) -> np.ndarray:
    """Float windows [N, T, F] streamed from a reset state through a compilation's step graph (its event
    threshold): the dequantized outputs after each window's last position."""
    from mcu_attn.reference.qmath import dequantize, quantize

    graph = compilation.graph
    source, sink = graph.type(graph.inputs[0]).quant, graph.type(graph.outputs[0]).quant
    windows = quantize(data, source.scale[0], source.zero_point[0]).astype(np.int8)
    outputs, _ = stream_windows(compilation.step, windows.reshape(len(data), graph.shape(graph.inputs[0])[1], -1),
                                compilation.delta)
    return dequantize(outputs, sink.scale[0], sink.zero_point[0])
