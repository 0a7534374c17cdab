"""TFLite builtin operators → IR nodes, one rule per operator (or family), registered by name in `RULES`.

A rule gets the importer (`frontend/tflite.py`: IR values of tensors, constant integer inputs, `emit`,
`emit_fused` for operators with a fused activation) and the operator. Operators become the IR's ONNX-semantics
ops, so the frontend pipeline recognises what they spell (LayerNorm as MEAN / SQUARED_DIFFERENCE / RSQRT,
attention as BATCH_MATMUL / SOFTMAX / BATCH_MATMUL) with the same matchers as any ONNX export:
- FULLY_CONNECTED is `Linear` (weights [out, in] transposed to [in, out], per-channel scales kept);
- BATCH_MATMUL is `MatMul`, with a `Transpose` of the last two axes for adj_x / adj_y;
- SQUARED_DIFFERENCE is Sub then Mul of the difference by itself, RSQRT is Sqrt then Reciprocal;
- SOFTMAX with beta != 1 multiplies by beta first; shapes come from the file (RESHAPE, SQUEEZE, EXPAND_DIMS);
- STRIDED_SLICE is `Slice` (masks and offset resolved against the static shape) and a `Reshape` when it
  shrinks axes; QUANTIZE and DEQUANTIZE are identities in float (see tflite.py for their parameters);
- CONV_2D and DEPTHWISE_CONV_2D (NHWC) are the IR's NCHW `Conv` between two Transposes, with explicit pads for
  SAME (TFLite puts the odd pixel of padding at the end) and the per-channel weight scales kept.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.frontend.graph_checks import check_divisor
from mcu_attn.frontend.tflite import TfliteImporter, activation_quant, dequantize, label
from mcu_attn.frontend.tflite_file import TfliteOperator
from mcu_attn.ir.types import QuantParams

Rule = Callable[[TfliteImporter, TfliteOperator], None]
RULES: dict[str, Rule] = {}


def rule(*names: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for name in names:
            RULES[name] = fn
        return fn
    return register


def supported_tflite_ops() -> list[str]:
    """Every TFLite builtin operator the frontend imports."""
    return sorted(RULES)


def _inputs(ctx: TfliteImporter, op: TfliteOperator, count: int | None = None) -> list[str]:
    return [ctx.value(i) for i in op.inputs[:count]]


def _const_value(ctx: TfliteImporter, hint: str, array: np.ndarray) -> str:
    name = ctx.fresh(hint)
    ctx.define_const(name, array)
    return name


def _emit_chain(ctx: TfliteImporter, op: TfliteOperator, first: tuple[str, list[str]], second: str) -> None:
    """Two IR ops in a row: first (op, inputs) into a fresh value, then `second` of it into the output
    (`second` "Square" multiplies the value by itself)."""
    middle = ctx.fresh(f"{ctx.value(op.outputs[0])}_{first[0].lower()}")
    ctx.emit(first[0], first[1], [middle])
    operands = [middle, middle] if second == "Square" else [middle]
    ctx.emit_fused(op, "Mul" if second == "Square" else second, operands)


# ---- arithmetic --------------------------------------------------------------------------------------------------
BINARY = {"ADD": "Add", "SUB": "Sub", "MUL": "Mul", "DIV": "Div", "MAXIMUM": "Max", "MINIMUM": "Min"}


@rule(*BINARY)
def _binary(ctx: TfliteImporter, op: TfliteOperator) -> None:
    inputs = _inputs(ctx, op, 2)
    if op.name == "DIV":
        check_divisor(label(ctx, op), ctx.const(inputs[1]))
    ctx.emit_fused(op, BINARY[op.name], inputs)


@rule("SQUARED_DIFFERENCE")
def _squared_difference(ctx: TfliteImporter, op: TfliteOperator) -> None:
    _emit_chain(ctx, op, ("Sub", _inputs(ctx, op, 2)), "Square")


@rule("RSQRT")
def _rsqrt(ctx: TfliteImporter, op: TfliteOperator) -> None:
    _emit_chain(ctx, op, ("Sqrt", _inputs(ctx, op, 1)), "Reciprocal")


UNARY = {"TANH": "Tanh", "LOGISTIC": "Sigmoid", "NEG": "Neg", "RELU": "Relu", "SQRT": "Sqrt", "EXP": "Exp",
         "ABS": "Abs", "LOG": "Log"}


@rule(*UNARY)
def _unary(ctx: TfliteImporter, op: TfliteOperator) -> None:
    ctx.emit(UNARY[op.name], _inputs(ctx, op, 1), [ctx.value(op.outputs[0])])


CLIPS = {"RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}


@rule(*CLIPS)
def _clip(ctx: TfliteImporter, op: TfliteOperator) -> None:
    bounds = [_const_value(ctx, f"{op.name.lower()}_bound", np.array(b, np.float32)) for b in CLIPS[op.name]]
    ctx.emit("Clip", _inputs(ctx, op, 1) + bounds, [ctx.value(op.outputs[0])])


@rule("GELU")
def _gelu(ctx: TfliteImporter, op: TfliteOperator) -> None:
    approximate = "tanh" if op.option("Approximate", False) else "none"
    ctx.emit("Gelu", _inputs(ctx, op, 1), [ctx.value(op.outputs[0])], {"approximate": approximate})


# ---- reductions and softmax --------------------------------------------------------------------------------------
REDUCE = {"MEAN": "ReduceMean", "SUM": "ReduceSum", "REDUCE_MAX": "ReduceMax"}


@rule(*REDUCE)
def _reduce(ctx: TfliteImporter, op: TfliteOperator) -> None:
    axes = ctx.ints(op, 1, "the reduction axes")
    keep = int(bool(op.option("KeepDims", False)))
    ctx.emit(REDUCE[op.name], _inputs(ctx, op, 1), [ctx.value(op.outputs[0])], {"axes": axes, "keepdims": keep})


@rule("SOFTMAX")
def _softmax(ctx: TfliteImporter, op: TfliteOperator) -> None:
    x = ctx.value(op.inputs[0])
    beta = float(op.option("Beta", 1.0))
    if beta != 1.0:
        scaled = ctx.fresh(f"{x}_beta")
        ctx.emit("Mul", [x, _const_value(ctx, "softmax_beta", np.array(beta, np.float32))], [scaled])
        x = scaled
    ctx.emit("Softmax", [x], [ctx.value(op.outputs[0])], {"axis": -1})


# ---- matrix products ---------------------------------------------------------------------------------------------
def _weight_quant(ctx: TfliteImporter, op: TfliteOperator, channel_axis: int, ir_axis: int) -> QuantParams | None:
    """The per-output-channel (along `channel_axis` of the file's layout) or per-tensor scales of an int8
    weight, as the annotation of the IR weight, whose output channels lie along `ir_axis`; None for a float
    weight."""
    tensor = ctx.tensor(op.inputs[1])
    if tensor.quant is None or tensor.dtype != np.int8:
        return None
    quant = tensor.quant
    if quant.axis not in (None, channel_axis):
        raise UserError(f"{label(ctx, op)}: the weight is quantized along axis {quant.axis}, not per output channel")
    zero = quant.zero_point * (len(quant.scale) if len(quant.zero_point) == 1 else 1)
    return QuantParams(quant.scale, zero, None if quant.axis is None else ir_axis, 8)


@rule("FULLY_CONNECTED")
def _fully_connected(ctx: TfliteImporter, op: TfliteOperator) -> None:
    if int(op.option("WeightsFormat", 0)) != 0:
        raise UserError(f"{label(ctx, op)}: shuffled weights are not supported")
    x = ctx.value(op.inputs[0])
    weight = ctx.tensor(op.inputs[1])
    if weight.data is None:
        raise UserError(f"{label(ctx, op)}: the weights are computed at run time; only constant weights are "
                        f"supported")
    units, depth = weight.shape
    if ctx.shape(x)[-1] != depth:  # TFLite flattens the input to [-1, depth]
        flat = ctx.fresh(f"{x}_rows")
        rows = int(np.prod(ctx.shape(x), dtype=np.int64)) // depth
        ctx.emit("Reshape", [x, _const_value(ctx, "shape", np.array([rows, depth], np.int64))], [flat])
        x = flat
    w_name = ctx.fresh(f"{weight.name}_in_out")
    ctx.define_const(w_name, np.ascontiguousarray(dequantize(weight).T), _weight_quant(ctx, op, 0, 1))
    inputs = [x, w_name]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        inputs.append(ctx.value(op.inputs[2]))
    out = ctx.value(op.outputs[0])
    shape = ctx.output_shape(op)
    if ctx.shape(x)[:-1] + (units,) == shape:
        ctx.emit_fused(op, "Linear", inputs)
        return
    produced = ctx.fresh(f"{out}_linear")
    ctx.emit_fused(op, "Linear", inputs, output=produced)
    ctx.annotate(produced, activation_quant(ctx.tensor(op.outputs[0])))
    ctx.emit("Reshape", [produced, _const_value(ctx, "shape", np.array(shape, np.int64))], [out])


def _swap_last(ctx: TfliteImporter, value: str) -> str:
    rank = len(ctx.shape(value))
    swapped = ctx.fresh(f"{value}_t")
    ctx.emit("Transpose", [value], [swapped], {"perm": tuple(range(rank - 2)) + (rank - 1, rank - 2)})
    return swapped


@rule("BATCH_MATMUL")
def _batch_matmul(ctx: TfliteImporter, op: TfliteOperator) -> None:
    a, b = _inputs(ctx, op, 2)
    if op.option("AdjX", False):
        a = _swap_last(ctx, a)
    if op.option("AdjY", False):
        b = _swap_last(ctx, b)
    ctx.emit("MatMul", [a, b], [ctx.value(op.outputs[0])])


# ---- layout ------------------------------------------------------------------------------------------------------
@rule("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def _reshape(ctx: TfliteImporter, op: TfliteOperator) -> None:
    shape = _const_value(ctx, "shape", np.array(ctx.output_shape(op), np.int64))
    ctx.emit("Reshape", [ctx.value(op.inputs[0]), shape], [ctx.value(op.outputs[0])])


@rule("TRANSPOSE")
def _transpose(ctx: TfliteImporter, op: TfliteOperator) -> None:
    ctx.emit("Transpose", _inputs(ctx, op, 1), [ctx.value(op.outputs[0])], {"perm": ctx.ints(op, 1, "perm")})


@rule("CONCATENATION")
def _concatenation(ctx: TfliteImporter, op: TfliteOperator) -> None:
    ctx.emit_fused(op, "Concat", _inputs(ctx, op), {"axis": int(op.option("Axis", 0))})


@rule("GATHER")
def _gather(ctx: TfliteImporter, op: TfliteOperator) -> None:
    if int(op.option("BatchDims", 0)) != 0:
        raise UserError(f"{label(ctx, op)}: batch_dims {op.option('BatchDims', 0)} is not supported")
    ctx.emit("Gather", _inputs(ctx, op, 2), [ctx.value(op.outputs[0])], {"axis": int(op.option("Axis", 0))})


@rule("STRIDED_SLICE")
def _strided_slice(ctx: TfliteImporter, op: TfliteOperator) -> None:
    x = ctx.value(op.inputs[0])
    begin, end, strides = (list(ctx.ints(op, i, what)) for i, what in ((1, "begin"), (2, "end"), (3, "strides")))
    for mask in ("EllipsisMask", "NewAxisMask"):
        if op.option(mask, 0):
            raise UserError(f"{label(ctx, op)}: {mask[:-4].lower()} masks are not supported")
    begin_mask, end_mask, shrink = (int(op.option(m, 0)) for m in ("BeginMask", "EndMask", "ShrinkAxisMask"))
    offset = bool(op.option("Offset", False))
    shape = ctx.shape(x)
    for axis, stride in enumerate(strides):
        dim = shape[axis]
        if stride == 0:
            raise ValueError("a stride of 0")
        if offset:
            end[axis] += begin[axis]
        if shrink >> axis & 1:  # one element: begin, normalised so begin + 1 cannot wrap to 0
            begin[axis] = begin[axis] + dim if begin[axis] < 0 else begin[axis]
            end[axis], strides[axis] = begin[axis] + 1, 1
            continue
        if begin_mask >> axis & 1:
            begin[axis] = 0 if stride > 0 else dim - 1
        if end_mask >> axis & 1:
            end[axis] = dim if stride > 0 else -dim - 1
    out = ctx.value(op.outputs[0])
    attrs = {"starts": tuple(begin), "ends": tuple(end), "axes": tuple(range(len(begin))), "steps": tuple(strides)}
    if not shrink:
        ctx.emit("Slice", [x], [out], attrs)
        return
    sliced = ctx.fresh(f"{out}_slice")
    ctx.emit("Slice", [x], [sliced], attrs)
    ctx.annotate(sliced, activation_quant(ctx.tensor(op.outputs[0])))
    ctx.emit("Reshape", [sliced, _const_value(ctx, "shape", np.array(ctx.output_shape(op), np.int64))], [out])


# ---- quantization boundaries -------------------------------------------------------------------------------------
@rule("QUANTIZE", "DEQUANTIZE")
def _quantization(ctx: TfliteImporter, op: TfliteOperator) -> None:
    """An identity in float. The float side of the boundary takes the quantized side's parameters when it has
    none of its own: a float graph input before QUANTIZE, the float output after DEQUANTIZE."""
    x, out = ctx.value(op.inputs[0]), ctx.value(op.outputs[0])
    ctx.emit("Identity", [x], [out])
    if op.name == "QUANTIZE":
        ctx.annotate(x, activation_quant(ctx.tensor(op.outputs[0])), replace=False)
    else:
        ctx.annotate(out, activation_quant(ctx.tensor(op.inputs[0])))


# ---- convolutions ------------------------------------------------------------------------------------------------
def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite's SAME padding: the output is ceil(size / stride), the odd pixel of padding goes at the end."""
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    return total // 2, total - total // 2


@rule("CONV_2D", "DEPTHWISE_CONV_2D")
def _conv(ctx: TfliteImporter, op: TfliteOperator) -> None:
    """NHWC in and out around the IR's NCHW `Conv`: a Transpose on each side (layout ops, free of arithmetic).
    CONV_2D weights [O, kh, kw, I] become [O, I, kh, kw]; DEPTHWISE_CONV_2D weights [1, kh, kw, C*M] become
    [C*M, 1, kh, kw] with one group per input channel."""
    x = ctx.value(op.inputs[0])
    weight = ctx.tensor(op.inputs[1])
    if weight.data is None:
        raise UserError(f"{label(ctx, op)}: the filter is computed at run time; only constant filters are supported")
    _, height, width, channels = ctx.shape(x)
    real = dequantize(weight)
    if op.name == "CONV_2D":
        kernel = np.ascontiguousarray(real.transpose(0, 3, 1, 2))
        group, axis = channels // kernel.shape[1], 0
    else:
        kernel = np.ascontiguousarray(real.transpose(3, 0, 1, 2))
        group, axis = channels, 3
    stride = (int(op.option("StrideH", 1)), int(op.option("StrideW", 1)))
    dilation = (int(op.option("DilationHFactor", 1)), int(op.option("DilationWFactor", 1)))
    pads = (0, 0, 0, 0)
    if int(op.option("Padding", 0)) == 0:  # SAME
        top, bottom = _same_pads(height, kernel.shape[2], stride[0], dilation[0])
        left, right = _same_pads(width, kernel.shape[3], stride[1], dilation[1])
        pads = (top, left, bottom, right)
    w_name = ctx.fresh(f"{weight.name}_oihw")
    ctx.define_const(w_name, kernel, _weight_quant(ctx, op, axis, 0))
    inputs = [x, w_name] + ([ctx.value(op.inputs[2])] if len(op.inputs) > 2 and op.inputs[2] >= 0 else [])
    nchw = ctx.fresh(f"{x}_nchw")
    ctx.emit("Transpose", [x], [nchw], {"perm": (0, 3, 1, 2)})
    inputs[0] = nchw
    out = ctx.value(op.outputs[0])
    conv_out = ctx.fresh(f"{out}_nchw")
    ctx.emit_fused(op, "Conv", inputs, {"strides": stride, "dilations": dilation, "pads": pads, "group": group},
                   output=conv_out)
    ctx.annotate(conv_out, activation_quant(ctx.tensor(op.outputs[0])))
    ctx.emit("Transpose", [conv_out], [out], {"perm": (0, 2, 3, 1)})
