"""Structural checks of an IR graph, run after every pass.

Single assignment, topological order, every value typed, constants where an op needs them, attributes the op
knows, no NaN constants (-inf is legal: additive masks), and recorded types equal to what each op's reference infers (shapes and dtypes; quantization
parameters are annotations the inference does not produce).
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Graph
from mcu_attn.ir.ops import infer_types, spec


class VerifyError(Exception):
    pass


def verify(graph: Graph) -> None:
    defined: set[str] = set()
    for name in list(graph.inputs) + list(graph.constants):
        if name in defined:
            raise VerifyError(f"value {name} defined twice")
        if name not in graph.types:
            raise VerifyError(f"value {name} has no type")
        defined.add(name)
    for name, array in graph.constants.items():
        if tuple(array.shape) != graph.types[name].shape:
            raise VerifyError(f"constant {name} has shape {array.shape}, its type says {graph.types[name].shape}")
    for node in graph.nodes:
        label = f"{node.op} node {node.name or node.outputs[0]}"
        try:
            op_spec = spec(node.op)
        except KeyError as err:
            raise VerifyError(str(err)) from None
        try:
            op_spec.resolve_attrs(node)
        except ValueError as err:
            raise VerifyError(f"{label}: {err}") from None
        present = len(node.inputs)
        if present < op_spec.min_inputs or (op_spec.max_inputs is not None and present > op_spec.max_inputs):
            raise VerifyError(f"{label}: {present} inputs")
        for position, value in enumerate(node.inputs):
            if value and value not in defined:
                raise VerifyError(f"{label} reads {value} before it is defined")
            if value and position in op_spec.const_inputs and not graph.is_const(value):
                raise VerifyError(f"{label}: input {position} ({value}) must be a constant")
        inferred = infer_types(graph, node)
        for value, ttype in zip(node.outputs, inferred):
            if not value:
                continue
            if value in defined:
                raise VerifyError(f"{label} redefines {value}")
            recorded = graph.types.get(value)
            if recorded is None:
                raise VerifyError(f"{label}: output {value} has no type")
            if (recorded.dtype, recorded.shape) != (ttype.dtype, ttype.shape) and not _int4_container(recorded, ttype):
                raise VerifyError(f"{label}: output {value} recorded as {recorded.describe()}, "
                                  f"the op gives {ttype.describe()}")
            defined.add(value)
    for name in graph.outputs:
        if name not in defined:
            raise VerifyError(f"graph output {name} is never defined")
    for name, array in graph.constants.items():
        if np.issubdtype(array.dtype, np.floating) and np.isnan(array).any():
            raise VerifyError(f"constant {name} holds NaN")


def _int4_container(recorded, inferred) -> bool:
    """Sub-byte values may be held in int8/uint8 arrays (see types.py)."""
    return (recorded.shape == inferred.shape
            and (recorded.dtype, inferred.dtype) in {("int4", "int8"), ("uint4", "uint8"), ("int2", "int8"),
                                                     ("uint2", "uint8")})
