"""The op table: one entry per IR op, declared by decorating its numpy reference.

An op is one unit, and one module holds all of it: the reference (which is the spec), what kind of op it is,
how the quantizer turns it into integer ops and how the code generator turns it into kernel calls. The C
kernels it calls live in `firmware_templates/kernels` and are found by name (`codegen/kernels.py`). Adding an op
means one module here (imported by `__init__.py`), its kernel sources and its tests; no other file lists ops.

The reference function *is* the spec:
- positional parameters are the inputs (a default of None makes an input optional, `*xs` makes it variadic);
- keyword-only parameters are the attributes, with their defaults;
- the return value is one array or a tuple of arrays (one per output).
Output types are inferred by running the reference on zero-filled inputs of the right types (constants with
their real values), so the shape rule can never disagree with the reference.

Metadata given to `op(...)`:
- `kind` (one of `KINDS`): what passes may assume about the op without naming it;
- `const_inputs`: inputs that must be graph constants (weights, shapes, axes);
- `params`: inputs that hold learned parameters when they are constants ("all": every input), counted by
  `inspect`; integer constants count only for ops with `integer_params` (the weights of pre-quantized matmuls);
- `allows_inf`: an infinite constant input is meaningful (an additive mask, an open bound), not a broken weight;
- `macs` counts multiply-accumulates; `onnx` names the ONNX ops (domain-qualified outside the default domain)
  that import into this op with their attributes unchanged (ops needing an opset-aware translation register an
  importer in the frontend instead);
- `quantize`: the rule that converts the float op into integer ops (see `passes/quantize.py`); shared rules
  (tables, layout) are passed here, op-specific ones are registered with `@quantizes(...)` right after the op.
Code generation is registered with `@emits(...)` (see `lowering.py`). An op without a quantize rule is refused
by the quantizer, an op without an emitter by the code generator, each naming the op.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.types import TensorType, dtype_name

if TYPE_CHECKING:
    from mcu_attn.ir.ops.lowering import Emitter

KINDS = {
    "layout": "moves elements of input 0 unchanged (its other inputs are constants): every output element is "
              "an input element, so the op works on any element type and keeps quantization parameters",
    "concat": "joins its inputs along an axis",
    "elementwise": "float arithmetic per element with numpy broadcasting",
    "logic": "comparisons, boolean logic, selection and casts",
    "reduce": "reductions over axes (means, sums, maxima, softmax)",
    "matmul": "matrix products",
    "conv": "convolutions",
    "lookup": "rows of a constant table picked by run-time integer ids (embeddings)",
    "norm": "normalisations over the last axis",
    "attention": "fused multi-head attention",
    "quant": "quantization ops and quantized matrix products of pre-quantized ONNX models",
    "integer": "this IR's integer-only ops, each the reference of a C kernel (docs/integer-kernels.md)",
}


@dataclass(frozen=True)
class OpSpec:
    name: str
    reference: Callable[..., Any]
    min_inputs: int
    max_inputs: int | None  # None: variadic
    attrs: dict[str, Any]
    kind: str
    const_inputs: frozenset[int] = frozenset()
    params: tuple[int, ...] | Literal["all"] = ()
    integer_params: bool = False
    allows_inf: bool = False
    macs: Callable[[Node, Graph], int] | None = None
    onnx: tuple[str, ...] = field(default_factory=tuple)
    quantize: Callable[[Any, Node], None] | None = None
    emitter: "Emitter | None" = None
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

    def is_param(self, position: int) -> bool:
        """Whether a constant at input `position` is a learned parameter (see the module docstring)."""
        return self.params == "all" or position in self.params


OPS: dict[str, OpSpec] = {}


def op(name: str, *, kind: str, const_inputs: tuple[int, ...] = (), params: tuple[int, ...] | Literal["all"] = (),
       integer_params: bool = False, allows_inf: bool = False, macs: Callable[[Node, Graph], int] | None = None,
       onnx: str | tuple[str, ...] | None = None,
       quantize: Callable[[Any, Node], None] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn` as the reference (and spec) of IR op `name`."""
    if kind not in KINDS:
        raise ValueError(f"op {name}: unknown kind {kind!r}")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in OPS:
            raise ValueError(f"op {name} registered twice")
        parameters = inspect.signature(fn).parameters.values()
        positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        variadic = any(p.kind == p.VAR_POSITIONAL for p in parameters)
        attrs = {p.name: p.default for p in parameters if p.kind == p.KEYWORD_ONLY}
        required = sum(1 for p in positional if p.default is inspect.Parameter.empty)
        onnx_names = (name,) if onnx is None else ((onnx,) if isinstance(onnx, str) else tuple(onnx))
        OPS[name] = OpSpec(name, fn, required if not variadic else max(required, 1),
                           None if variadic else len(positional), attrs, kind, frozenset(const_inputs), params,
                           integer_params, allows_inf, macs, onnx_names, quantize, None, (fn.__doc__ or "").strip())
        return fn

    return register


def _attach(names: tuple[str, ...], what: str, value: Any) -> None:
    for name in names:
        current = spec(name)
        if getattr(current, what) is not None:
            raise ValueError(f"op {name}: {what} registered twice")
        OPS[name] = replace(current, **{what: value})


def quantizes(*names: str) -> Callable[[Callable[[Any, Node], None]], Callable[[Any, Node], None]]:
    """Register `fn(converter, node)` as the quantize rule of the (already registered) ops `names`."""

    def register(fn: Callable[[Any, Node], None]) -> Callable[[Any, Node], None]:
        _attach(names, "quantize", fn)
        return fn

    return register


def attach_emitter(names: tuple[str, ...], emitter: "Emitter") -> None:
    _attach(names, "emitter", emitter)


def spec(name: str) -> OpSpec:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown IR op {name!r}") from None


def is_kind(op_name: str, *kinds: str) -> bool:
    """Whether IR op `op_name` is of one of `kinds` (False for a name that is no IR op)."""
    found = OPS.get(op_name)
    return found is not None and found.kind in kinds


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
