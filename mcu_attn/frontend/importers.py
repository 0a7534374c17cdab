"""Opset-aware translations of ONNX nodes into IR nodes, one rule per ONNX op that needs more than a copy.

A rule gets the `ImportContext` and the node (op type, domain, input and output names, attributes already
turned into Python values) and emits IR nodes or constants. Ops without a rule whose name is an IR op with
ONNX semantics import as they are. Inputs that fix shapes (axes, starts, split sizes, ...) must be constants
after folding; they become attributes so every IR shape is static.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from mcu_attn.errors import UserError


@dataclass
class OnnxNode:
    op_type: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    name: str
    opset: int

    @property
    def label(self) -> str:
        return f"{self.op_type} (node '{self.name or self.outputs[0]}')"


class ImportContext(Protocol):
    def const(self, value: str) -> np.ndarray | None: ...
    def shape(self, value: str) -> tuple[int, ...]: ...
    def dtype(self, value: str) -> str: ...
    def emit(self, op: str, inputs: list[str], outputs: list[str], attrs: dict[str, Any] | None = None) -> None: ...
    def define_const(self, value: str, array: np.ndarray) -> None: ...
    def fresh(self, hint: str) -> str: ...


Rule = Callable[[ImportContext, OnnxNode], None]
RULES: dict[tuple[str, str], Rule] = {}
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
               10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 21: "uint4", 22: "int4", 25: "uint2",
               26: "int2"}


def rule(*op_types: str, domain: str = "") -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for op_type in op_types:
            RULES[(domain, op_type)] = fn
        return fn
    return register


def const_input(ctx: ImportContext, node: OnnxNode, position: int, what: str) -> np.ndarray | None:
    """The constant value of an optional input, or None when absent; a runtime value is a UserError."""
    if position >= len(node.inputs) or not node.inputs[position]:
        return None
    value = ctx.const(node.inputs[position])
    if value is None:
        raise UserError(f"{node.label}: {what} must be constant (it decides a shape), but it is computed at run time")
    return value


def _ints(array: np.ndarray | None) -> tuple[int, ...] | None:
    return None if array is None else tuple(int(v) for v in np.asarray(array).reshape(-1))


# ---- folded away: shape arithmetic on static shapes ---------------------------------------------------------
@rule("Constant")
def _constant(ctx: ImportContext, node: OnnxNode) -> None:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            value = np.asarray(node.attrs[key])
            if key in ("value_float", "value_floats"):
                value = value.astype(np.float32)
            elif key in ("value_int", "value_ints"):
                value = value.astype(np.int64)
            ctx.define_const(node.outputs[0], value)
            return
    raise UserError(f"{node.label}: unsupported Constant attribute {sorted(node.attrs)}")


@rule("Shape")
def _shape(ctx: ImportContext, node: OnnxNode) -> None:
    dims = np.array(ctx.shape(node.inputs[0]), np.int64)
    start, end = node.attrs.get("start", 0), node.attrs.get("end", None)
    ctx.define_const(node.outputs[0], dims[start:end])


@rule("Size")
def _size(ctx: ImportContext, node: OnnxNode) -> None:
    ctx.define_const(node.outputs[0], np.array(int(np.prod(ctx.shape(node.inputs[0]), dtype=np.int64)), np.int64))


# ---- axes and shapes from inputs become attributes --------------------------------------------------------
@rule("Squeeze", "Unsqueeze")
def _squeeze(ctx: ImportContext, node: OnnxNode) -> None:
    axes = _ints(const_input(ctx, node, 1, "axes")) if node.opset >= 13 else _ints(node.attrs.get("axes"))
    attrs = {} if axes is None else {"axes": axes}
    ctx.emit(node.op_type, node.inputs[:1], node.outputs, attrs)


@rule("ReduceMean", "ReduceSum", "ReduceMax")
def _reduce(ctx: ImportContext, node: OnnxNode) -> None:
    takes_input = node.opset >= 18 or (node.op_type == "ReduceSum" and node.opset >= 13)
    axes = _ints(const_input(ctx, node, 1, "axes")) if takes_input else _ints(node.attrs.get("axes"))
    attrs = {k: v for k, v in node.attrs.items() if k in ("keepdims", "noop_with_empty_axes")}
    if axes is not None:
        attrs["axes"] = axes
    ctx.emit(node.op_type, node.inputs[:1], node.outputs, attrs)


@rule("Split")
def _split(ctx: ImportContext, node: OnnxNode) -> None:
    sizes = _ints(const_input(ctx, node, 1, "split")) if node.opset >= 13 else _ints(node.attrs.get("split"))
    attrs: dict[str, Any] = {"axis": node.attrs.get("axis", 0)}
    if sizes:
        attrs["split"] = sizes
    else:
        attrs["num_outputs"] = node.attrs.get("num_outputs", len(node.outputs))
    ctx.emit("Split", node.inputs[:1], node.outputs, attrs)


@rule("Slice")
def _slice(ctx: ImportContext, node: OnnxNode) -> None:
    if node.opset < 10:
        parts = [_ints(node.attrs.get(k)) for k in ("starts", "ends", "axes")] + [None]
    else:
        parts = [_ints(const_input(ctx, node, i, k)) for i, k in enumerate(("starts", "ends", "axes", "steps"), 1)]
    attrs = {k: v for k, v in zip(("starts", "ends", "axes", "steps"), parts) if v is not None}
    ctx.emit("Slice", node.inputs[:1], node.outputs, attrs)


@rule("Softmax", "LogSoftmax")
def _softmax(ctx: ImportContext, node: OnnxNode) -> None:
    rank = len(ctx.shape(node.inputs[0]))
    axis = node.attrs.get("axis", -1 if node.opset >= 13 else 1) % max(rank, 1)
    if node.opset < 13 and axis != rank - 1:
        raise UserError(f"{node.label}: opset-{node.opset} softmax over axes {axis}.. is not supported; "
                        "re-export with opset >= 13")
    ctx.emit(node.op_type, node.inputs, node.outputs, {"axis": axis})


@rule("Clip")
def _clip(ctx: ImportContext, node: OnnxNode) -> None:
    inputs = list(node.inputs)
    if node.opset < 11:
        for key, default in (("min", -3.4028234663852886e38), ("max", 3.4028234663852886e38)):
            name = ctx.fresh(f"{node.outputs[0]}_{key}")
            ctx.define_const(name, np.array(node.attrs.get(key, default), np.float32))
            inputs.append(name)
    ctx.emit("Clip", inputs, node.outputs)


@rule("Cast")
def _cast(ctx: ImportContext, node: OnnxNode) -> None:
    to = node.attrs["to"]
    if to not in ONNX_DTYPES:
        raise UserError(f"{node.label}: cast to ONNX type {to} is not supported")
    ctx.emit("Cast", node.inputs, node.outputs, {"to": ONNX_DTYPES[to]})


@rule("QuantizeLinear")
def _quantize(ctx: ImportContext, node: OnnxNode) -> None:
    attrs = {k: v for k, v in node.attrs.items() if k in ("axis", "block_size", "saturate")}
    if "output_dtype" in node.attrs and node.attrs["output_dtype"]:
        attrs["output_dtype"] = ONNX_DTYPES[node.attrs["output_dtype"]]
    ctx.emit("QuantizeLinear", node.inputs, node.outputs, attrs)


@rule("Dropout")
def _dropout(ctx: ImportContext, node: OnnxNode) -> None:
    ctx.emit("Identity", node.inputs[:1], node.outputs[:1])


@dataclass
class Unsupported:
    """Collects every node the frontend cannot import so the error lists them all at once."""

    labels: list[str] = field(default_factory=list)

    def raise_if_any(self) -> None:
        if self.labels:
            shown = ", ".join(self.labels[:12]) + (f" and {len(self.labels) - 12} more" if len(self.labels) > 12 else "")
            raise UserError(f"unsupported ONNX ops: {shown}")


from mcu_attn.frontend import onnx_attention  # noqa: E402,F401  (registers the Attention rule; imports this module)
