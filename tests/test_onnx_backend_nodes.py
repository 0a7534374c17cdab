"""The ONNX project's own backend node tests, run through `mcu_attn.api.run_reference`.

onnx builds these cases in Python when their module is imported (each `export()` runs its numpy reference with
a fixed seed and records inputs and expected outputs); the installed wheel ships no `data/node` files. Only the
modules of the ops we import are loaded, so collecting takes about a second instead of half a minute.

Selection: every case whose single node is one of `OPS` (or whose `_expanded` function body uses only ops the
frontend imports), whose tensors are all plain tensors, and whose floating-point tensors are all float32 with at
least one float32 tensor. float16/bfloat16/double/float8 cases test other dtypes, and cases without a float are
integer arithmetic the float reference never meets, except for the ops in `NO_FLOAT_CASES`: onnx ships only
integer and bool cases for them, and they matter because mask construction runs through them (folded).
Integer and bool inputs are bound as constants by `run_reference`, as they are in real models.
"""

from __future__ import annotations

import importlib

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx.backend.test.case import node as onnx_node_cases

from mcu_attn.api import run_reference, supported_onnx_ops

OPS = (
    "MatMul Gemm Softmax LayerNormalization Gelu Add Sub Mul Div Transpose Reshape Erf Sqrt Pow ReduceMean Attention "
    "Concat Gather Slice Squeeze Unsqueeze Relu Tanh Sigmoid Where Cast Split Expand Clip Exp Neg Reciprocal Max Min "
    "Flatten ReduceSum ReduceMax Tile LogSoftmax QuantizeLinear DequantizeLinear QLinearMatMul Equal Less Greater "
    "Not And Or Abs Log Identity"
).split()
NO_FLOAT_CASES = {"Equal", "Not", "And", "Or"}
# onnx's module per op: the lower-case op name, with a trailing "_" for Python keywords.
MODULES = {op: {"Not": "not_", "And": "and_", "Or": "or_"}.get(op, op.lower()) for op in OPS}

FLOAT32 = onnx.TensorProto.FLOAT
NON_FLOAT32_FLOATS = {t for name, t in onnx.TensorProto.DataType.items()
                      if ("FLOAT" in name or "DOUBLE" in name or "COMPLEX" in name) and t != FLOAT32}


def _elem_types(graph: onnx.GraphProto) -> list[int | None]:
    """Element type of every graph input and output; None for sequences, optionals and maps."""
    return [v.type.tensor_type.elem_type if v.type.HasField("tensor_type") else None
            for v in list(graph.input) + list(graph.output)]


def _selected(case, supported: set[str]) -> bool:
    graph = case.model.graph
    if "_expanded" in case.name:
        if not all((f"{n.domain}.{n.op_type}" if n.domain else n.op_type) in supported for n in graph.node):
            return False
        op = case.name  # the op is not in one node; NO_FLOAT_CASES never applies
    elif len(graph.node) == 1 and graph.node[0].domain in ("", "ai.onnx") and graph.node[0].op_type in OPS:
        op = graph.node[0].op_type
    else:
        return False
    types = _elem_types(graph)
    if None in types or onnx.TensorProto.STRING in types or NON_FLOAT32_FLOATS & set(types):
        return False
    return FLOAT32 in types or op in NO_FLOAT_CASES


def _cases() -> list:
    for module in sorted(set(MODULES.values())):
        importlib.import_module(f"onnx.backend.test.case.node.{module}")
    supported = set(supported_onnx_ops())
    return [c for c in onnx_node_cases._NodeTestCases if _selected(c, supported)]


CASES = _cases()


def _array(value) -> np.ndarray:
    return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node(case) -> None:
    graph = case.model.graph
    for inputs, expected in case.data_sets:
        feeds = {vi.name: _array(v) for vi, v in zip(graph.input, inputs)}
        got = run_reference(case.model, feeds)
        for vi, want in zip(graph.output, expected):
            want = _array(want)
            out = got[vi.name]
            assert out.shape == want.shape, f"{vi.name}: shape {out.shape}, expected {want.shape}"
            assert out.dtype == want.dtype, f"{vi.name}: dtype {out.dtype}, expected {want.dtype}"
            # onnx's backend runner compares with the case's rtol/atol (1e-3, 1e-7 for every node case): loose
            # enough for float32 results computed in another order, tight enough to catch any semantic slip.
            np.testing.assert_allclose(out, want, rtol=case.rtol, atol=case.atol, err_msg=vi.name)


def test_every_op_has_cases() -> None:
    """An op whose cases were all filtered out would be claimed without evidence."""
    covered = {c.model.graph.node[0].op_type for c in CASES if len(c.model.graph.node) == 1}
    assert set(OPS) <= covered, sorted(set(OPS) - covered)
