"""The fusion patterns on hand-built graphs: spellings the fixtures do not cover, masks of every kind, and
look-alikes that must not be fused. Each case is checked against onnxruntime on random inputs."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mcu_attn.api import import_model
from mcu_attn.ir.pattern import AttentionPattern
from mcu_attn.reference.interpreter import run

RNG = np.random.default_rng(7)
S, H, D = 9, 2, 4
E = H * D
# float32 reference vs onnxruntime on O(1) values: rounding differences of a few ulps
TOLERANCE = 1e-5


def _const(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _model(nodes, inits, shape=(1, S, E), out_shape=None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "case", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape or shape))],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _check(model: onnx.ModelProto, tmp_path, shape=(1, S, E)):
    path = tmp_path / "case.onnx"
    onnx.save(model, path)
    graph = import_model(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for _ in range(3):
        x = RNG.standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(run(graph, {"x": x})["y"], session.run(None, {"x": x})[0], atol=TOLERANCE,
                                   rtol=TOLERANCE)
    return graph


def _ops(graph) -> list[str]:
    return [n.op for n in graph.nodes]


def test_tensorflow_style_layernorm_is_fused(tmp_path) -> None:
    gamma, beta = RNG.standard_normal(E).astype(np.float32), RNG.standard_normal(E).astype(np.float32)
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[-1]),
             helper.make_node("Sub", ["x", "mean"], ["d"]), helper.make_node("Mul", ["d", "d"], ["sq"]),
             helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["std"]),
             helper.make_node("Reciprocal", ["std"], ["r"]), helper.make_node("Mul", ["r", "gamma"], ["g"]),
             helper.make_node("Mul", ["x", "g"], ["xg"]), helper.make_node("Mul", ["mean", "g"], ["mg"]),
             helper.make_node("Sub", ["beta", "mg"], ["shift"]), helper.make_node("Add", ["xg", "shift"], ["y"])]
    graph = _check(_model(nodes, [_const("eps", np.float32(1e-3)), _const("gamma", gamma), _const("beta", beta)]),
                   tmp_path)
    assert _ops(graph) == ["LayerNormalization"]
    assert graph.nodes[0].attrs["epsilon"] == pytest.approx(1e-3)


def test_tanh_gelu_with_cubes_is_fused(tmp_path) -> None:
    nodes = [helper.make_node("Mul", ["x", "x"], ["x2"]), helper.make_node("Mul", ["x2", "x"], ["x3"]),
             helper.make_node("Mul", ["x3", "c"], ["cx3"]), helper.make_node("Add", ["x", "cx3"], ["inner"]),
             helper.make_node("Mul", ["inner", "k"], ["arg"]), helper.make_node("Tanh", ["arg"], ["t"]),
             helper.make_node("Add", ["t", "one"], ["t1"]), helper.make_node("Mul", ["x", "half"], ["hx"]),
             helper.make_node("Mul", ["hx", "t1"], ["y"])]
    inits = [_const("c", np.float32(0.044715)), _const("k", np.float32(math.sqrt(2 / math.pi))),
             _const("one", np.float32(1)), _const("half", np.float32(0.5))]
    graph = _check(_model(nodes, inits), tmp_path)
    assert _ops(graph) == ["Gelu"] and graph.nodes[0].attrs["approximate"] == "tanh"


def test_gelu_lookalike_is_not_fused(tmp_path) -> None:
    nodes = [helper.make_node("Mul", ["x", "k"], ["a"]), helper.make_node("Erf", ["a"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["e1"]), helper.make_node("Mul", ["x", "e1"], ["y"])]
    inits = [_const("k", np.float32(0.7)), _const("one", np.float32(1))]  # 0.7 is not 1/sqrt(2), no 0.5
    assert "Gelu" not in _ops(_check(_model(nodes, inits), tmp_path))


def _attention_model(mask: np.ndarray | None = None, interleave: bool = False) -> onnx.ModelProto:
    """Explicit attention: q/k/v projections, head split, scores, scale, optional mask, softmax, merge."""
    head_shape = [1, S, D, H] if interleave else [1, S, H, D]
    perm_q = [0, 3, 1, 2] if interleave else [0, 2, 1, 3]
    perm_k = [0, 3, 2, 1] if interleave else [0, 2, 3, 1]
    nodes, inits = [], [_const("hs", np.array(head_shape, np.int64)), _const("os", np.array([1, S, E], np.int64)),
                        _const("scale", np.float32(1 / math.sqrt(D)))]
    for name in "qkv":
        inits.append(_const(f"w{name}", RNG.standard_normal((E, E)).astype(np.float32) * 0.5))
        nodes += [helper.make_node("MatMul", ["x", f"w{name}"], [f"{name}p"]),
                  helper.make_node("Reshape", [f"{name}p", "hs"], [f"{name}r"])]
    nodes += [helper.make_node("Transpose", ["qr"], ["qt"], perm=perm_q),
              helper.make_node("Transpose", ["kr"], ["kt"], perm=perm_k),
              helper.make_node("Transpose", ["vr"], ["vt"], perm=perm_q),
              helper.make_node("MatMul", ["qt", "kt"], ["s0"]), helper.make_node("Mul", ["s0", "scale"], ["s1"])]
    scores = "s1"
    if mask is not None:
        inits.append(_const("mask", mask.astype(np.float32)))
        nodes.append(helper.make_node("Add", ["s1", "mask"], ["s2"]))
        scores = "s2"
    nodes += [helper.make_node("Softmax", [scores], ["p"], axis=-1), helper.make_node("MatMul", ["p", "vt"], ["o"]),
              helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["ot", "os"], ["y"])]
    return _model(nodes, inits)


def _band(window: int, global_tokens: int, causal: int) -> np.ndarray:
    return np.where(AttentionPattern(window, global_tokens, causal).allowed(S), 0.0, -np.inf)[None, None]


@pytest.mark.parametrize("window, global_tokens, causal", [(0, 0, 0), (0, 0, 1), (4, 0, 0), (4, 1, 0), (2, 2, 0),
                                                           (3, 0, 1), (6, 1, 1)])
def test_band_masks_become_attributes(tmp_path, window, global_tokens, causal) -> None:
    mask = None if (window, global_tokens, causal) == (0, 0, 0) else _band(window, global_tokens, causal)
    graph = _check(_attention_model(mask), tmp_path)
    (block,) = [n for n in graph.nodes if n.op == "Attention"]
    assert block.attrs["pattern"] == AttentionPattern(window, global_tokens, causal)
    assert len(block.inputs) == 3 and block.attrs["heads"] == H and block.attrs["head_dim"] == D


def test_large_negative_masks_count_as_masked(tmp_path) -> None:
    mask = np.where(AttentionPattern(4).allowed(S), 0.0, -1e9)[None, None]
    (block,) = [n for n in _check(_attention_model(mask), tmp_path).nodes if n.op == "Attention"]
    assert block.attrs["pattern"] == AttentionPattern(4) and len(block.inputs) == 3


def test_other_masks_stay_an_additive_input(tmp_path) -> None:
    mask = RNG.standard_normal((1, 1, S, S))  # e.g. a learned relative-position bias
    (block,) = [n for n in _check(_attention_model(mask), tmp_path).nodes if n.op == "Attention"]
    assert block.attrs["pattern"].dense and len(block.inputs) == 4


def test_interleaved_heads_are_not_fused(tmp_path) -> None:
    graph = _check(_attention_model(interleave=True), tmp_path)
    assert "Attention" not in _ops(graph) and "Softmax" in _ops(graph)
