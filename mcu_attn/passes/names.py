"""Readable layer names for nodes that an exporter named with a counter (`val_74`, `node_MatMul_12`).

Node names become the layer names of `inspect`, `build` and `simulate` reports and the C symbols of the
generated layer functions (`ma_layer_NNN_<name>`), so `val_84` tells a user nothing about where the time goes.
PyTorch's dynamo exporter names values and nodes by counters; the legacy exporter (`/blocks/blocks.0/attn`),
tf2onnx and hand-written graphs give names that say where a node sits, and those are kept.

A node whose name is an exporter counter is named by its place in the transformer:
- attention block k (the k-th Attention op in graph order): `block{k}.attention`;
- the Linear ops that produce its query, key and value (through layout ops only) and the Linear that reads its
  output: `block{k}.q_proj`, `block{k}.k_proj`, `block{k}.v_proj`, `block{k}.out_proj`;
- any other node: `{scope}.{op}{i}`, where the scope is `block{k}` after attention block k and `input` before
  the first one, and i counts that op in its scope (`block0.linear0`, `block1.layernormalization1`).
A name already in use gets a numeric suffix.
"""

from __future__ import annotations

import re

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import is_kind
from mcu_attn.passes.manager import PassResult

COUNTER_NAME = re.compile(r"(val|node_\w+?)_\d+|node_\w+")


def _through_layout(graph: Graph, value: str) -> Node | None:
    """The producer of `value`, looking through layout ops (reshapes, transposes)."""
    node = graph.producer(value)
    while node is not None and is_kind(node.op, "layout"):
        node = graph.producer(node.inputs[0])
    return node


def _readers_through_layout(graph: Graph, value: str) -> list[Node]:
    found = []
    for node in graph.consumers(value):
        found += _readers_through_layout(graph, node.outputs[0]) if is_kind(node.op, "layout") else [node]
    return found


def _attention_roles(graph: Graph) -> dict[int, str]:
    """id(node) -> its role name for the projections around each attention block."""
    roles: dict[int, str] = {}
    blocks = [n for n in graph.nodes if n.op == "Attention"]
    for index, block in enumerate(blocks):
        for role, value in zip(("q_proj", "k_proj", "v_proj"), block.inputs[:3]):
            producer = _through_layout(graph, value)
            if producer is not None and producer.op == "Linear":
                roles.setdefault(id(producer), f"block{index}.{role}")
        readers = _readers_through_layout(graph, block.outputs[0])
        if len(readers) == 1 and readers[0].op == "Linear":
            roles.setdefault(id(readers[0]), f"block{index}.out_proj")
    return roles


class ReadableNames:
    name = "readable-names"
    why = "exporter counters (val_74) say nothing in reports and C symbols; place in the model does"

    def run(self, graph: Graph, ctx) -> PassResult:
        roles = _attention_roles(graph)
        taken = {node.name for node in graph.nodes}
        counts: dict[tuple[str, str], int] = {}
        block, renamed = -1, 0
        for node in graph.nodes:
            if node.op == "Attention":
                block += 1
            if not COUNTER_NAME.fullmatch(node.name):
                continue
            scope = f"block{block}" if block >= 0 else "input"
            name = roles.get(id(node))
            if name is None and node.op == "Attention":
                name = f"{scope}.attention"
            if name is None:
                kind = node.op.lower()
                index = counts.get((scope, kind), 0)
                counts[(scope, kind)] = index + 1
                name = f"{scope}.{kind}{index}"
            unique, suffix = name, 1
            while unique in taken:
                unique, suffix = f"{name}_{suffix}", suffix + 1
            taken.add(unique)
            node.name = unique
            renamed += 1
        return PassResult(renamed > 0, {"renamed": renamed})
