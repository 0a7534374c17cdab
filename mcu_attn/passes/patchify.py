"""Vision stems: a patch-embedding convolution is the Linear it is, and the layout it leaves behind cancels.

`PatchifyConv`: a Conv whose kernel equals its stride, without padding, dilation or groups, over an input that
the patches tile exactly, computes one dot product per patch: with x [1, C, H, W] and kernel k_h x k_w,
    patches = Transpose(Reshape(x, [1, C, H/k_h, k_h, W/k_w, k_w]), (0, 2, 4, 1, 3, 5)) -> [1, P, C*k_h*k_w]
    y = Linear(patches, W [O, C*k_h*k_w]ᵀ, b) -> [1, P, O], then Transpose/Reshape back to the conv's [1, O, h, w]
(1-D: [1, C, L] in patches of k). Vision transformers then flatten and transpose [1, O, P] to [1, P, O]: the two
transposes cancel in `MergeLayoutChains`, leaving the Linear on the patches, what the fast Linear kernels run.

`MergeLayoutChains`: a chain of layout ops (constant side inputs) whose index probe from its root is every root
element in the identity order moves nothing: its result is a Reshape of the root (a view), and the chain goes if nobody else reads it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mcu_attn.frontend.layout import trace_back
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import is_kind
from mcu_attn.ir.ops.conv import node_geometry
from mcu_attn.ir.types import TensorType
from mcu_attn.passes.manager import PassResult


def _is_patchify(graph: Graph, node: Node) -> bool:
    if node.op != "Conv" or not graph.is_const(node.inputs[1]) or graph.shape(node.inputs[0])[0] != 1:
        return False
    if len(node.inputs) > 2 and node.inputs[2] and not graph.is_const(node.inputs[2]):
        return False
    try:
        g = node_geometry(graph, node)
    except ValueError:
        return False
    return (g["groups"] == 1 and (g["dil_h"], g["dil_w"]) == (1, 1) and (g["pad_top"], g["pad_left"]) == (0, 0)
            and (g["k_h"], g["k_w"]) == (g["stride_h"], g["stride_w"])
            and (g["out_h"] * g["k_h"], g["out_w"] * g["k_w"]) == (g["in_h"], g["in_w"]))


class PatchifyConv:
    name = "patchify-conv"
    why = "a convolution whose kernel is its stride (a vision transformer's patch embedding) is a Linear over patches"

    def run(self, graph: Graph, ctx) -> PassResult:
        rewritten = 0
        for node in graph.nodes:
            if _is_patchify(graph, node):
                self._rewrite(graph, node)
                rewritten += 1
        return PassResult(rewritten > 0, {"patch_linears": rewritten})

    @staticmethod
    def _rewrite(graph: Graph, node: Node) -> None:
        g = node_geometry(graph, node)
        x, out = node.inputs[0], node.outputs[0]
        dtype = graph.type(x).dtype
        weight = graph.const(node.inputs[1])
        patches, taps, channels = g["out_h"] * g["out_w"], int(np.prod(weight.shape[1:])), g["out_c"]
        one_d = len(graph.shape(x)) == 3
        split = ((1, g["in_c"], g["out_w"], g["k_w"]) if one_d
                 else (1, g["in_c"], g["out_h"], g["k_h"], g["out_w"], g["k_w"]))
        perm = (0, 2, 1, 3) if one_d else (0, 2, 4, 1, 3, 5)
        nodes: list[Node] = []

        def add(op: str, inputs: list[str], shape: tuple[int, ...], attrs: dict | None = None, name: str = "") -> str:
            value = name or graph.fresh(f"{out}_patch")
            if not name:
                graph.types[value] = TensorType(dtype, shape)
            nodes.append(Node(op, inputs, [value], attrs or {}, f"{node.name}_{op.lower()}{len(nodes)}"))
            return value

        def shape_const(shape: tuple[int, ...]) -> str:
            return graph.add_const("shape", np.array(shape, np.int64))

        grid = add("Reshape", [x, shape_const(split)], split)
        grid = add("Transpose", [grid], tuple(split[p] for p in perm), {"perm": perm})
        rows = add("Reshape", [grid, shape_const((1, patches, taps))], (1, patches, taps))
        quant = graph.type(node.inputs[1]).quant  # a pre-quantized model's per-output-channel scales: now columns
        if quant is not None and quant.axis is not None:
            quant = replace(quant, axis=1)
        matrix = np.ascontiguousarray(weight.reshape(channels, -1).T)
        inputs = [rows, graph.add_const(f"{node.name}_w", matrix, TensorType(TensorType.of(matrix).dtype, matrix.shape,
                                                                              quant))]
        if len(node.inputs) > 2 and node.inputs[2]:
            inputs.append(node.inputs[2])
        linear = add("Linear", inputs, (1, patches, channels))
        nodes[-1].name = node.name
        columns = add("Transpose", [linear], (1, channels, patches), {"perm": (0, 2, 1)})
        add("Reshape", [columns, shape_const(graph.shape(out))], graph.shape(out), name=out)
        graph.insert_before(node, nodes)
        graph.remove([node])


class MergeLayoutChains:
    name = "merge-layout-chains"
    why = "layout chains that put every element back where it was (transposes that cancel) are views"

    def run(self, graph: Graph, ctx) -> PassResult:
        merged = 0
        for node in graph.nodes:
            if not is_kind(node.op, "layout") or len(node.outputs) != 1:
                continue
            chain = trace_back(graph, node.outputs[0])
            if len(chain.steps) < 2 or chain.scale != 1.0 or not all(is_kind(n.op, "layout") for n in chain.nodes):
                continue
            probe = chain.probe(graph).reshape(-1)
            if probe.size != graph.type(chain.root).size or not np.array_equal(probe, np.arange(probe.size)):
                continue
            value = node.outputs[0]
            shape = graph.add_const("shape", np.array(graph.shape(value), np.int64))
            graph.insert_before(node, [Node("Reshape", [chain.root, shape], [value], {}, node.name)])
            graph.remove([node])
            merged += 1
        if merged:
            graph.prune_unused()
        return PassResult(merged > 0, {"merged": merged})
