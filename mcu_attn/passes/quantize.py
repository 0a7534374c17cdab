"""Post-training static quantization: float IR → integer-only IR (docs/integer-kernels.md).

1. Calibrate (calibrate.py): ranges of every float activation over the calibration stack; each tensor gets
   asymmetric int8 (scale, zero point) from its chosen observer.
2. Layout ops (Reshape, Gather, Slice, Transpose, Squeeze, Unsqueeze, Identity) move int8 values unchanged,
   so their outputs take their input's parameters; Concat inputs are requantized to the Concat's parameters.
3. Each float op is converted by one rule in `RULES` into its integer op with precomputed integer parameters:
   Linear → QLinear (weights int8 or int4 per output channel, symmetric; bias int32 with the input zero point
   folded in), LayerNormalization → QLayerNorm, Attention → QAttention (exp table, one reciprocal per row),
   Add → QAdd, any single-input pointwise op (Gelu, Relu, Tanh, Sigmoid, Erf, ...) → QTable built by running
   the op's own float reference on the 256 possible inputs.
4. Pre-quantized models (prequant.py) keep their own scales: weights annotated with symmetric QuantParams
   keep scales and bits, and activations the model quantized keep its (scale, zero point).
5. With 4-bit weights, per-layer sensitivity is measured on the calibration data (logit error of putting
   only that layer at 4 bits, every other layer at 8) and layers whose sensitivity is an outlier (more than
   `SENSITIVE_FACTOR` times the median) stay at 8 bits: mixed precision, reported in `graph.meta`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mcu_attn.data import check_stack
from mcu_attn.errors import UserError
from mcu_attn.frontend import layout
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import spec
from mcu_attn.ir.ops.nn import MASKED, shared_mask
from mcu_attn.ir.types import QuantParams, TensorType
from mcu_attn.passes.calibrate import Range, choose_range, collect
from mcu_attn.passes.manager import run_pipeline
from mcu_attn.passes.pipeline import prequantized_pipeline
from mcu_attn.reference.interpreter import run, run_stack
from mcu_attn.reference.qmath import (choose_qparams, dequantize, quantize, quantize_multiplier, saturate,
                                      symmetric_scales)

LAYOUT_OPS = layout.LAYOUT_OPS - {"Split"}  # the frontend's layout ops that have one output
POINTWISE_TABLE_OPS = frozenset({"Gelu", "Relu", "Tanh", "Sigmoid", "Erf", "Exp", "Neg", "Abs", "Sqrt", "Clip"})
SCORE_STEP = 1.0 / 16.0       # logit gap per exp-table entry: t=255 is a gap of ~16, where exp(-16) ~ 1e-7
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
    def __init__(self, src: Graph, ranges: dict[str, Range], layer_bits: dict[str, int], report: QuantReport):
        self.src = src
        self.dst = Graph(src.name)
        self.report = report
        self.layer_bits = layer_bits
        self.params: dict[str, tuple[float, int]] = {}
        for name, found in ranges.items():
            self.params[name] = choose_qparams(found.low, found.high)
        for name, given in src.meta.get("activation_qparams", {}).items():
            if name in self.params:  # a pre-quantized model's own activation quantization wins
                self.params[name] = given
                report.observers[name] = "model"
        for node in src.nodes:  # layout ops keep their input's parameters
            if node.op in LAYOUT_OPS and node.inputs[0] in self.params:
                for out in node.outputs:
                    self.params[out] = self.params[node.inputs[0]]

    def qtype(self, value: str) -> TensorType:
        scale, zero_point = self.params[value]
        return TensorType("int8", self.src.shape(value), QuantParams((scale,), (zero_point,)))

    def param(self, value: str) -> tuple[float, int]:
        if value not in self.params:
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
        for name in self.src.inputs:
            self.dst.add_input(name, self.qtype(name))
        for node in self.src.nodes:
            rule = RULES.get(node.op)
            if rule is None:
                raise UserError(f"integer quantization does not support {node.op} (node '{node.name}')")
            rule(self, node)
        self.dst.outputs = list(self.src.outputs)
        return self.dst


def _linear(cv: _Converter, node: Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    weight = cv.src.const(node.inputs[1]).astype(np.float64)
    bias = cv.src.const(node.inputs[2]).astype(np.float64) if len(node.inputs) > 2 else np.zeros(weight.shape[1])
    s_x, x_zp = cv.param(x)
    s_y, y_zp = cv.param(out)
    given = cv.src.type(node.inputs[1]).quant
    if given is not None and all(z == 0 for z in given.zero_point):
        bits = given.bits
        scales = np.broadcast_to(np.asarray(given.scale, np.float64), (weight.shape[1],)).copy()
        cv.report.prequantized.append(node.name)
    else:
        bits = cv.layer_bits.get(node.name, 8)
        scales = symmetric_scales(weight, bits, axis=1)
    qmax = (1 << (bits - 1)) - 1
    wq = np.clip(np.rint(weight / scales), -qmax, qmax).astype(np.int64)
    bias_q = np.rint(bias / (s_x * scales)).astype(np.int64) - x_zp * wq.sum(axis=0)
    if np.any(np.abs(bias_q) >= 2 ** 31):
        raise UserError(f"node '{node.name}': bias does not fit int32 at these scales")
    multipliers = [quantize_multiplier(s_x * s / s_y) for s in scales]
    w_type = TensorType("int4" if bits == 4 else "int8", wq.shape,
                        QuantParams(tuple(float(s) for s in scales), (0,) * len(scales), 1, bits))
    w_name = cv.dst.add_const(f"{node.name}_w", wq.astype(np.int8), w_type)
    b_name = cv.dst.add_const(f"{node.name}_b", bias_q.astype(np.int32))
    cv.report.layer_bits[node.name] = bits
    cv.emit("QLinear", [x, w_name, b_name], out,
            {"multiplier": tuple(m for m, _ in multipliers), "shift": tuple(s for _, s in multipliers),
             "y_zp": y_zp, "bits": bits}, node.name)


def _layer_norm(cv: _Converter, node: Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    if node.attr("axis", -1) % len(cv.src.shape(x)) != len(cv.src.shape(x)) - 1:
        raise UserError(f"node '{node.name}': integer LayerNorm normalises the last axis only")
    channels = cv.src.shape(x)[-1]
    gamma = cv.src.const(node.inputs[1]).astype(np.float64).reshape(-1)
    beta = (cv.src.const(node.inputs[2]).astype(np.float64).reshape(-1) if len(node.inputs) > 2 and node.inputs[2]
            else np.zeros(channels))
    gamma, beta = np.broadcast_to(gamma, (channels,)), np.broadcast_to(beta, (channels,))
    s_x, _ = cv.param(x)
    s_y, y_zp = cv.param(out)
    multipliers = [quantize_multiplier(g / (s_y * 2 ** 15)) for g in gamma]
    bias = cv.dst.add_const(f"{node.name}_b", np.rint(beta / s_y).astype(np.int32))
    eps = int(round(channels * channels * float(node.attr("epsilon", 1e-5)) / (s_x * s_x)))
    cv.emit("QLayerNorm", [x, bias], out, {"multiplier": tuple(m for m, _ in multipliers),
                                           "shift": tuple(s for _, s in multipliers), "eps": eps,
                                           "out_zp": y_zp}, node.name)


def _key_mask(cv: _Converter, node: Node) -> list[str]:
    """The 0/1 key mask the integer kernel takes for an additive 0/-inf mask input ([] when there is none)."""
    if len(node.inputs) < 4 or not node.inputs[3]:
        return []
    square = shared_mask(cv.src.const(node.inputs[3]), cv.src.shape(node.inputs[0])[-2])
    if square is None:
        raise UserError(f"node '{node.name}': integer attention takes one mask for every head")
    finite = square[square > MASKED]
    if np.any(finite != 0):
        raise UserError(f"node '{node.name}': integer attention supports masks of 0 and -inf only; this one adds "
                        f"learned biases (e.g. {float(finite[finite != 0][0]):.4g})")
    return [cv.dst.add_const(f"{node.name}_keys", (square > MASKED).astype(np.uint8))]


def _attention(cv: _Converter, node: Node) -> None:
    mask = _key_mask(cv, node)
    (s_q, q_zp), (s_k, k_zp), (s_v, v_zp) = (cv.param(v) for v in node.inputs[:3])
    s_o, o_zp = cv.param(node.outputs[0])
    score = quantize_multiplier(s_q * s_k * float(node.attrs["scale"]) / SCORE_STEP)
    output = quantize_multiplier(s_v / (256.0 * s_o))
    table = tuple(int(round(2 ** 15 * np.exp(-SCORE_STEP * t))) for t in range(256))
    attrs = {key: int(node.attr(key, 0)) for key in ("heads", "head_dim", "window", "causal", "global_tokens")}
    attrs.update(q_zp=q_zp, k_zp=k_zp, v_zp=v_zp, out_zp=o_zp, score_multiplier=score[0], score_shift=score[1],
                 exp_table=table, out_multiplier=output[0], out_shift=output[1])
    cv.emit("QAttention", list(node.inputs[:3]) + mask, node.outputs[0], attrs, node.name)


def _add(cv: _Converter, node: Node) -> None:
    a, b = node.inputs
    if cv.src.is_const(a):
        a, b = b, a
    b_q = cv.activation(b)
    s_a, a_zp = cv.param(a)
    b_quant = cv.dst.type(b_q).quant
    s_b, b_zp = b_quant.scale[0], b_quant.zero_point[0]
    s_y, y_zp = cv.param(node.outputs[0])
    twice = 2.0 * max(s_a, s_b)
    a_m, b_m, o_m = (quantize_multiplier(s_a / twice), quantize_multiplier(s_b / twice),
                     quantize_multiplier(twice / (2 ** 20 * s_y)))
    cv.emit("QAdd", [a, b_q], node.outputs[0],
            {"a_zp": a_zp, "b_zp": b_zp, "a_multiplier": a_m[0], "a_shift": a_m[1], "b_multiplier": b_m[0],
             "b_shift": b_m[1], "out_multiplier": o_m[0], "out_shift": o_m[1], "out_zp": y_zp}, node.name)


def _table(cv: _Converter, node: Node) -> None:
    """Any single-input pointwise op: its float reference evaluated on the 256 possible int8 inputs."""
    x = node.inputs[0]
    if any(v and not cv.src.is_const(v) for v in node.inputs[1:]):
        raise UserError(f"node '{node.name}': {node.op} with a run-time second input cannot be a table")
    s_x, x_zp = cv.param(x)
    s_y, y_zp = cv.param(node.outputs[0])
    codes = np.arange(-128, 128)
    real = dequantize(codes, s_x, x_zp)
    extra = [cv.src.const(v) if v else None for v in node.inputs[1:]]
    result = spec(node.op).run(node, [real] + extra)[0].astype(np.float64)
    table = saturate(np.rint(result / s_y) + y_zp)
    cv.emit("QTable", [x], node.outputs[0], {"table": tuple(int(v) for v in table)}, node.name)


def _layout(cv: _Converter, node: Node) -> None:
    inputs = [node.inputs[0]] + [cv.dst.add_const(f"{v}_c", cv.src.const(v), cv.src.type(v)) if v else ""
                                 for v in node.inputs[1:]]
    cv.emit(node.op, inputs, node.outputs[0], dict(node.attrs), node.name)


def _concat(cv: _Converter, node: Node) -> None:
    s_y, y_zp = cv.param(node.outputs[0])
    inputs = []
    for value in node.inputs:
        if cv.src.is_const(value):
            inputs.append(cv.const_int8(f"{value}_q", cv.src.const(value), s_y, y_zp))
            continue
        s_x, x_zp = cv.param(value)
        if (s_x, x_zp) != (s_y, y_zp):
            requantized = cv.dst.fresh(f"{value}_rq")
            multiplier, shift = quantize_multiplier(s_x / s_y)
            cv.params[requantized] = (s_y, y_zp)
            cv.dst.types[requantized] = TensorType("int8", cv.src.shape(value), QuantParams((s_y,), (y_zp,)))
            cv.dst.append(Node("QRequant", [value], [requantized], {"in_zp": x_zp, "multiplier": multiplier,
                                                                     "shift": shift, "out_zp": y_zp}, requantized))
            value = requantized
        inputs.append(value)
    cv.emit("Concat", inputs, node.outputs[0], dict(node.attrs), node.name)


RULES: dict[str, Callable[[_Converter, Node], None]] = {
    "Linear": _linear, "LayerNormalization": _layer_norm, "Attention": _attention, "Add": _add,
    "Concat": _concat, **{op: _layout for op in LAYOUT_OPS}, **{op: _table for op in POINTWISE_TABLE_OPS},
}


def _convert(graph: Graph, ranges: dict[str, Range], layer_bits: dict[str, int], bits: int) -> Graph:
    report = QuantReport(bits, {k: r.observer for k, r in ranges.items()},
                         {k: r.clip for k, r in ranges.items() if r.clip != 1.0})
    quantized = _Converter(graph, ranges, layer_bits, report).run()
    quantized.meta["quantization"] = report
    return quantized


def run_quantized(graph: Graph, samples: np.ndarray) -> np.ndarray:
    """Float samples in (a stack, with or without the batch axis), dequantized float outputs out, through the
    integer graph."""
    samples = check_stack(graph, samples, "data")
    (x_scale,), (x_zp,) = graph.type(graph.inputs[0]).quant.scale, graph.type(graph.inputs[0]).quant.zero_point
    out_quant = graph.type(graph.outputs[0]).quant
    outputs = []
    for sample in samples:
        q = quantize(sample, x_scale, x_zp).astype(np.int8)
        y = run(graph, {graph.inputs[0]: q})[graph.outputs[0]]
        outputs.append(dequantize(y, out_quant.scale[0], out_quant.zero_point[0]))
    return np.stack(outputs)


def _sensitivity(graph: Graph, ranges: dict[str, Range], samples: np.ndarray) -> dict[str, float]:
    reference = run_stack(graph, samples)
    linears = [n.name for n in graph.nodes if n.op == "Linear"]
    scores = {}
    for name in linears:
        trial = _convert(graph, ranges, {name: 4}, 4)
        scores[name] = float(np.mean(np.square(run_quantized(trial, samples) - reference)))
    return scores


def quantize_graph(graph: Graph, calib: np.ndarray, bits: int = 8) -> Graph:
    """The integer-only version of a float IR graph, calibrated on `calib` (a stack of input samples)."""
    if bits not in (8, 4):
        raise UserError(f"--bits {bits}: integer quantization takes 8 or 4 (32 is the float baseline)")
    if len(graph.inputs) != 1:
        raise UserError("quantization needs a single-input model")
    calib = check_stack(graph, calib, "calibration data")
    graph = graph.copy()
    run_pipeline(graph, prequantized_pipeline())
    observed = collect(graph, calib)
    ranges = {name: choose_range(values) for name, values in observed.items()}
    layer_bits: dict[str, int] = {}
    sensitivity: dict[str, float] = {}
    kept: list[str] = []
    if bits == 4:
        sensitivity = _sensitivity(graph, ranges, calib[:SENSITIVITY_SAMPLES])
        median = float(np.median(list(sensitivity.values()))) if sensitivity else 0.0
        kept = sorted(n for n, s in sensitivity.items() if median > 0 and s > SENSITIVE_FACTOR * median)
        layer_bits = {n: (8 if n in kept else 4) for n in sensitivity}
    quantized = _convert(graph, ranges, layer_bits, bits)
    report = quantized.meta["quantization"]
    report.sensitivity, report.kept_8bit = sensitivity, kept
    return quantized
