"""onnxruntime's QOperator format in the frontend: integer ops become DequantizeLinear -> float op -> QuantizeLinear,
so the next pass (prequant.AbsorbActivationQDQ) turns every activation's (scale, zero point) into a recorded
parameter and the patterns see the float model: attention, LayerNorm and GELU.

- QLinearConv, com.microsoft QLinearAdd / QLinearMul / QLinearConcat / QLinearSoftmax become Conv, Add, Mul,
  Concat, Softmax; QLinearMatMul / QGemm become MatMul / Gemm, except an isolated one (its input quantized by a
  QuantizeLinear, its output read only by DequantizeLinear or a graph output, a constant weight): that one hides
  no pattern and stays for `AbsorbPrequantized`, so its float reference keeps onnxruntime's integer product.
  An op whose scales are computed at run time stays as it is (its reference runs it).
- A constant operand is dequantized here; a weight (Conv, MatMul, Gemm) keeps the model's per-channel symmetric
  scales as its QuantParams, so the int8 build uses them; an int32 bias is dequantized with x_scale * w_scale.
- A layout op (Reshape, Transpose, ...) between a QuantizeLinear and the DequantizeLinear that reads it would
  keep the pair apart; layout moves values unchanged, so layout(Q(x)) = Q(layout(x)) exactly for per-tensor
  parameters, and the QuantizeLinear is moved after it.
Lowering changes the arithmetic only where onnxruntime's kernels round a near-tie differently from
quantize(op(dequantize(x))) (ir/ops/qoperator.py): one step, measured in tests/test_qoperator_ops.py.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import is_kind
from mcu_attn.ir.ops.qoperator import QOPERATOR_OPS
from mcu_attn.ir.types import QuantParams, TensorType
from mcu_attn.passes.manager import PassResult

# op -> (float op, positions of (value, scale, zero point) operands, position of (y_scale, y_zero_point))
OPERANDS = {
    "QLinearConv": ("Conv", ((0, 1, 2), (3, 4, 5)), (6, 7)),
    "QLinearMatMul": ("MatMul", ((0, 1, 2), (3, 4, 5)), (6, 7)),
    "QGemm": ("Gemm", ((0, 1, 2), (3, 4, 5)), (7, 8)),
    "MsQLinearAdd": ("Add", ((0, 1, 2), (3, 4, 5)), (6, 7)),
    "MsQLinearMul": ("Mul", ((0, 1, 2), (3, 4, 5)), (6, 7)),
    "MsQLinearSoftmax": ("Softmax", ((0, 1, 2),), (3, 4)),
}
KEPT_ATTRS = {"Conv": ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"), "Softmax": ("axis",),
              "Gemm": ("alpha", "transA", "transB"), "Concat": ("axis",)}


def _input(node: Node, position: int) -> str:
    return node.inputs[position] if position < len(node.inputs) else ""


def _is_island(graph: Graph, node: Node) -> bool:
    source = graph.producer(node.inputs[0])
    readers = graph.consumers(node.outputs[0])
    return (graph.is_const(node.inputs[3]) and source is not None and source.op == "QuantizeLinear"
            and all(r.op == "DequantizeLinear" for r in readers))


def _operands(node: Node) -> tuple[str, list[tuple[int, int, int]], tuple[int, int] | None]:
    if node.op == "MsQLinearConcat":
        triples = [(i, i + 1, i + 2) for i in range(2, len(node.inputs), 3)]
        return "Concat", triples, (0, 1)
    float_op, triples, output = OPERANDS[node.op]
    if node.op == "QGemm" and not _input(node, 7):
        output = None  # a QGemm without y_scale has a float output
    return float_op, list(triples), output


def _lowerable(graph: Graph, node: Node) -> bool:
    if node.op in ("QLinearMatMul", "QGemm"):
        return not _is_island(graph, node)
    if node.op == "MsQLinearSoftmax" and node.attr("opset", 13) < 13:
        rank = len(graph.shape(node.inputs[0]))
        return node.attr("axis", 1) % rank == rank - 1  # the old flattening softmax is the same over the last axis
    return node.op in QOPERATOR_OPS


class LowerQOperator:
    name = "lower-qoperator"
    why = ("QOperator models compute in integer ops that hide attention, LayerNorm and GELU: they become "
           "dequantize -> float op -> quantize, whose pairs the next pass absorbs")

    def run(self, graph: Graph, ctx) -> PassResult:
        lowered = sum(self._lower(graph, node) for node in graph.nodes
                      if node.op in OPERANDS or node.op == "MsQLinearConcat")
        moved = _move_quantizers_after_layout(graph) if lowered else 0
        if lowered:
            graph.prune_unused()
        return PassResult(lowered > 0, {"lowered": lowered, "quantizers moved": moved})

    @staticmethod
    def _lower(graph: Graph, node: Node) -> int:
        if not _lowerable(graph, node):
            return 0
        float_op, triples, output = _operands(node)
        parameters = [p for v, s, z in triples for p in (s, z)] + list(output or ())
        if not all(graph.is_const(_input(node, p)) for p in parameters if _input(node, p)):
            return 0  # scales computed at run time
        if any(np.asarray(graph.const(node.inputs[s])).size != 1 for v, s, z in triples
               if not graph.is_const(node.inputs[v])):
            return 0  # a per-axis activation scale is no per-tensor int8 activation
        new_nodes: list[Node] = []
        floats = [_dequantized(graph, node, triple, weight=index == 1 and float_op in ("Conv", "MatMul", "Gemm"),
                               new_nodes=new_nodes) for index, triple in enumerate(triples)]
        bias = _bias(graph, node, float_op)
        if bias:
            floats.append(bias)
        attrs = {k: v for k, v in node.attrs.items() if k in KEPT_ATTRS.get(float_op, ())}
        if float_op == "Softmax":
            attrs["axis"] = node.attr("axis", -1) % len(graph.shape(node.inputs[0]))
        result = node.outputs[0] if output is None else graph.fresh(f"{node.outputs[0]}_float")
        graph.types[result] = TensorType("float32", graph.shape(node.outputs[0]))
        new_nodes.append(Node(float_op, floats, [result], attrs, node.name))
        if output is not None:
            new_nodes.append(Node("QuantizeLinear", [result, node.inputs[output[0]], _input(node, output[1])],
                                  [node.outputs[0]], {}, f"{node.name}_quantize"))
        graph.insert_before(node, new_nodes)
        graph.remove([node])
        return 1


def _dequantized(graph: Graph, node: Node, triple: tuple[int, int, int], weight: bool, new_nodes: list[Node]) -> str:
    """The float value of a quantized operand: a DequantizeLinear node for a run-time value, a float constant
    (annotated with the model's scales when it is a per-channel symmetric weight) for a constant."""
    value, scale, zero_point = (_input(node, p) for p in triple)
    if not graph.is_const(value):
        out = graph.fresh(f"{value}_dequantized")
        graph.types[out] = TensorType("float32", graph.shape(value))
        new_nodes.append(Node("DequantizeLinear", [value, scale, zero_point], [out], {}, f"{node.name}_dq{len(new_nodes)}"))
        return out
    q = graph.const(value).astype(np.int64)
    scales = np.asarray(graph.const(scale), np.float32).reshape(-1)
    zps = np.asarray(graph.const(zero_point), np.int64).reshape(-1) if zero_point else np.zeros(1, np.int64)
    axis = _weight_axis(node, q.ndim) if scales.size > 1 or zps.size > 1 else None
    shape = [1] * q.ndim
    if axis is not None:
        shape[axis] = -1
    real = ((q - zps.reshape(shape)).astype(np.float32) * scales.reshape(shape)).astype(np.float32)
    quant = None
    if weight and not np.any(zps):
        channels = q.shape[axis] if axis is not None else 1
        quant = QuantParams(tuple(float(s) for s in np.broadcast_to(scales, (channels,))), (0,) * channels, axis,
                            8 * graph.const(value).dtype.itemsize)
    return graph.add_const(f"{value}_real", real, TensorType("float32", real.shape, quant))


def _weight_axis(node: Node, rank: int) -> int:
    """The axis of a per-channel weight scale: output channels of a Conv weight, columns of a MatMul weight, the
    rows of a transposed Gemm weight."""
    if node.op == "QLinearConv":
        return 0
    if node.op == "QGemm" and node.attr("transB", 0):
        return 0
    return rank - 1


def _bias(graph: Graph, node: Node, float_op: str) -> str:
    """QLinearConv's and QGemm's int32 bias in real units: bias * x_scale * w_scale (QGemm: times alpha)."""
    position = {"Conv": 8, "Gemm": 6}.get(float_op)
    if position is None or not _input(node, position):
        return ""
    bias = graph.const(node.inputs[position]).astype(np.float32)
    scale = (np.asarray(graph.const(node.inputs[1]), np.float32).reshape(())
             * np.asarray(graph.const(node.inputs[4]), np.float32).reshape(-1))
    if float_op == "Gemm":
        scale = scale * np.float32(node.attr("alpha", 1.0))
    real = bias * (scale if scale.size > 1 else scale.reshape(()))
    return graph.add_const(f"{node.inputs[position]}_real", np.asarray(real, np.float32))


def _move_quantizers_after_layout(graph: Graph) -> int:
    """layout(QuantizeLinear(x)) -> QuantizeLinear(layout(x)) for per-tensor parameters, in topological order so
    a chain of layout ops is crossed in one sweep."""
    moved = 0
    for node in graph.nodes:
        quantizer = graph.producer(node.inputs[0]) if node.inputs else None
        if (not is_kind(node.op, "layout") or quantizer is None or quantizer.op != "QuantizeLinear"
                or np.asarray(graph.const(quantizer.inputs[1])).size != 1):
            continue
        floats = []
        for out in node.outputs:
            floats.append(graph.fresh(f"{out}_float"))
            graph.types[floats[-1]] = TensorType("float32", graph.shape(out))
        replacement = [Node(node.op, [quantizer.inputs[0], *node.inputs[1:]], floats, dict(node.attrs), node.name)]
        replacement += [Node("QuantizeLinear", [f, *quantizer.inputs[1:]], [out], dict(quantizer.attrs),
                             f"{node.name}_quantize{i}") for i, (f, out) in enumerate(zip(floats, node.outputs))]
        graph.insert_before(node, replacement)
        graph.remove([node])
        moved += 1
    return moved
