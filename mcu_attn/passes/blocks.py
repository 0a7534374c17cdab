"""The transformer structure the input-dependent passes need (token pruning, early exit, streaming).

- Blocks are the fused `Attention` nodes in order: block b is the b-th attention and what follows it up to the
  next one.
- The residual stream a block starts from (`block_input`) is the value its attention's query projection reads,
  behind a pre-norm LayerNorm when there is one; a block's output is the next block's input, and after the last
  block, the value the class-token Gather reads, behind the final LayerNorm.
- The class token (`class_token`) is the one sequence position the output reads: a Gather of a constant scalar
  index along the sequence axis of a [1, S, E] value ([1, E] out). Models that pool every token have none.
- The residual after an attention (`attention_residual`): the Add of the attention's output projection (a
  Linear) to the stream; pruning after it leaves the block's MLP to run on fewer tokens.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import infer_types
from mcu_attn.ir.types import TensorType


def attention_nodes(graph: Graph) -> list[Node]:
    return [node for node in graph.nodes if node.op == "Attention"]


def _behind_norm(graph: Graph, value: str) -> str:
    producer = graph.producer(value)
    return producer.inputs[0] if producer is not None and producer.op == "LayerNormalization" else value


def block_input(graph: Graph, attention: Node) -> str:
    """The residual-stream value the block of `attention` starts from."""
    projection = graph.producer(attention.inputs[0])
    if projection is None or projection.op != "Linear":
        raise UserError(f"attention '{attention.name}': its query is not a linear projection of the residual "
                        f"stream, so the block structure is not recognised")
    return _behind_norm(graph, projection.inputs[0])


def class_token(graph: Graph) -> tuple[Node, int]:
    """The Gather reading the class token on the way to the output, and the token's position (>= 0)."""
    found = []
    for node in graph.nodes:
        if node.op != "Gather" or not graph.is_const(node.inputs[1]) or len(graph.shape(node.inputs[0])) != 3:
            continue
        index, seq = np.asarray(graph.const(node.inputs[1])), graph.shape(node.inputs[0])[1]
        if index.size == 1 and index.ndim == 0 and int(node.attr("axis", 0)) in (1, -2):
            found.append((node, int(index) % seq))
    if len(found) != 1:
        raise UserError("the model's output does not read one class token (a Gather of one sequence position): "
                        f"found {len(found)}; token pruning and early exit need one")
    return found[0]


def block_output(graph: Graph, index: int) -> str:
    """The residual stream after block `index` (0-based): the next block's input, or after the last block the
    value the class token is read from (behind the final LayerNorm)."""
    blocks = attention_nodes(graph)
    if not 0 <= index < len(blocks):
        raise UserError(f"block {index}: the model has {len(blocks)} attention blocks (0 to {len(blocks) - 1})")
    if index + 1 < len(blocks):
        return block_input(graph, blocks[index + 1])
    return _behind_norm(graph, class_token(graph)[0].inputs[0])


def attention_residual(graph: Graph, attention: Node) -> Node:
    """The Add that puts the attention's output projection back on the residual stream."""
    consumers = graph.consumers(attention.outputs[0])
    if len(consumers) == 1 and consumers[0].op == "Linear":
        adds = graph.consumers(consumers[0].outputs[0])
        if len(adds) == 1 and adds[0].op == "Add":
            return adds[0]
    raise UserError(f"attention '{attention.name}': no output projection added to the residual stream after it")


def position(graph: Graph, node: Node) -> int:
    for index, candidate in enumerate(graph.nodes):
        if candidate is node:
            return index
    raise KeyError(node.name)


def retype(graph: Graph, nodes: list[Node], flag: str, depends_on: str) -> None:
    """Infer the output types of `nodes` again after a rewrite changed a sequence length, keeping the
    quantization parameters a value already has; a node that cannot follow is a one-line error for `flag`."""
    for node in nodes:
        try:
            types = infer_types(graph, node)
        except (ValueError, IndexError) as err:
            raise UserError(f"{flag}: node '{node.name}' ({node.op}) depends on {depends_on} "
                            f"({str(err).splitlines()[0]})") from None
        for name, ttype in zip(node.outputs, types):
            if name:
                known = graph.types.get(name)
                graph.types[name] = TensorType(ttype.dtype, ttype.shape, known.quant if known else None)
