"""Post-training static quantization: float IR → integer-only IR (docs/integer-kernels.md).

1. Calibrate (calibrate.py): ranges of every float activation over the calibration stack; each tensor gets
   asymmetric int8 (scale, zero point) from its chosen observer.
2. Layout ops (kind "layout": Reshape, Gather, Slice, Transpose, ...) move int8 values unchanged, so their
   outputs take their input's parameters.
3. Each float op is converted by the quantize rule registered on its spec (`ir/ops`, beside the op) into its
   integer op with precomputed integer parameters: Linear → QLinear (weights int8 or int4 per output channel,
   symmetric; bias int32 with the input zero point folded in), LayerNormalization → QLayerNorm, Attention →
   QAttention (exp table, one reciprocal per row), Add → QAdd, any single-input pointwise op (Gelu, Relu, Tanh,
   Sigmoid, Erf, ...) → QTable built by running the op's own float reference on the 256 possible inputs,
   Concat → Concat with its inputs requantized to its parameters. A rule gets this module's converter (`cv`:
   the source graph, the graph being built, each tensor's parameters, `emit`) and the node. The integer pipeline
   (passes/pipeline.py) then fuses what a linear's epilogue can do: a following table or residual add.
4. Pre-quantized models (prequant.py) keep their own scales: weights annotated with symmetric QuantParams
   keep scales and bits, and activations the model quantized keep its (scale, zero point).
5. With 4-bit weights, per-layer sensitivity is measured on the calibration data (logit error of putting
   only that layer at 4 bits, every other layer at 8) and layers whose sensitivity is an outlier (more than
   `SENSITIVE_FACTOR` times the median) stay at 8 bits: mixed precision, reported in `graph.meta`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mcu_attn.data import check_stack
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import is_kind, spec
from mcu_attn.ir.ops.attention import SCORE_STEP
from mcu_attn.ir.types import QuantParams, TensorType
from mcu_attn.passes.calibrate import Range, choose_range, collect
from mcu_attn.passes.manager import run_pipeline
from mcu_attn.passes.pipeline import integer_pipeline, prequantized_pipeline
from mcu_attn.progress import progress
from mcu_attn.reference.interpreter import run, run_stack
from mcu_attn.reference.qmath import choose_qparams, dequantize, quantize

SENSITIVE_FACTOR = 4.0        # a layer whose int4 error is 4x the median layer's is kept at 8 bits
SENSITIVITY_SAMPLES = 64      # calibration samples used to rank layer sensitivity


@dataclass
class QuantReport:
    weight_bits: int
    observers: dict[str, str] = field(default_factory=dict)
    clipped: dict[str, float] = field(default_factory=dict)
    layer_bits: dict[str, int] = field(default_factory=dict)
    sensitivity: dict[str, float] = field(default_factory=dict)
    kept_8bit: list[str] = field(default_factory=list)
    prequantized: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        counts: dict[str, int] = {}
        for observer in self.observers.values():
            counts[observer] = counts.get(observer, 0) + 1
        return {"weight_bits": self.weight_bits, "activation_bits": 8, "observer_counts": counts,
                "clipped_tensors": self.clipped, "layer_bits": self.layer_bits,
                "int4_sensitivity": self.sensitivity, "kept_8bit": self.kept_8bit,
                "prequantized_weights": self.prequantized, "score_step": SCORE_STEP}


class _Converter:
    def __init__(self, src: Graph, ranges: dict[str, Range], layer_bits: dict[str, int], report: QuantReport,
                 calibrated: bool = True):
        self.src = src
        self.calibrated = calibrated
        self.dst = Graph(src.name)
        self.report = report
        self.layer_bits = layer_bits
        self.params: dict[str, tuple[float, int]] = {}
        for name, found in ranges.items():
            self.params[name] = choose_qparams(found.low, found.high)
        recorded = {**src.meta.get("qdq_activation_qparams", {}), **src.meta.get("activation_qparams", {})}
        for name, given in recorded.items():
            if name in src.types:  # a pre-quantized model's own activation quantization wins, calibrated or not
                self.params[name] = given
                report.observers[name] = "model"
        for node in src.nodes:  # layout ops keep their input's parameters
            if is_kind(node.op, "layout") and node.inputs[0] in self.params:
                for out in node.outputs:
                    self.params[out] = self.params[node.inputs[0]]

    def qtype(self, value: str) -> TensorType:
        scale, zero_point = self.param(value)
        return TensorType("int8", self.src.shape(value), QuantParams((scale,), (zero_point,)))

    def param(self, value: str) -> tuple[float, int]:
        if value not in self.params:
            if not self.calibrated:
                raise UserError(f"tensor {value!r} has no quantization scale in the model: pass --calib C.npy "
                                f"to calibrate the activations the model does not quantize itself")
            raise UserError(f"tensor {value!r} was never reached by the calibration data")
        return self.params[value]

    def emit(self, op: str, inputs: list[str], out: str, attrs: dict, name: str) -> None:
        self.dst.types[out] = self.qtype(out)
        self.dst.append(Node(op, inputs, [out], attrs, name))

    def const_int8(self, hint: str, array: np.ndarray, scale: float, zero_point: int) -> str:
        values = quantize(array, scale, zero_point).astype(np.int8)
        ttype = TensorType("int8", values.shape, QuantParams((scale,), (zero_point,)))
        return self.dst.add_const(hint, values, ttype)

    def activation(self, value: str) -> str:
        """An int8 operand: a converted tensor, or a float constant quantized with its own exact range."""
        if self.src.is_const(value):
            array = self.src.const(value)
            scale, zero_point = choose_qparams(float(array.min()), float(array.max()))
            return self.const_int8(f"{value}_q", array, scale, zero_point)
        return value

    def run(self) -> Graph:
        for name in self.src.inputs:  # float inputs become int8; token ids stay as they are
            self.dst.add_input(name, self.qtype(name) if self.src.type(name).dtype == "float32"
                               else self.src.type(name))
        for node in self.src.nodes:
            rule = spec(node.op).quantize
            if rule is None:
                raise UserError(f"integer quantization does not support {node.op} (node '{node.name}')")
            try:
                rule(self, node)
            except (ValueError, OverflowError) as err:  # a scale or multiplier out of integer range
                raise UserError(f"integer quantization of {node.op} (node '{node.name}'): {err}") from None
        self.dst.outputs = list(self.src.outputs)
        return self.dst


def _convert(graph: Graph, ranges: dict[str, Range], layer_bits: dict[str, int], bits: int,
             calibrated: bool = True) -> Graph:
    report = QuantReport(bits, {k: r.observer for k, r in ranges.items()},
                         {k: r.clip for k, r in ranges.items() if r.clip != 1.0})
    quantized = _Converter(graph, ranges, layer_bits, report, calibrated).run()
    quantized.meta["quantization"] = report
    return quantized


def run_quantized(graph: Graph, samples: np.ndarray) -> np.ndarray:
    """Float samples in (a stack, with or without the batch axis), dequantized float outputs out, through the
    integer graph."""
    samples = check_stack(graph, samples, "data")
    in_quant = graph.type(graph.inputs[0]).quant
    out_quant = graph.type(graph.outputs[0]).quant
    outputs = []
    with progress("integer reference", total=len(samples), unit="samples") as advance:
        for sample in samples:
            q = sample if in_quant is None else quantize(sample, in_quant.scale[0], in_quant.zero_point[0])
            y = run(graph, {graph.inputs[0]: q})[graph.outputs[0]]
            outputs.append(dequantize(y, out_quant.scale[0], out_quant.zero_point[0]))
            advance()
    return np.stack(outputs)


def _sensitivity(graph: Graph, ranges: dict[str, Range], samples: np.ndarray) -> dict[str, float]:
    reference = run_stack(graph, samples)
    linears = [n.name for n in graph.nodes if n.op == "Linear"]
    scores = {}
    with progress("int4 sensitivity", total=len(linears), unit="layers") as advance:
        for name in linears:
            trial = _convert(graph, ranges, {name: 4}, 4)
            scores[name] = float(np.mean(np.square(run_quantized(trial, samples) - reference)))
            advance(note=name)
    return scores


def quantize_graph(graph: Graph, calib: np.ndarray | None, bits: int = 8) -> Graph:
    """The integer-only version of a float IR graph, calibrated on `calib` (a stack of input samples). Without
    calibration data only a pre-quantized model converts, and only when it gives every activation's scale."""
    if bits not in (8, 4):
        raise UserError(f"--bits {bits}: integer quantization takes 8 or 4 (32 is the float baseline)")
    if len(graph.inputs) != 1:
        raise UserError("quantization needs a single-input model")
    graph = graph.copy()
    run_pipeline(graph, prequantized_pipeline())
    ranges: dict[str, Range] = {}
    if calib is not None:
        calib = check_stack(graph, calib, "calibration data")
        observed = collect(graph, calib)
        ranges = {name: choose_range(values) for name, values in observed.items()}
    layer_bits: dict[str, int] = {}
    sensitivity: dict[str, float] = {}
    kept: list[str] = []
    if bits == 4 and calib is not None:
        sensitivity = _sensitivity(graph, ranges, calib[:SENSITIVITY_SAMPLES])
        median = float(np.median(list(sensitivity.values()))) if sensitivity else 0.0
        kept = sorted(n for n, s in sensitivity.items() if median > 0 and s > SENSITIVE_FACTOR * median)
        layer_bits = {n: (8 if n in kept else 4) for n in sensitivity}
    elif bits == 4:  # no data to rank sensitivity on: every weight the model does not quantize itself at 4 bits
        layer_bits = {n.name: 4 for n in graph.nodes if n.op == "Linear"}
    quantized = _convert(graph, ranges, layer_bits, bits, calib is not None)
    run_pipeline(quantized, integer_pipeline())
    report = quantized.meta["quantization"]
    report.sensitivity, report.kept_8bit = sensitivity, kept
    return quantized
