"""Token ids as model inputs: embedding lookups become `Embedding` ops and id inputs become int32.

1. `Gather(table, ids)` along axis 0 of a constant table by run-time integer indices is an embedding lookup:
   `Embedding(ids, table)` (ir/ops/embedding.py), with the ids first like every other op's activation.
2. A graph input of int64 or int32 ids that only embedding lookups read is retyped int32: the firmware's
   `ma_run` takes `int32_t` ids (no vocabulary comes near 2^31), and data files of int64 ids are checked to fit
   (data.check_stack).
"""

from __future__ import annotations

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.types import TensorType
from mcu_attn.passes.manager import PassResult

ID_DTYPES = ("int64", "int32")


class EmbeddingLookup:
    name = "embedding-lookup"
    why = "a Gather of a constant table by token ids is one embedding lookup (a table in flash), int32 ids in"

    def run(self, graph: Graph, ctx) -> PassResult:
        lookups = 0
        for node in graph.nodes:
            if (node.op == "Gather" and int(node.attr("axis", 0)) % max(len(graph.shape(node.inputs[0])), 1) == 0
                    and graph.is_const(node.inputs[0]) and not graph.is_const(node.inputs[1])
                    and graph.type(node.inputs[1]).dtype in ID_DTYPES):
                graph.insert_before(node, [Node("Embedding", [node.inputs[1], node.inputs[0]], list(node.outputs),
                                                {}, node.name)])
                graph.remove([node])
                lookups += 1
        narrowed = 0
        for name in graph.inputs:
            readers = graph.consumers(name)
            if (graph.type(name).dtype == "int64" and readers
                    and all(r.op == "Embedding" and r.inputs[0] == name for r in readers)):
                graph.types[name] = TensorType("int32", graph.shape(name))
                narrowed += 1
        return PassResult(lookups + narrowed > 0, {"embeddings": lookups, "int32_inputs": narrowed})
