"""Reading a `.tflite` file into plain Python values. The only module that imports the `tflite` package (the
published TFLite flatbuffer schema, generated for Python).

A file is checked before anything is built from it: it must exist, be a flatbuffer with the `TFL3` identifier
and one main subgraph whose every tensor, buffer and operator code can be read; anything else is a one-line
`UserError`. The result is `TfliteModel`: the first subgraph's tensors (name, numpy dtype, shape, quantization,
constant data) and operators (builtin name, tensor indices, parsed options) in execution order.

Operator names are the schema's `BuiltinOperator` names (`FULLY_CONNECTED`, ...); a custom operator is named
`CUSTOM 'code'`. The operator code is `max(deprecated_builtin_code, builtin_code)`, as the schema asks (codes
above 127 exist only in the 32-bit field).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from mcu_attn.errors import UserError

# schema TensorType -> numpy dtype (STRING, COMPLEX, RESOURCE, VARIANT, INT4 and BFLOAT16 are absent: refused)
DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
          9: np.int8, 10: np.float64, 12: np.uint64, 15: np.uint32, 16: np.uint16}
TYPE_NAMES = {5: "STRING", 8: "COMPLEX64", 11: "COMPLEX128", 13: "RESOURCE", 14: "VARIANT", 17: "INT4",
              18: "BFLOAT16"}


@dataclass(frozen=True)
class TfliteQuant:
    """real = scale * (q - zero_point), per tensor (axis None) or per channel along `axis`."""
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None


@dataclass(frozen=True)
class TfliteTensor:
    index: int
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    signature: tuple[int, ...]     # shape_signature: -1 marks a dynamic dimension
    quant: TfliteQuant | None
    data: np.ndarray | None        # the constant's values (in `dtype`, shaped), None for a run-time tensor


@dataclass(frozen=True)
class TfliteOperator:
    index: int
    name: str                      # BuiltinOperator name, or "CUSTOM 'code'"
    inputs: tuple[int, ...]        # tensor indices; -1 is an omitted optional input
    outputs: tuple[int, ...]
    options: Any                   # the schema's options object for this operator, or None

    def option(self, getter: str, default: Any) -> Any:
        """An option's value (`FusedActivationFunction`, `Axis`, ...), or `default` when the operator has none."""
        read = getattr(self.options, getter, None)
        return default if read is None else read()


@dataclass(frozen=True)
class TfliteModel:
    path: str
    tensors: tuple[TfliteTensor, ...]
    operators: tuple[TfliteOperator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def is_tflite(path: object) -> bool:
    """Whether `path` names a TFLite model: a `.tflite` suffix, or the `TFL3` flatbuffer identifier (anything
    else, an in-memory ONNX model included, is not)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    if os.fspath(path).lower().endswith(".tflite"):
        return True
    try:
        with open(path, "rb") as stream:
            return stream.read(8)[4:8] == b"TFL3"
    except OSError:
        return False


def read_tflite(path: str | os.PathLike) -> TfliteModel:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, expected a .tflite file")
    with open(path, "rb") as stream:
        buffer = stream.read()
    if len(buffer) < 8 or buffer[4:8] != b"TFL3":
        raise UserError(f"{path}: not a TFLite model (no TFL3 flatbuffer identifier)")
    try:
        return _parse(path, buffer)
    except UserError:
        raise
    except Exception as error:  # the generated accessors raise struct/index/unicode errors on a damaged file
        raise UserError(f"{path}: damaged TFLite model ({type(error).__name__} while reading it)") from None


def _parse(path: str, buffer: bytes) -> TfliteModel:
    import tflite
    from tflite.utils import BUILTIN_OPCODE2NAME

    model = tflite.Model.GetRootAs(buffer, 0)
    if model.SubgraphsLength() < 1:
        raise UserError(f"{path}: TFLite model without a subgraph")
    graph = model.Subgraphs(0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        if builtin == 32:  # CUSTOM
            custom = (code.CustomCode() or b"").decode("utf-8", "replace")
            codes.append(f"CUSTOM '{custom}'")
        else:
            codes.append(BUILTIN_OPCODE2NAME.get(builtin, f"builtin operator {builtin}"))
    tensors = tuple(_tensor(model, graph.Tensors(i), i, buffer, path) for i in range(graph.TensorsLength()))
    operators = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if not 0 <= op.OpcodeIndex() < len(codes):
            raise UserError(f"{path}: operator {i} has operator code {op.OpcodeIndex()}, the model has {len(codes)}")
        inputs, outputs = _indices(op.InputsAsNumpy(), len(tensors), True), _indices(op.OutputsAsNumpy(), len(tensors))
        if inputs is None or not outputs:
            raise UserError(f"{path}: operator {i} ({codes[op.OpcodeIndex()]}) names tensors the subgraph does not "
                            f"have (it has {len(tensors)})")
        operators.append(TfliteOperator(i, codes[op.OpcodeIndex()], inputs, outputs, _options(op)))
    inputs, outputs = _indices(graph.InputsAsNumpy(), len(tensors)), _indices(graph.OutputsAsNumpy(), len(tensors))
    if not inputs or not outputs:
        raise UserError(f"{path}: the subgraph's inputs or outputs are missing or name tensors it does not have")
    return TfliteModel(path, tensors, tuple(operators), inputs, outputs)


def _indices(values, count: int, optional: bool = False) -> tuple[int, ...] | None:
    """Tensor indices as ints, or None when one is out of range (-1, an omitted input, only if `optional`)."""
    indices = tuple(int(v) for v in (values if not isinstance(values, int) else ()))
    low = -1 if optional else 0
    return indices if all(low <= i < count for i in indices) else None


def _options(op) -> Any:
    """The operator's options table as its schema class (FullyConnectedOptions, ...), or None."""
    import tflite

    kind = op.BuiltinOptionsType()
    table = op.BuiltinOptions()
    if not kind or table is None:
        return None
    names = {value: name for name, value in vars(tflite.BuiltinOptions).items() if not name.startswith("_")}
    options = getattr(tflite, names[kind])()
    options.Init(table.Bytes, table.Pos)
    return options


def _tensor(model, tensor, index: int, buffer: bytes, path: str) -> TfliteTensor:
    name = (tensor.Name() or b"").decode("utf-8", "replace") or f"tensor_{index}"
    kind = tensor.Type()
    if kind not in DTYPES:
        raise UserError(f"{path}: tensor {name!r} has type {TYPE_NAMES.get(kind, kind)}, which is not supported")
    if tensor.Sparsity() is not None:
        raise UserError(f"{path}: tensor {name!r} is stored sparse, which is not supported")
    dtype = np.dtype(DTYPES[kind])
    shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
    signature = tuple(int(d) for d in tensor.ShapeSignatureAsNumpy()) if tensor.ShapeSignatureLength() else shape
    data = None
    raw = _buffer_bytes(model.Buffers(tensor.Buffer()), buffer) if tensor.Buffer() else b""
    if raw:
        count = int(np.prod(shape, dtype=np.int64))
        if len(raw) != count * dtype.itemsize:
            raise UserError(f"{path}: tensor {name!r} holds {len(raw)} bytes, its shape {list(shape)} needs "
                            f"{count * dtype.itemsize}")
        data = np.frombuffer(raw, dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    quant = _quant(tensor.Quantization())
    if quant is not None:
        _check_quant(quant, dtype, shape, f"{path}: tensor {name!r}")
    return TfliteTensor(index, name, dtype, shape, signature, quant, data)


def _check_quant(quant: TfliteQuant, dtype: np.dtype, shape: tuple[int, ...], what: str) -> None:
    """Scales finite and positive, one zero point or one per scale within the integer type's range, and a
    per-channel axis with one scale per channel."""
    if not all(np.isfinite(s) and s > 0 for s in quant.scale):
        raise UserError(f"{what} has a quantization scale that is not finite and positive")
    if len(quant.zero_point) not in (1, len(quant.scale)):
        raise UserError(f"{what} has {len(quant.zero_point)} zero points for {len(quant.scale)} scales")
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not all(info.min <= z <= info.max for z in quant.zero_point):
            raise UserError(f"{what} has a zero point outside the {dtype.name} range")
    if quant.axis is not None and not (0 <= quant.axis < len(shape) and shape[quant.axis] == len(quant.scale)):
        raise UserError(f"{what} has {len(quant.scale)} per-channel scales along axis {quant.axis} of shape "
                        f"{list(shape)}")


def _buffer_bytes(entry, buffer: bytes) -> bytes:
    """A buffer's bytes: inside the flatbuffer, or (models over 2 GB) at an offset in the file."""
    if entry.Offset() > 1:
        return buffer[entry.Offset(): entry.Offset() + entry.Size()]
    return entry.DataAsNumpy().tobytes() if entry.DataLength() else b""


def _quant(params) -> TfliteQuant | None:
    if params is None or not params.ScaleLength():
        return None
    scale = tuple(float(s) for s in params.ScaleAsNumpy())
    zero = tuple(int(z) for z in params.ZeroPointAsNumpy()) if params.ZeroPointLength() else (0,) * len(scale)
    return TfliteQuant(scale, zero, None if len(scale) == 1 else int(params.QuantizedDimension()))
