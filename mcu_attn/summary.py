"""What `inspect` reports about an imported model: interface, size, work, ops and attention blocks."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mcu_attn.ir.graph import Graph
from mcu_attn.ir.ops import node_macs, spec
from mcu_attn.ir.ops.attention import node_pattern


def count_params(graph: Graph) -> int:
    """Learned numbers: the constants at the inputs each op's spec names as parameters, floating ones, and
    integer ones of ops whose weights are stored as integers (shape, axis and index constants do not count)."""
    seen: set[str] = set()
    for node in graph.nodes:
        op_spec = spec(node.op)
        for position, value in enumerate(node.inputs):
            if value and graph.is_const(value) and op_spec.is_param(position):
                if graph.const(value).dtype.kind == "f" or op_spec.integer_params:
                    seen.add(value)
    return int(sum(graph.const(v).size for v in seen))


def attention_blocks(graph: Graph) -> list[dict[str, Any]]:
    blocks = []
    for node in graph.nodes:
        if node.op != "Attention":
            continue
        pattern = node_pattern(node)
        blocks.append({
            "name": node.name,
            "heads": int(node.attrs["heads"]),
            "head_dim": int(node.attrs["head_dim"]),
            "seq_len": int(graph.shape(node.inputs[0])[-2]),
            "keys": int(graph.shape(node.inputs[1])[-2]),  # < seq_len: keys projected along the sequence (Linformer)
            "window": pattern.window or None,
            "causal": pattern.causal,
            "global_tokens": pattern.global_tokens,
            "pattern": pattern.describe(),
            "scale": float(node.attr("scale", 1.0)),
            "mask": len(node.inputs) > 3,
        })
    return blocks


def summarize(graph: Graph) -> dict[str, Any]:
    def io(names: list[str]) -> list[dict[str, Any]]:
        return [{"name": n, "dtype": graph.type(n).dtype, "shape": list(graph.shape(n))} for n in names]

    return {
        "name": graph.name,
        "inputs": io(graph.inputs),
        "outputs": io(graph.outputs),
        "params": count_params(graph),
        "macs": int(sum(node_macs(graph, n) for n in graph.nodes)),
        "ops": dict(sorted(Counter(n.op for n in graph.nodes).items())),
        "attention": attention_blocks(graph),
    }
