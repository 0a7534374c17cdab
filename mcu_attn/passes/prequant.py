"""Bring pre-quantized ONNX models (QDQ, QOperator, MatMulNBits) to the float form the quantizer converts,
keeping the model's own quantization as annotations instead of recalibrating:

- an activation QuantizeLinear→DequantizeLinear pair is removed and its (scale, zero point) recorded for the
  tensor in `graph.meta["activation_qparams"]`;
- QLinearMatMul / com.microsoft QGemm with a constant weight become `Linear` on the float input with the
  dequantized weight annotated by the model's per-channel (or per-tensor) scales; the QuantizeLinear in front
  and the DequantizeLinear behind are absorbed and their parameters recorded for those tensors;
- com.microsoft MatMulNBits becomes `Linear` with its block-dequantized weight (blocked, asymmetric scales do
  not fit per-channel symmetric kernels, so that weight is requantized per channel; the report says so).
uint8 parameters are shifted to int8 (same scale, zero point - 128): the same real values, exactly.
A TFLite model (frontend/tflite.py) brings its activation parameters as per-tensor `quant` annotations on float
values instead of Q/DQ pairs; `KeepAnnotatedScales` records them for the quantizer the same way.
`AbsorbPrequantized` and `KeepAnnotatedScales` run before quantization only. `AbsorbActivationQDQ` runs first in
the frontend: onnxruntime's QDQ format wraps every activation, attention's q, k, v, scores and probabilities
included, in a Q/DQ pair that hides the attention pattern; the pairs become recorded parameters
(meta["qdq_activation_qparams"], which follow a value when a fusion replaces it: Graph.replace_uses) before any
pattern runs, so the float reference of a QDQ model is the model without its activation fake-quantization, and
the int8 build uses its scales.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.quant import matmul_nbits_weight
from mcu_attn.ir.types import QuantParams, TensorType
from mcu_attn.passes.manager import PassResult


def _int8_params(graph: Graph, scale: str, zero_point: str | None) -> tuple[float, int] | None:
    scale_value = graph.const(scale).reshape(-1)
    if scale_value.size != 1:
        return None
    if not zero_point:
        return float(scale_value[0]), 0
    zp = graph.const(zero_point)
    shift = 128 if zp.dtype == np.uint8 else 0
    if zp.dtype not in (np.uint8, np.int8):
        return None
    return float(scale_value[0]), int(zp.reshape(-1)[0]) - shift


def _quantizer_of(graph: Graph, value: str) -> Node | None:
    node = graph.producer(value)
    return node if node is not None and node.op == "QuantizeLinear" else None


class AbsorbActivationQDQ:
    name = "absorb-activation-qdq"
    why = "a QDQ model's activation Q/DQ pairs hide attention, LayerNorm and GELU: their scales become annotations"

    def run(self, graph: Graph, ctx) -> PassResult:
        overrides: dict[str, tuple[float, int]] = graph.meta.setdefault("qdq_activation_qparams", {})
        absorbed = sum(AbsorbPrequantized._qdq_pair(graph, node, overrides) for node in graph.nodes
                       if node.op == "DequantizeLinear" and not graph.is_const(node.inputs[0]))
        if absorbed:
            graph.prune_unused()
        return PassResult(absorbed > 0, {"absorbed": absorbed})


class AbsorbPrequantized:
    name = "absorb-prequantized"
    why = "a pre-quantized model's scales are kept, not recalibrated, and its integer ops become Linear"

    def run(self, graph: Graph, ctx) -> PassResult:
        overrides: dict[str, tuple[float, int]] = graph.meta.setdefault("activation_qparams", {})
        lowered = 0
        for node in graph.nodes:
            if node.op in ("QLinearMatMul", "QGemm") and graph.is_const(node.inputs[3]):
                lowered += self._qoperator(graph, node, overrides)
            elif node.op == "MatMulNBits":
                lowered += self._nbits(graph, node)
        for node in graph.nodes:
            if node.op == "DequantizeLinear" and not graph.is_const(node.inputs[0]):
                lowered += self._qdq_pair(graph, node, overrides)
        graph.prune_unused()
        return PassResult(lowered > 0, {"lowered": lowered})

    @staticmethod
    def _qdq_pair(graph: Graph, dq: Node, overrides: dict) -> int:
        q = _quantizer_of(graph, dq.inputs[0])
        params = _int8_params(graph, dq.inputs[1], dq.inputs[2] if len(dq.inputs) > 2 else None)
        if q is None or params is None:
            return 0
        overrides[q.inputs[0]] = params
        graph.remove([dq])
        graph.replace_uses(dq.outputs[0], q.inputs[0])
        return 1

    @staticmethod
    def _qoperator(graph: Graph, node: Node, overrides: dict) -> int:
        quantizer = _quantizer_of(graph, node.inputs[0])
        readers = graph.consumers(node.outputs[0])
        if quantizer is None or not readers or any(r.op != "DequantizeLinear" for r in readers):
            return 0
        b = graph.const(node.inputs[3]).astype(np.float64)
        b_scale = graph.const(node.inputs[4]).astype(np.float64).reshape(-1)
        b_zp = graph.const(node.inputs[5]).astype(np.float64).reshape(-1) if node.inputs[5] else np.zeros(1)
        if node.op == "QGemm" and node.attr("transB", 0):
            b = b.T
        alpha = float(node.attr("alpha", 1.0)) if node.op == "QGemm" else 1.0
        weight = ((b - b_zp) * b_scale * alpha).astype(np.float32)
        a_params = _int8_params(graph, node.inputs[1], node.inputs[2])
        y_inputs = (6, 7) if node.op == "QLinearMatMul" else (7, 8)
        y_params = _int8_params(graph, node.inputs[y_inputs[0]], node.inputs[y_inputs[1]])
        if a_params is None or y_params is None or (node.op == "QGemm" and node.attr("transA", 0)):
            return 0
        symmetric = bool(np.all(b_zp == 0))
        quant = None
        if symmetric:
            scales = np.broadcast_to(b_scale * alpha, (weight.shape[1],))
            quant = QuantParams(tuple(float(s) for s in scales), (0,) * weight.shape[1], 1,
                                8 * graph.const(node.inputs[3]).dtype.itemsize)
        inputs = [quantizer.inputs[0], graph.add_const(f"{node.name}_w", weight,
                                                       TensorType("float32", weight.shape, quant))]
        if node.op == "QGemm" and len(node.inputs) > 6 and node.inputs[6]:
            bias = graph.const(node.inputs[6]).astype(np.float64) * a_params[0] * b_scale * alpha
            inputs.append(graph.add_const(f"{node.name}_b", np.broadcast_to(bias, (weight.shape[1],))
                                          .astype(np.float32).copy()))
        out = readers[0].outputs[0]
        overrides[quantizer.inputs[0]] = a_params
        overrides[out] = y_params
        linear = Node("Linear", inputs, [graph.fresh(f"{node.name}_linear")], {}, node.name)
        graph.types[linear.outputs[0]] = graph.type(out)
        graph.insert_before(node, [linear])
        graph.remove([node, *readers])
        for reader in readers:
            graph.replace_uses(reader.outputs[0], linear.outputs[0])
        return 1

    @staticmethod
    def _nbits(graph: Graph, node: Node) -> int:
        if len(node.inputs) > 4 and any(node.inputs[4:5]):
            return 0  # g_idx
        zero_points = graph.const(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] else None
        weight = matmul_nbits_weight(graph.const(node.inputs[1]), graph.const(node.inputs[2]), zero_points,
                                     K=node.attrs["K"], N=node.attrs["N"], bits=node.attrs.get("bits", 4),
                                     block_size=node.attrs["block_size"]).T.astype(np.float32)
        inputs = [node.inputs[0], graph.add_const(f"{node.name}_w", np.ascontiguousarray(weight))]
        if len(node.inputs) > 5 and node.inputs[5]:
            inputs.append(node.inputs[5])
        graph.insert_before(node, [Node("Linear", inputs, list(node.outputs), {}, node.name)])
        graph.remove([node])
        return 1


class KeepAnnotatedScales:
    name = "keep-annotated-scales"
    why = "a TFLite model's per-tensor activation scales are annotations on float values: kept, not recalibrated"

    def run(self, graph: Graph, ctx) -> PassResult:
        overrides: dict[str, tuple[float, int]] = graph.meta.setdefault("activation_qparams", {})
        before = len(overrides)
        for name, ttype in graph.types.items():
            quant = ttype.quant
            if quant is not None and not quant.per_channel and not graph.is_const(name) and ttype.dtype == "float32":
                overrides.setdefault(name, (quant.scale[0], quant.zero_point[0]))
        return PassResult(len(overrides) > before, {"kept": len(overrides) - before})
