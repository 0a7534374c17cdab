"""TFLite → IR: an int8 (or float) `.tflite` file becomes the same kind of float IR graph an ONNX export does.

The graph computes in float on the file's dequantized constants (real = scale * (q - zero_point), per tensor or
per channel), so the frontend pipeline fuses attention, LayerNorm and GELU exactly as it does for ONNX. What
makes an int8 file pre-quantized is kept as annotations the quantizer honours instead of calibrating:
- every run-time int8 tensor's (scale, zero point) is the `quant` of its float IR value's type (uint8 shifted to
  int8: zero point - 128, the same real values); the fusion passes keep a replaced value's type, and
  `passes/prequant.py` collects these for the quantizer;
- FULLY_CONNECTED weights keep their per-channel scales (and so their int8 values) on the Linear weight;
- QUANTIZE and DEQUANTIZE are identities in float: the float side takes the quantized side's parameters when it
  has none, so an int8 model with float inputs or outputs keeps its input and output quantization;
- a fused clamp activation (RELU, RELU6, RELU_N1_TO_1) gives the value before it the output's parameters: the
  int8 kernel clamps in the output's quantized domain, which is what a table lookup of the clamp does there.
A float file has no annotations and is calibrated like an ONNX model.

Graph inputs are float (the data files are float samples); an int8 input is quantized with the file's own
parameters by the firmware's caller. Operators are translated by the rules in `tflite_ops.py`; every operator
without a rule is collected, and one error names them all.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.frontend.builder import GraphBuilder, import_error
from mcu_attn.frontend.graph_checks import check_size
from mcu_attn.frontend.tflite_file import TfliteModel, TfliteOperator, TfliteTensor, read_tflite
from mcu_attn.ir.graph import Graph
from mcu_attn.ir.types import QuantParams, TensorType, dtype_name

# fused_activation_function: the IR op and its constant bounds (SIGN_BIT is not an activation this IR has)
ACTIVATIONS = {1: ("Relu", ()), 2: ("Clip", (-1.0, 1.0)), 3: ("Clip", (0.0, 6.0)), 4: ("Tanh", ())}
CLAMPS = (1, 2, 3)


def activation_quant(tensor: TfliteTensor) -> QuantParams | None:
    """The per-tensor int8 parameters of a quantized run-time tensor (uint8 as int8), else None."""
    if tensor.quant is None or tensor.quant.axis is not None or tensor.dtype not in (np.int8, np.uint8):
        return None
    shift = 128 if tensor.dtype == np.uint8 else 0
    return QuantParams((tensor.quant.scale[0],), (tensor.quant.zero_point[0] - shift,))


def dequantize(tensor: TfliteTensor) -> np.ndarray:
    """A constant's real values (float32): its data as they are when it is not quantized."""
    data = tensor.data
    if tensor.quant is None:
        return data.astype(np.float32) if np.issubdtype(data.dtype, np.floating) else data
    scale = np.asarray(tensor.quant.scale, np.float64)
    zero = np.broadcast_to(np.asarray(tensor.quant.zero_point, np.float64), scale.shape)
    if tensor.quant.axis is not None:
        shape = [1] * data.ndim
        shape[tensor.quant.axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((data.astype(np.float64) - zero) * scale).astype(np.float32)


class TfliteImporter(GraphBuilder):
    """The context `tflite_ops` rules translate operators with."""

    def __init__(self, model: TfliteModel) -> None:
        super().__init__(Path(model.path).stem or "model")
        self.model = model
        self.names = _value_names(model.tensors)

    # ---- what rules use ---------------------------------------------------------------------------------------
    def tensor(self, index: int) -> TfliteTensor:
        return self.model.tensors[index]

    def value(self, index: int) -> str:
        """The IR value of tensor `index` ("" for an omitted input); a constant is defined on first use."""
        if index < 0:
            return ""
        name = self.names[index]
        tensor = self.tensor(index)
        if name not in self.graph.types and tensor.data is not None:
            self.define_const(name, dequantize(tensor))
        return name

    def ints(self, op: TfliteOperator, position: int, what: str) -> tuple[int, ...]:
        """A constant integer input (axes, permutation, slice bounds) as a tuple."""
        tensor = self.tensor(op.inputs[position]) if position < len(op.inputs) and op.inputs[position] >= 0 else None
        if tensor is None or tensor.data is None:
            raise UserError(f"{label(self, op)}: {what} must be constant (it decides a shape)")
        return tuple(int(v) for v in tensor.data.reshape(-1))

    def output_shape(self, op: TfliteOperator, position: int = 0) -> tuple[int, ...]:
        return self.tensor(op.outputs[position]).shape

    def emit_fused(self, op: TfliteOperator, ir_op: str, inputs: list[str], attrs: dict[str, Any] | None = None,
                   output: str | None = None) -> None:
        """`ir_op` computing the operator's output, followed by its fused activation function if it has one."""
        out = output or self.value(op.outputs[0])
        code = int(op.option("FusedActivationFunction", 0))
        if code == 0:
            self.emit(ir_op, inputs, [out], attrs)
            return
        if code not in ACTIVATIONS:
            raise UserError(f"{label(self, op)}: fused activation {code} (SIGN_BIT) is not supported")
        before = self.fresh(f"{out}_before_activation")
        self.emit(ir_op, inputs, [before], attrs)
        activation, bounds = ACTIVATIONS[code]
        extra = []
        for bound in bounds:
            extra.append(self.fresh(f"{out}_bound"))
            self.define_const(extra[-1], np.array(bound, np.float32))
        self.emit(activation, [before, *extra], [out])
        quant = activation_quant(self.tensor(op.outputs[0])) if code in CLAMPS else None
        self.annotate(before, quant)

    def annotate(self, value: str, quant: QuantParams | None, replace: bool = True) -> None:
        """Give run-time float value `value` the quantization `quant` (unless it has one and not `replace`)."""
        ttype = self.graph.types.get(value)
        if quant is None or ttype is None or self.graph.is_const(value) or ttype.dtype != "float32":
            return
        if ttype.quant is None or replace:
            self.graph.types[value] = TensorType(ttype.dtype, ttype.shape, quant)

    # ---- the walk ---------------------------------------------------------------------------------------------
    def run(self) -> Graph:
        from mcu_attn.frontend.tflite_ops import RULES

        for index in self.model.inputs:
            self._add_input(self.tensor(index))
        unsupported: Counter[str] = Counter()
        for op in self.model.operators:
            rule = RULES.get(op.name)
            if rule is None:
                unsupported[op.name] += 1
                continue
            fed = [i for i in op.inputs if i >= 0 and self.tensor(i).data is None]
            if any(self.names[i] not in self.graph.types for i in fed):
                continue  # fed by an unsupported operator: that one is already reported
            try:
                rule(self, op)
            except UserError:
                raise
            except Exception as err:  # noqa: BLE001  (a malformed operator must not crash the import: name it)
                raise import_error(label(self, op), err) from None
            for index in op.outputs:
                self.annotate(self.names[index], activation_quant(self.tensor(index)))
        if unsupported:
            listed = ", ".join(f"{name}" + (f" (x{count})" if count > 1 else "")
                               for name, count in sorted(unsupported.items()))
            raise UserError(f"{self.model.path}: unsupported TFLite operators: {listed}")
        self.graph.outputs = [self.names[i] for i in self.model.outputs]
        for name in self.graph.outputs:
            if name not in self.graph.types:
                raise UserError(f"{self.model.path}: graph output {name!r} is never computed")
        self.reject_non_finite()
        self.graph.prune_unused()
        return self.graph

    def _add_input(self, tensor: TfliteTensor) -> None:
        dynamic = [axis for axis, d in enumerate(tensor.signature) if d < 0 and axis > 0]
        if dynamic:
            raise UserError(f"{self.model.path}: input {tensor.name!r} has a dynamic dimension at axis "
                            f"{dynamic[0]}: only the batch may be dynamic; convert with a fixed shape")
        shape = tuple(max(d, 1) for d in tensor.shape)
        check_size(f"input {tensor.name!r}", list(shape), int(np.prod(shape, dtype=np.int64)) * 4)
        if tensor.dtype in (np.int8, np.uint8, np.float32, np.float16):  # the caller feeds float samples
            self.graph.add_input(self.names[tensor.index], TensorType("float32", shape, activation_quant(tensor)))
        else:  # token ids and other integer inputs keep their type
            self.graph.add_input(self.names[tensor.index], TensorType(dtype_name(tensor.dtype), shape))


def label(importer: TfliteImporter, op: TfliteOperator) -> str:
    outputs = [importer.names[i] for i in op.outputs]
    return f"{op.name} (operator {op.index}, output '{outputs[0] if outputs else '-'}')"


def _value_names(tensors: tuple[TfliteTensor, ...]) -> list[str]:
    """One IR value name per tensor: the first of the `;`-joined names the converter gives a tensor it fused
    from several TensorFlow ops, with `#index` appended when another tensor has it too."""
    short = [t.name.split(";")[0] or f"tensor_{t.index}" for t in tensors]
    counts = Counter(short)
    return [name if counts[name] == 1 else f"{name}#{t.index}" for name, t in zip(short, tensors)]


def load_tflite(path: str | os.PathLike) -> Graph:
    """Import a `.tflite` model into an (unoptimised) IR graph."""
    model = read_tflite(path)
    for tensor in model.tensors:
        if tensor.dtype == np.int16 and tensor.data is None:
            raise UserError(f"{model.path}: tensor {tensor.name!r} is an int16 activation (16x8 quantization), "
                            f"which is not supported; convert with int8 activations")
    return TfliteImporter(model).run()
