"""Index probes through layout-only chains.

Exporters spell "split the projection into heads" in many ways (Reshape+Transpose, Unsqueeze/Transpose/Squeeze
over a packed [S, 3E] in-projection with Gather or Slice, seq-first [S, B*H, D] views, ...). Instead of
matching each spelling, we follow the chain of layout ops (ops that only move elements) from a root tensor to
the value a MatMul reads, run the chain on a probe `arange(size)` shaped like the root, and read off which root
element lands where. Scalar Mul/Div by constants on the way are collected as a scale: they commute with
layout. Every attention recognised this way is then checked element by element against the canonical head
layout, so a chain that only looks similar is never fused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import is_kind, spec


@dataclass
class Chain:
    """root --steps--> value; each step is (node, the output of it the chain continues with); `scale` is the
    product of the scalar factors met on the way."""

    root: str
    value: str
    steps: list[tuple[Node, str]] = field(default_factory=list)
    scale: float = 1.0

    @property
    def nodes(self) -> list[Node]:
        return [node for node, _ in self.steps]

    def probe(self, graph: Graph) -> np.ndarray:
        """For every element of `value`, the flat index of the root element it came from."""
        current_name = self.root
        current = np.arange(graph.type(self.root).size, dtype=np.int64).reshape(graph.shape(self.root))
        for node, out in self.steps:
            if is_kind(node.op, "layout"):
                args = [current if v == current_name else graph.const(v) for v in node.inputs]
                current = spec(node.op).run(node, args)[node.outputs.index(out)]
            current_name = out  # a scalar Mul/Div moves nothing
        return current


def scalar(graph: Graph, value: str) -> float | None:
    """The value of a one-element constant as a float; None for anything else."""
    if graph.is_const(value) and graph.const(value).size == 1:
        return float(graph.const(value).reshape(()))
    return None


def _is_layout(graph: Graph, node: Node, source: str) -> bool:
    if not is_kind(node.op, "layout") or node.inputs[0] != source:
        return False
    return all(graph.is_const(v) for v in node.inputs[1:] if v)


def trace_back(graph: Graph, value: str) -> Chain:
    """Follow producers of `value` through layout ops and scalar Mul/Div to the first other producer."""
    chain = Chain(root=value, value=value)
    steps: list[tuple[Node, str]] = []
    current = value
    while True:
        node = graph.producer(current)
        if node is None:
            break
        source = node.inputs[0] if node.inputs else ""
        if _is_layout(graph, node, source):
            steps.append((node, current))
            current = source
            continue
        if node.op in ("Mul", "Div") and len(node.inputs) == 2:
            factor_name = node.inputs[1] if not graph.is_const(node.inputs[0]) else node.inputs[0]
            other = node.inputs[0] if factor_name == node.inputs[1] else node.inputs[1]
            factor = scalar(graph, factor_name)
            if factor is not None and not graph.is_const(other) and (node.op == "Mul" or other == node.inputs[0]):
                chain.scale *= factor if node.op == "Mul" else 1.0 / factor
                steps.append((node, current))
                current = other
                continue
        break
    chain.root = current
    chain.steps = list(reversed(steps))
    return chain


def trace_forward(graph: Graph, value: str) -> Chain:
    """Follow single consumers of `value` through layout ops for as long as nobody else reads the values."""
    chain = Chain(root=value, value=value)
    current = value
    while current not in graph.outputs:
        readers = graph.consumers(current)
        if len(readers) != 1 or not _is_layout(graph, readers[0], current) or len(readers[0].outputs) != 1:
            break
        chain.steps.append((readers[0], readers[0].outputs[0]))
        current = readers[0].outputs[0]
    chain.value = current
    return chain


def squeeze_leading(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop unit dimensions (batch 1 in any position)."""
    return tuple(d for d in shape if d != 1)
