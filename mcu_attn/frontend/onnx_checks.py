"""What the ONNX frontend refuses, and where: every malformed model ends in one `UserError` naming the tensor,
attribute, input or node, never in an exception from numpy, onnx or the IR.

Before anything is decoded (`check_model`):
- the model has at least one output;
- onnx's checker and its strict shape inference (type checking on) accept it: the ONNX specification decides
  what is a valid model, exactly as onnxruntime does when it loads one;
- every tensor (initializers, Constant values, tensor attributes) has an element type the IR holds (floats,
  integers, bool, int4/int2; not string, bfloat16, float8, complex, undefined or unknown codes), dims that are
  non-negative and at most `MAX_TENSOR_BYTES` in total, and exactly as much data as its dims say (raw bytes or
  typed values); sparse and segmented tensors are refused;
- string attributes are UTF-8 and float attributes are finite;
- graph inputs have element types the IR holds.
While importing: every graph input, constant and computed value is at most `MAX_TENSOR_BYTES`, checked from
onnx's inferred shapes before the importer allocates anything (`check_inferred_sizes`) and again on each value
the builder types; after importing, constants and divisors are checked as for every frontend (graph_checks.py).
"""

from __future__ import annotations

import math
from typing import Iterable

import onnx
from onnx import AttributeProto, TensorProto

from mcu_attn.errors import UserError
from mcu_attn.frontend.graph_checks import check_size

# ONNX element types the IR holds: numpy item size in bytes, or the bits of a packed sub-byte type
ELEMENT_BITS = {TensorProto.FLOAT: 32, TensorProto.UINT8: 8, TensorProto.INT8: 8, TensorProto.UINT16: 16,
                TensorProto.INT16: 16, TensorProto.INT32: 32, TensorProto.INT64: 64, TensorProto.BOOL: 8,
                TensorProto.FLOAT16: 16, TensorProto.DOUBLE: 64, TensorProto.UINT32: 32, TensorProto.UINT64: 64,
                TensorProto.UINT4: 4, TensorProto.INT4: 4, TensorProto.UINT2: 2, TensorProto.INT2: 2}
_PACKED_IN_INT32 = {TensorProto.UINT4, TensorProto.INT4, TensorProto.UINT2, TensorProto.INT2}
def type_name(code: int) -> str:
    try:
        return TensorProto.DataType.Name(code)
    except ValueError:
        return f"{code} (unknown)"


def _count(dims: Iterable[int]) -> int:
    return math.prod(int(d) for d in dims)


def _nbytes(count: int, code: int) -> int:
    return -(-count * ELEMENT_BITS[code] // 8)


def check_tensor(tensor: TensorProto, what: str) -> None:
    """Refuse a tensor the importer cannot decode exactly and cheaply (see the module docstring)."""
    if tensor.data_type not in ELEMENT_BITS:
        raise UserError(f"{what} has element type {type_name(tensor.data_type)}, which mcu-attn does not import "
                        "(floats, integers, bool and int4/int2 only)")
    if tensor.HasField("segment"):
        raise UserError(f"{what} is a segment of a tensor; segmented tensors are not supported")
    if any(d < 0 for d in tensor.dims):
        raise UserError(f"{what} has a negative dimension {list(tensor.dims)}")
    count = _count(tensor.dims)
    check_size(what, list(tensor.dims), _nbytes(count, tensor.data_type))
    if tensor.data_location == TensorProto.EXTERNAL:
        return  # the external file's size is checked when onnx loads it; its data is then raw bytes
    code = tensor.data_type
    if tensor.HasField("raw_data"):
        have, need, unit = len(tensor.raw_data), _nbytes(count, code), "bytes of raw data"
    else:
        field = onnx.helper.tensor_dtype_to_field(code)
        have = len(getattr(tensor, field))
        need = -(-count * ELEMENT_BITS[code] // 8) if code in _PACKED_IN_INT32 else count
        unit = f"values in {field}"
        if have == 0 and count:
            need, unit = count, "values (the tensor has no data)"
    if have != need:
        raise UserError(f"{what}: dims {list(tensor.dims)} need {need} {unit}, the model has {have}")


def _check_attribute(attr: AttributeProto, node: str) -> None:
    what = f"attribute {attr.name!r} of {node}"
    if attr.type == AttributeProto.STRING or attr.type == AttributeProto.STRINGS:
        for value in ([attr.s] if attr.type == AttributeProto.STRING else list(attr.strings)):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{what} is not UTF-8 text ({value[:16]!r})") from None
    elif attr.type in (AttributeProto.FLOAT, AttributeProto.FLOATS):
        values = [attr.f] if attr.type == AttributeProto.FLOAT else list(attr.floats)
        if not all(math.isfinite(v) for v in values) and not _constant_value(attr, node):
            raise UserError(f"{what} is {next(v for v in values if not math.isfinite(v))}; attributes must be finite")
    elif attr.type == AttributeProto.TENSOR:
        check_tensor(attr.t, f"tensor {attr.t.name or attr.name!r} of {node}")
    elif attr.type == AttributeProto.TENSORS:
        for tensor in attr.tensors:
            check_tensor(tensor, f"tensor {tensor.name or attr.name!r} of {node}")
    elif attr.type in (AttributeProto.SPARSE_TENSOR, AttributeProto.SPARSE_TENSORS):
        raise UserError(f"{what} is a sparse tensor; sparse tensors are not supported")


def _constant_value(attr: AttributeProto, node: str) -> bool:
    """value_float(s) of a Constant is tensor data: checked like a weight once the graph is imported."""
    return node.startswith("Constant ") and attr.name in ("value_float", "value_floats")


def _node_label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} (node '{node.name or (node.output[0] if node.output else '?')}')"


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_model(model: onnx.ModelProto, label: str) -> None:
    """Refuse, before any tensor is decoded, a model the importer cannot read safely (`label` names the file)."""
    graph = model.graph
    if not graph.output:
        raise UserError(f"{label}: the model has no outputs")
    if graph.sparse_initializer:
        raise UserError(f"{label}: sparse initializer {graph.sparse_initializer[0].values.name!r}: sparse tensors "
                        "are not supported")
    for tensor in graph.initializer:
        check_tensor(tensor, f"initializer {tensor.name!r}")
    for value in graph.input:
        code = value.type.tensor_type.elem_type
        if value.type.HasField("tensor_type") and code not in ELEMENT_BITS:
            raise UserError(f"input {value.name!r} has element type {type_name(code)}, which mcu-attn does not "
                            "import")
    for node in graph.node:
        for attr in node.attribute:
            _check_attribute(attr, _node_label(node))
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as err:  # onnx raises ValidationError, InferenceError, and others for bad models
        raise UserError(f"{label}: invalid ONNX model: {_first_line(err)}") from None


def check_inferred_sizes(model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse a model whose values onnx's shape inference (inputs fixed to `input_shapes`) shows above the size
    limit, before the importer allocates them. Dims inference cannot fix are skipped (the importer checks each
    value again as it types it)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name in input_shapes:
            shape = value.type.tensor_type.shape
            del shape.dim[:]
            for size in input_shapes[value.name]:
                shape.dim.add().dim_value = int(size)
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception:  # noqa: BLE001  (check_model ran strict inference already; this pass only bounds sizes)
        return
    producers = {out: node for node in fixed.graph.node for out in node.output}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type not in ELEMENT_BITS or not tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        if any(d is None for d in dims):
            continue
        node = producers.get(value.name)
        what = f"value {value.name!r}" + (f" of {_node_label(node)}" if node is not None else "")
        check_size(what, dims, _nbytes(_count(dims), tensor_type.elem_type))
