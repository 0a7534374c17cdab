"""The reference of input-dependent models: which early exit each sample takes (docs/dynamic.md).

`run_exits` runs a graph on every sample once and returns its outputs (dequantized for an integer graph, as
`passes.quantize.run_quantized` gives them) and, per sample, the early exit it takes: 0 for the whole model,
k >= 1 for the k-th exit in the order the firmware tests them (by where the head is computed), the first
confident one. This is what the firmware's `ma_last_exit` says after ma_run, so the emulator's decisions are
checked against it.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.early_exit import confident, confident_q
from mcu_attn.progress import progress
from mcu_attn.reference.interpreter import run
from mcu_attn.reference.qmath import dequantize, quantize

EXIT_OPS = ("EarlyExit", "QEarlyExit")


def exit_nodes(graph: Graph) -> list[Node]:
    """The early-exit nodes in the order the firmware tests them (where their head is computed)."""
    order = {out: index for index, node in enumerate(graph.nodes) for out in node.outputs}
    return sorted((n for n in graph.nodes if n.op in EXIT_OPS), key=lambda n: order.get(n.inputs[1], -1))


def taken(node: Node, early: np.ndarray) -> bool:
    if node.op == "QEarlyExit":
        return confident_q(early, node.attrs["gap_table"], node.attrs["bound"])
    return confident(early, float(node.attr("threshold", 1.0)))


def run_exits(graph: Graph, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The output of `graph` for every sample (given in the graph's input dtype) and the exit each takes (int
    [N], 0: none)."""
    nodes = exit_nodes(graph)
    outputs, exits = [], []
    with progress("reference with early exits", total=len(samples), unit="samples") as advance:
        for sample in samples:
            values = run(graph, {graph.inputs[0]: sample}, keep={n.inputs[1] for n in nodes})
            outputs.append(values[graph.outputs[0]])
            exits.append(next((k + 1 for k, n in enumerate(nodes) if taken(n, values[n.inputs[1]])), 0))
            advance()
    return np.stack(outputs), np.array(exits, np.int64)


def run_float_exits(graph: Graph, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`run_exits` on float samples: quantized first for an integer graph, its outputs dequantized (as
    passes.quantize.run_quantized gives them)."""
    source, sink = graph.type(graph.inputs[0]).quant, graph.type(graph.outputs[0]).quant
    if source is not None:
        samples = quantize(samples, source.scale[0], source.zero_point[0]).astype(np.int8)
    outputs, exits = run_exits(graph, samples)
    return (outputs if sink is None else dequantize(outputs, sink.scale[0], sink.zero_point[0])), exits
