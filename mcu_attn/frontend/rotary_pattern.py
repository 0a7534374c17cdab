"""Recognise rotary position embeddings on head-split q/k and move them before the head split as one `Rotary`.

Exporters spell Llama's RoPE on t [1, H, S, D] (q or k after Reshape/Transpose) as
    y = t * cos + concat(-t[..., D/2:], t[..., :D/2]) * sin           (Mul, Slice, Slice, Neg, Concat, Mul, Add)
with cos and sin constants broadcastable to [S, D]. A candidate is an Add of two Muls by constants where one Mul
reads t and the other a Concat of a Neg; it is accepted when (1) t is a canonical head split of a root
[1, S, H*D] (its index probe: t[0, h, s, d] = root[s, h*D + d]), (2) cos and sin are the same for every head, and
(3) the candidate's own nodes, run on a random probe for t, give `ir.ops.rotary.rotary` of it. Then
    y  ->  Transpose(Reshape(Rotary(root, cos, sin), [1, S, H, D]), (0, 2, 1, 3))
so the attention pattern traces q and k through plain layout to a [S, H*D] value, as for any other model.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.frontend.layout import trace_back
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import is_kind, spec
from mcu_attn.ir.ops.rotary import rotary
from mcu_attn.ir.types import TensorType
from mcu_attn.passes.manager import PassResult

TOLERANCE = 1e-5  # float32: the same products and sums, in the same order up to one rounding each


def _const_operand(graph: Graph, node: Node) -> tuple[str, np.ndarray] | None:
    """(the run-time operand, the constant) of a binary Mul with exactly one constant input."""
    if node.op != "Mul" or len(node.inputs) != 2:
        return None
    consts = [v for v in node.inputs if graph.is_const(v)]
    others = [v for v in node.inputs if not graph.is_const(v)]
    return (others[0], graph.const(consts[0])) if len(consts) == 1 and len(others) == 1 else None


def _per_position(table: np.ndarray, seq: int, dim: int) -> np.ndarray | None:
    """The [S, D] table a constant broadcastable to [1, H, S, D] holds, if every head shares it."""
    try:
        full = np.broadcast_to(table, np.broadcast_shapes(table.shape, (seq, dim)))
    except ValueError:
        return None
    full = full.reshape(-1, seq, dim)
    return None if (full != full[:1]).any() else full[0].astype(np.float32)


def _region(graph: Graph, source: str, result: str) -> list[Node] | None:
    """The nodes between `source` and `result` (in graph order), if they compute result from source alone."""
    nodes, stack, seen = [], [result], set()
    while stack:
        value = stack.pop()
        node = graph.producer(value)
        if value == source or node is None or id(node) in seen:
            continue
        if len(nodes) > 12:
            return None
        seen.add(id(node))
        nodes.append(node)
        stack.extend(v for v in node.inputs if v and not graph.is_const(v))
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    nodes.sort(key=lambda n: order[id(n)])
    return nodes if graph.is_private(nodes, result) else None


def _evaluate(graph: Graph, nodes: list[Node], source: str, probe: np.ndarray, result: str) -> np.ndarray | None:
    values = {source: probe}
    for node in nodes:
        args = []
        for v in node.inputs:
            if v and not graph.is_const(v) and v not in values:
                return None
            args.append(values[v] if v in values else graph.const(v) if v else None)
        for name, out in zip(node.outputs, spec(node.op).run(node, args)):
            values[name] = out
    return values.get(result)


class FuseRotary:
    name = "fuse-rotary"
    why = "rotary embeddings on head-split q/k are one op before the head split, so attention sees its projection"

    def run(self, graph: Graph, ctx) -> PassResult:
        fused = 0
        for node in graph.nodes:
            if node.op == "Add" and graph.producer(node.outputs[0]) is node:
                fused += self._try(graph, node)
        return PassResult(fused > 0, {"rotary": fused})

    def _try(self, graph: Graph, add: Node) -> int:
        muls = [graph.producer(v) for v in add.inputs]
        operands = [_const_operand(graph, m) if m is not None else None for m in muls]
        if None in operands:
            return 0
        for (t, cos), (rotated, sin) in (operands, operands[::-1]):
            producer = graph.producer(rotated)
            if producer is None or producer.op != "Concat" or graph.shape(t) != graph.shape(add.outputs[0]):
                continue
            found = self._rewrite(graph, add, t, cos, sin)
            if found:
                return 1
        return 0

    @staticmethod
    def _rewrite(graph: Graph, add: Node, t: str, cos: np.ndarray, sin: np.ndarray) -> bool:
        shape = graph.shape(t)
        if len(shape) != 4 or shape[0] != 1 or shape[-1] % 2:
            return False
        _, heads, seq, dim = shape
        chain = trace_back(graph, t)
        root_shape = graph.shape(chain.root)
        if (chain.scale != 1.0 or not all(is_kind(n.op, "layout") for n in chain.nodes)
                or root_shape != (1, seq, heads * dim)):
            return False
        index = chain.probe(graph).reshape(heads, seq, dim)
        h, s, d = np.meshgrid(np.arange(heads), np.arange(seq), np.arange(dim), indexing="ij")
        if not np.array_equal(index, s * heads * dim + h * dim + d):
            return False
        cos_table, sin_table = _per_position(cos, seq, dim), _per_position(sin, seq, dim)
        nodes = _region(graph, t, add.outputs[0])
        if cos_table is None or sin_table is None or nodes is None:
            return False
        probe = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        got = _evaluate(graph, nodes, t, probe, add.outputs[0])
        flat = probe.transpose(0, 2, 1, 3).reshape(1, seq, heads * dim)
        expected = rotary(flat, cos_table, sin_table, heads=heads).reshape(1, seq, heads, dim).transpose(0, 2, 1, 3)
        if got is None or got.shape != expected.shape or np.abs(got - expected).max() > TOLERANCE:
            return False
        dtype = graph.type(t).dtype
        rotated = graph.fresh(f"{add.outputs[0]}_rotary")
        split = graph.fresh(f"{add.outputs[0]}_heads")
        graph.types[rotated] = TensorType(dtype, root_shape)
        graph.types[split] = TensorType(dtype, (1, seq, heads, dim))
        tables = [graph.add_const("rope_cos", cos_table), graph.add_const("rope_sin", sin_table)]
        new = [Node("Rotary", [chain.root, *tables], [rotated], {"heads": heads}, add.name),
               Node("Reshape", [rotated, graph.add_const("shape", np.array([1, seq, heads, dim], np.int64))], [split],
                    {}, split),
               Node("Transpose", [split], list(add.outputs), {"perm": (0, 2, 1, 3)}, f"{add.name}_transpose")]
        graph.insert_before(add, new)
        graph.remove([add])
        graph.prune_unused()
        return True
