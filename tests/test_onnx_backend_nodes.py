"""The ONNX project's own backend node tests, run through `mcu_attn.api.run_reference`.

onnx builds these cases in Python when their module is imported (each `export()` runs its numpy reference with
a fixed seed and records inputs and expected outputs); the installed wheel ships no `data/node` files. Only the
modules of the ops we import are loaded (onnx's `collect_testcases()` would run all of them: ~25 s), and the
cases are read from the list those modules fill.

Selection: every case whose single node is one of `OPS` (or whose `_expanded` function body uses only ops the
frontend imports), whose tensors are all plain tensors, and whose floating-point tensors are all float32 with at
least one float32 tensor. float16/bfloat16/double/float8 cases test other dtypes, and cases without a float are
integer arithmetic the float reference never meets, except for the ops in `NO_FLOAT_CASES`: onnx ships only
integer and bool cases for them, and they matter because mask construction runs through them (folded).
Integer and bool inputs are bound as constants by `run_reference`, as they are in real models. Every selected
case must pass: there is no skip list. `_expanded` variants of Attention and LayerNormalization are not selected
because their bodies use CastLike, ConstantOfShape, Range, Mod, Pad or LessOrEqual, which we do not claim.
"""

from __future__ import annotations

import importlib

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx.backend.test.case import node as onnx_node_cases

from mcu_attn.api import import_model, run_reference, supported_onnx_ops
from mcu_attn.frontend.onnx import load_onnx

OPS = (
    "MatMul Gemm Softmax LayerNormalization Gelu Add Sub Mul Div Transpose Reshape Erf Sqrt Pow ReduceMean Attention "
    "Concat Gather Slice Squeeze Unsqueeze Relu Tanh Sigmoid Where Cast Split Expand Clip Exp Neg Reciprocal Max Min "
    "Flatten ReduceSum ReduceMax Tile LogSoftmax QuantizeLinear DequantizeLinear QLinearMatMul Equal Less Greater "
    "Not And Or Abs Log Identity Conv GatherElements IsNaN QLinearConv"
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


def _selected(case, parents: dict[str, str], supported: set[str]) -> bool:
    """`parents` maps each single-node case to its op; an `_expanded` case belongs to the case it expands."""
    graph = case.model.graph
    op = parents.get(case.name.split("_expanded")[0])
    if op not in OPS:
        return False
    if "_expanded" in case.name and not all(
            (f"{n.domain}.{n.op_type}" if n.domain else n.op_type) in supported for n in graph.node):
        return False
    types = _elem_types(graph)
    if None in types or onnx.TensorProto.STRING in types or NON_FLOAT32_FLOATS & set(types):
        return False
    return FLOAT32 in types or op in NO_FLOAT_CASES


def _cases() -> list:
    with np.errstate(all="ignore"):  # onnx's generators overflow on purpose (float -> float8, 1/0 -> inf)
        for module in sorted(set(MODULES.values())):
            importlib.import_module(f"onnx.backend.test.case.node.{module}")
    cases = onnx_node_cases._NodeTestCases
    parents = {c.name: c.model.graph.node[0].op_type for c in cases
               if len(c.model.graph.node) == 1 and c.model.graph.node[0].domain in ("", "ai.onnx")}
    supported = set(supported_onnx_ops())
    return [c for c in cases if _selected(c, parents, supported)]


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


def _attention_model(**attrs) -> onnx.ModelProto:
    """x [1, 6, 16] -> three constant projections -> ONNX Attention (opset 23, 2 heads, 3-D inputs)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((16, 16)) * 0.3).astype(np.float32), w)
             for w in ("wq", "wk", "wv")]
    nodes = [onnx.helper.make_node("MatMul", ["x", w], [f"{w}_out"]) for w in ("wq", "wk", "wv")]
    nodes.append(onnx.helper.make_node("Attention", ["wq_out", "wk_out", "wv_out"], ["y"], q_num_heads=2,
                                       kv_num_heads=2, **attrs))
    value = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 6, 16]) for n in ("x", "y")]
    graph = onnx.helper.make_graph(nodes, "attention", value[:1], value[1:], inits)
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 23)])


@pytest.mark.parametrize("causal", [0, 1])
def test_attention_op_decomposes_to_the_canonical_form(causal: int) -> None:
    """The decomposition is the MatMul/Softmax/MatMul form the pattern matcher fuses back into one Attention."""
    model = _attention_model(is_causal=causal)
    ops = [n.op for n in load_onnx(model).nodes][3:]
    assert ops == ["Reshape", "Transpose"] * 3 + ["Transpose", "MatMul", "Mul"] + ["Add"] * causal + [
        "Softmax", "MatMul", "Transpose", "Reshape"]
    fused = [n for n in import_model(model).nodes if n.op == "Attention"]
    assert len(fused) == 1 and fused[0].attrs["heads"] == 2 and fused[0].attrs["pattern"].causal == causal
