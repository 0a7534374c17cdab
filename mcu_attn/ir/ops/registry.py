"""The op table: one entry per IR op, declared by decorating its numpy reference.

An op is one unit. Its reference function *is* its spec:
- positional parameters are the inputs (a default of None makes an input optional, `*xs` makes it variadic);
- keyword-only parameters are the attributes, with their defaults;
- `const_inputs` names the inputs that must be graph constants (weights, shapes, axes);
- the return value is one array or a tuple of arrays (one per output).
Output types are inferred by running the reference on zero-filled inputs of the right types (constants with
their real values), so the shape rule can never disagree with the reference. `macs` counts multiply-accumulates.
`onnx` names the ONNX op (domain-qualified when not the default domain) that imports into this op with its
attributes unchanged; ops that need an opset-aware translation register an importer in the frontend instead.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.types import TensorType, dtype_name


@dataclass(frozen=True)
class OpSpec:
    name: str
    reference: Callable[..., Any]
    min_inputs: int
    max_inputs: int | None  # None: variadic
    attrs: dict[str, Any]
    const_inputs: frozenset[int] = frozenset()
    macs: Callable[[Node, Graph], int] | None = None
    onnx: tuple[str, ...] = field(default_factory=tuple)
    doc: str = ""

    def resolve_attrs(self, node: Node) -> dict[str, Any]:
        unknown = set(node.attrs) - set(self.attrs)
        if unknown:
            raise ValueError(f"{self.name} has no attribute(s) {sorted(unknown)}")
        return {**self.attrs, **node.attrs}

    def run(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        with np.errstate(all="ignore"):
            result = self.reference(*inputs, **self.resolve_attrs(node))
        outputs = list(result) if isinstance(result, (tuple, list)) else [result]
        return [np.asarray(o) for o in outputs]


OPS: dict[str, OpSpec] = {}


def op(name: str, *, const_inputs: tuple[int, ...] = (), macs: Callable[[Node, Graph], int] | None = None,
       onnx: str | tuple[str, ...] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn` as the reference (and spec) of IR op `name`."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in OPS:
            raise ValueError(f"op {name} registered twice")
        params = inspect.signature(fn).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        variadic = any(p.kind == p.VAR_POSITIONAL for p in params)
        attrs = {p.name: p.default for p in params if p.kind == p.KEYWORD_ONLY}
        required = sum(1 for p in positional if p.default is inspect.Parameter.empty)
        onnx_names = (name,) if onnx is None else ((onnx,) if isinstance(onnx, str) else tuple(onnx))
        OPS[name] = OpSpec(name, fn, required if not variadic else max(required, 1),
                           None if variadic else len(positional), attrs, frozenset(const_inputs), macs,
                           onnx_names, (fn.__doc__ or "").strip())
        return fn

    return register


def spec(name: str) -> OpSpec:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown IR op {name!r}") from None


def infer_types(graph: Graph, node: Node) -> list[TensorType]:
    """Output types of `node`: run its reference on zeros shaped like its inputs (constants as they are)."""
    args: list[np.ndarray | None] = []
    for value in node.inputs:
        if not value:
            args.append(None)
        elif graph.is_const(value):
            args.append(graph.const(value))
        else:
            ttype = graph.type(value)
            args.append(np.zeros(ttype.shape, ttype.np_dtype))
    outputs = spec(node.op).run(node, args)
    return [TensorType(dtype_name(o.dtype), tuple(int(d) for d in o.shape)) for o in outputs]


def node_macs(graph: Graph, node: Node) -> int:
    rule = spec(node.op).macs
    return int(rule(node, graph)) if rule else 0
