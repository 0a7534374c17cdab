"""The IR core: types, verification, the pass manager, the printer and the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import OPS, infer_types
from mcu_attn.ir.printer import dump
from mcu_attn.ir.types import QuantParams, TensorType
from mcu_attn.ir.verify import VerifyError, verify
from mcu_attn.passes.manager import PassResult, run_pipeline
from mcu_attn.reference.interpreter import run


def _linear_relu() -> Graph:
    graph = Graph("tiny")
    graph.add_input("x", TensorType("float32", (1, 3, 4)))
    w = graph.add_const("w", np.arange(8, dtype=np.float32).reshape(4, 2) - 3, exact=True)
    graph.types["h"] = TensorType("float32", (1, 3, 2))
    graph.types["y"] = TensorType("float32", (1, 3, 2))
    graph.append(Node("Linear", ["x", w], ["h"], {}, "fc"))
    graph.append(Node("Relu", ["h"], ["y"], {}, "act"))
    graph.outputs = ["y"]
    return graph


def test_types_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        TensorType("float32", (1, -1))
    with pytest.raises(ValueError):
        TensorType("float7", (1,))
    with pytest.raises(ValueError):
        QuantParams((0.0,), (0,))
    with pytest.raises(ValueError):
        QuantParams((0.1, 0.2), (0, 0))  # two scales need an axis
    assert TensorType("int8", (2, 3), QuantParams((0.5,), (-3,))).describe() == "int8[2,3] q8(s=0.5,zp=-3)"


def test_spec_comes_from_the_reference_signature() -> None:
    gemm = OPS["Gemm"]
    assert (gemm.min_inputs, gemm.max_inputs) == (2, 3)
    assert gemm.attrs == {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
    assert OPS["Concat"].max_inputs is None
    assert OPS["Linear"].const_inputs == {1, 2}


def test_verify_accepts_good_graph_and_runs() -> None:
    graph = _linear_relu()
    verify(graph)
    x = np.ones((1, 3, 4), np.float32)
    np.testing.assert_array_equal(run(graph, {"x": x})["y"], np.maximum(x @ graph.const("w"), 0))


@pytest.mark.parametrize("breakage, message", [
    (lambda g: g.types.__setitem__("y", TensorType("float32", (1, 3, 3))), "recorded as"),
    (lambda g: g.nodes[1].attrs.__setitem__("bogus", 1), "no attribute"),
    (lambda g: g.set_nodes(reversed(g.nodes)), "before it is defined"),
    (lambda g: g.nodes[0].inputs.__setitem__(1, "x"), "must be a constant"),
    (lambda g: g.constants.__setitem__("w", np.full((4, 2), np.nan, np.float32)), "NaN"),
    (lambda g: g.outputs.append("nowhere"), "never defined"),
    (lambda g: g.append(Node("Frobnicate", ["y"], ["z"])), "unknown IR op"),
])
def test_verify_names_what_is_broken(breakage, message) -> None:
    graph = _linear_relu()
    breakage(graph)
    graph.touch()
    with pytest.raises(VerifyError, match=message):
        verify(graph)


def test_pipeline_names_the_pass_that_broke_the_graph() -> None:
    class Breaks:
        name, why = "breaks", "test"

        def run(self, graph, ctx):
            graph.types["y"] = TensorType("float32", (9,))
            return PassResult(True)

    with pytest.raises(VerifyError, match="after pass breaks"):
        run_pipeline(_linear_relu(), [Breaks()])


def test_replace_uses_keeps_public_output_names() -> None:
    graph = _linear_relu()
    graph.types["y2"] = TensorType("float32", (1, 3, 2))
    graph.append(Node("Sigmoid", ["h"], ["y2"]))
    graph.replace_uses("y", "y2")
    graph.prune_unused()
    verify(graph)
    assert graph.outputs == ["y"] and [n.op for n in graph.nodes] == ["Linear", "Sigmoid"]


def test_dump_is_stable_and_complete() -> None:
    text = dump(_linear_relu())
    assert text == dump(_linear_relu())
    assert "h: float32[1,3,2] = Linear(x, w)" in text and text.endswith("return y\n")


def test_type_inference_uses_constants() -> None:
    graph = Graph()
    graph.add_input("x", TensorType("float32", (2, 6)))
    shape = graph.add_const("s", np.array([3, -1], np.int64), exact=True)
    (out,) = infer_types(graph, Node("Reshape", ["x", shape], ["y"]))
    assert out == TensorType("float32", (3, 4))


def test_interpreter_checks_feeds() -> None:
    from mcu_attn.errors import UserError

    with pytest.raises(UserError, match="needs"):
        run(_linear_relu(), {"x": np.ones((1, 4, 4), np.float32)})
    with pytest.raises(UserError, match="missing input"):
        run(_linear_relu(), {})


def test_every_op_is_one_registered_unit() -> None:
    """Each op carries its kind; every integer op has its C emitter, and every quantize rule belongs to a float
    op (the rules turn float ops into integer ones); registering a rule twice or an unknown kind fails."""
    from mcu_attn.ir.ops.registry import KINDS, op, quantizes

    assert all(entry.kind in KINDS for entry in OPS.values())
    integer = [name for name, entry in OPS.items() if entry.kind == "integer"]
    assert integer and all(OPS[name].emitter is not None for name in integer)
    assert all(entry.kind != "integer" for entry in OPS.values() if entry.quantize is not None)
    assert OPS["Reshape"].kind == "layout" and OPS["Linear"].is_param(1) and not OPS["Reshape"].is_param(1)
    with pytest.raises(ValueError, match="registered twice"):
        quantizes("Linear")(lambda cv, node: None)
    with pytest.raises(ValueError, match="unknown kind"):
        op("Nonsense", kind="magic")


def test_dropping_a_unit_transpose_keeps_the_dims_a_reshape_copies() -> None:
    """Reshape's 0 copies its own input's dim: skipping the Transpose before it must not change which dim."""
    from mcu_attn.passes.cleanup import DropIdentities

    graph = Graph()
    graph.add_input("o", TensorType("float32", (1, 1, 4, 3)))
    merged = graph.add_const("merged", np.array([1, 0, 3], np.int64), exact=True)
    graph.types["ot"] = TensorType("float32", (1, 4, 1, 3))
    graph.types["om"] = TensorType("float32", (1, 4, 3))
    graph.append(Node("Transpose", ["o"], ["ot"], {"perm": (0, 2, 1, 3)}, "t"))
    graph.append(Node("Reshape", ["ot", merged], ["om"], {}, "r"))
    graph.outputs = ["om"]
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 4, 3)
    before = run(graph, {"o": x})["om"]
    run_pipeline(graph, [DropIdentities()])
    assert graph.producer("om").inputs[0] == "o"  # the transpose is skipped
    np.testing.assert_array_equal(run(graph, {"o": x})["om"], before)
