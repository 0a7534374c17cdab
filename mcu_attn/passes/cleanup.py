"""Cleanup passes: drop no-ops, canonicalise constant-weight matrix products into `Linear`, remove dead code."""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.types import QuantParams, TensorType
from mcu_attn.passes.manager import PassResult


class DropIdentities:
    name = "drop-identities"
    why = ("Identity, Casts to the type a value has, shape-preserving Reshape, Reshape-of-Reshape and Transposes "
           "of unit axes move no data and hide patterns")

    def run(self, graph: Graph, ctx) -> PassResult:
        dropped = 0
        for node in graph.nodes:
            if node.op == "Transpose" and _moves_only_unit_dims(graph.shape(node.inputs[0]), node.attr("perm")):
                shape = graph.add_const("shape", np.array(graph.shape(node.outputs[0]), np.int64))
                graph.insert_before(node, [Node("Reshape", [node.inputs[0], shape], list(node.outputs), {}, node.name)])
                graph.remove([node])
        for node in graph.nodes:
            if node.op == "Reshape":
                source = graph.producer(node.inputs[0])
                if source is not None and source.op == "Reshape":
                    # the outer shape may copy (0) or infer (-1) dims of the value it skips: made literal first
                    literal = graph.add_const("shape", np.array(graph.shape(node.outputs[0]), np.int64))
                    node.inputs[:2] = [source.inputs[0], literal]
                    node.attrs["allowzero"] = 1
                    graph.touch()
            no_op = node.op == "Identity" or (
                node.op == "Reshape" and graph.shape(node.inputs[0]) == graph.shape(node.outputs[0])) or (
                node.op == "Cast" and node.attr("to") == graph.type(node.inputs[0]).dtype)
            if no_op and node.outputs[0] not in graph.outputs:
                graph.remove([node])
                graph.replace_uses(node.outputs[0], node.inputs[0])
                dropped += 1
        return PassResult(dropped > 0, {"dropped": dropped})


def _moves_only_unit_dims(shape: tuple[int, ...], perm) -> bool:
    """A transpose that keeps the order of the non-unit axes moves no element: it is a reshape."""
    perm = list(range(len(shape)))[::-1] if perm is None else [int(p) for p in perm]
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


class DeadCode:
    name = "dead-code"
    why = "values nobody reads cost flash and time"

    def run(self, graph: Graph, ctx) -> PassResult:
        removed = graph.prune_unused()
        return PassResult(removed > 0, {"removed": removed})


class CanonicalLinear:
    name = "canonical-linear"
    why = "MatMul/Gemm by a constant weight, with or without a bias Add, is one fully connected layer"

    def run(self, graph: Graph, ctx) -> PassResult:
        fused = 0
        for node in graph.nodes:
            weight = _constant_weight(graph, node)
            if weight is None:
                continue
            bias = _constant_bias(graph, node)
            x = node.inputs[0]
            inputs = [x, graph.add_const(f"{node.outputs[0]}_w", weight, _weight_type(graph, node, weight))]
            if bias is not None:
                inputs.append(graph.add_const(f"{node.outputs[0]}_b", bias))
            out = node.outputs[0]
            graph.insert_before(node, [Node("Linear", inputs, [out], {}, node.name)])
            graph.remove([node])
            fused += 1
        for node in graph.nodes:
            fused += _absorb_bias(graph, node)
        return PassResult(fused > 0, {"linear": fused})


def _constant_weight(graph: Graph, node: Node) -> np.ndarray | None:
    """The [in, out] weight of a MatMul/Gemm whose right operand is a 2-D constant, or None."""
    if node.op == "MatMul" and graph.is_const(node.inputs[1]) and graph.const(node.inputs[1]).ndim == 2:
        return graph.const(node.inputs[1])
    if node.op != "Gemm" or not graph.is_const(node.inputs[1]) or node.attr("transA", 0):
        return None
    weight = graph.const(node.inputs[1])
    weight = weight.T if node.attr("transB", 0) else weight
    return (weight * np.float32(node.attr("alpha", 1.0))).astype(weight.dtype)


def _weight_type(graph: Graph, node: Node, weight: np.ndarray) -> TensorType:
    """The [in, out] weight's type, keeping a pre-quantized model's own scales (transposed and scaled by
    Gemm's transB and alpha where those apply)."""
    quant = graph.type(node.inputs[1]).quant
    if quant is not None and node.op == "Gemm":
        axis = quant.axis if quant.axis is None or not node.attr("transB", 0) else 1 - quant.axis
        alpha = abs(float(node.attr("alpha", 1.0)))
        quant = QuantParams(tuple(s * alpha for s in quant.scale), quant.zero_point, axis, quant.bits)
    return TensorType(TensorType.of(weight).dtype, weight.shape, quant)


def _constant_bias(graph: Graph, node: Node) -> np.ndarray | None:
    if node.op != "Gemm" or len(node.inputs) < 3 or not node.inputs[2]:
        return None
    bias = graph.const(node.inputs[2]) if graph.is_const(node.inputs[2]) else None
    n = graph.shape(node.outputs[0])[-1]
    if bias is None or bias.size not in (1, n) or (bias.ndim == 2 and bias.shape[0] != 1):
        raise ValueError(f"Gemm {node.name}: bias of shape {bias.shape if bias is not None else '?'} unsupported")
    return np.broadcast_to(bias.reshape(-1) * np.float32(node.attr("beta", 1.0)), (n,)).astype(bias.dtype).copy()


def _absorb_bias(graph: Graph, node: Node) -> int:
    """Linear without bias followed by Add of a constant vector over the last axis: one Linear with bias."""
    if node.op != "Linear" or len(node.inputs) != 2:
        return 0
    readers = graph.consumers(node.outputs[0])
    if len(readers) != 1 or readers[0].op != "Add" or node.outputs[0] in graph.outputs:
        return 0
    add = readers[0]
    other = add.inputs[1] if add.inputs[0] == node.outputs[0] else add.inputs[0]
    n = graph.shape(node.outputs[0])[-1]
    if not graph.is_const(other) or graph.shape(add.outputs[0]) != graph.shape(node.outputs[0]):
        return 0
    bias = graph.const(other)
    if bias.size != n or bias.shape[-1] != n:
        return 0
    node.inputs.append(graph.add_const(f"{add.outputs[0]}_b", bias.reshape(n).copy()))
    graph.remove([add])
    graph.replace_uses(add.outputs[0], node.outputs[0])
    return 1


class LinearOverLeadingDims:
    name = "linear-over-leading-dims"
    why = ("Keras Dense and others flatten [1,S,K] to [S,K] around a MatMul; Linear maps any leading dims, "
           "so the Reshapes go and the bias Add after them can be absorbed")

    def run(self, graph: Graph, ctx) -> PassResult:
        lifted = 0
        for node in graph.nodes:
            source = graph.producer(node.inputs[0]) if node.op == "Linear" else None
            if source is None or source.op != "Reshape":
                continue
            original = graph.shape(source.inputs[0])
            if not original or original[-1] != graph.shape(node.inputs[0])[-1]:
                continue
            out = node.outputs[0]
            lifted_out = graph.fresh(f"{out}_lifted")
            graph.types[lifted_out] = TensorType(graph.type(out).dtype, original[:-1] + (graph.shape(out)[-1],),
                                                 graph.type(out).quant)  # the same values: the same scale
            shape = graph.add_const("shape", np.array(graph.shape(out), np.int64))
            node.inputs[0] = source.inputs[0]
            node.outputs[0] = lifted_out
            graph.insert_after(node, [Node("Reshape", [lifted_out, shape], [out], {}, f"{out}_shape")])
            lifted += 1
        if lifted:
            DropIdentities().run(graph, ctx)
            graph.prune_unused()
            for node in graph.nodes:
                lifted += _absorb_bias(graph, node)
        return PassResult(lifted > 0, {"lifted": lifted})

