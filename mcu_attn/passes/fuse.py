"""Fusion passes on the integer graph: a QLinear and the one op reading its output become one kernel call whose
requantizing epilogue does that op's work (docs/integer-kernels.md, "Fused linears").

- `FuseLinearTable`: QLinear -> QTable (GELU after an FFN's first linear) is QLinearTable, bit for bit the same.
- `FuseLinearResidual`: QLinear -> QAdd with a residual of the output's shape (the attention's output projection
  and an FFN's second linear, added back to the residual stream) is QLinearAdd: one requantization of
  acc + residual instead of two int8 roundings and TFLite's three requantizations; a contract of its own,
  more accurate than the pair it replaces (`benchmarks/contract_accuracy.py` measures both).
Either needs the QLinear's output to be read by that op alone and not to be a graph output.
"""

from __future__ import annotations

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.linear_epilogue import fuse_residual, fuse_table
from mcu_attn.passes.manager import PassResult


def _private_linear(graph: Graph, value: str) -> Node | None:
    """The QLinear producing `value` when one node reads `value` and it is no graph output."""
    producer = graph.producer(value)
    if producer is None or producer.op != "QLinear" or value in graph.outputs or len(graph.consumers(value)) != 1:
        return None
    return producer


class FuseLinearTable:
    name = "fuse-linear-table"
    why = "a table after a linear (GELU) costs a pass over memory; the linear's epilogue can look it up"

    def run(self, graph: Graph, ctx) -> PassResult:
        fused = 0
        for node in graph.nodes:
            linear = _private_linear(graph, node.inputs[0]) if node.op == "QTable" else None
            if linear is not None:
                graph.insert_before(linear, [fuse_table(linear, node)])
                graph.remove([linear, node])
                fused += 1
        return PassResult(fused > 0, {"fused": fused})


class FuseLinearResidual:
    name = "fuse-linear-residual"
    why = ("a residual add after a linear costs a pass over memory and three requantizations; the linear's "
           "epilogue adds it with one")

    def run(self, graph: Graph, ctx) -> PassResult:
        fused = 0
        for node in graph.nodes:
            if node.op != "QAdd":
                continue
            for position in (0, 1):
                linear = _private_linear(graph, node.inputs[position])
                other = node.inputs[1 - position]
                if linear is not None and graph.shape(other) == graph.shape(node.outputs[0]) \
                        and graph.shape(linear.outputs[0]) == graph.shape(node.outputs[0]) \
                        and graph.type(other).quant is not None:
                    graph.insert_before(node, [fuse_residual(graph, linear, node)])
                    graph.remove([linear, node])
                    fused += 1
                    break
        return PassResult(fused > 0, {"fused": fused})
