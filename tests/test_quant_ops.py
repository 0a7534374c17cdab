"""ONNX Runtime's quantized contrib ops (com.microsoft MatMulNBits and QGemm) against onnxruntime itself.

onnx has no backend node tests for contrib ops, so each case builds a one-op model on small random data, runs
it with onnxruntime (CPU, graph optimizations off so the op runs as written) and with
`mcu_attn.api.run_reference`, and compares. The float activation is a graph input (QGemm quantizes it with a
QuantizeLinear first), so the op runs in the interpreter rather than being folded away at import.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mcu_attn.api import run_reference
from mcu_attn.ir.ops.quant import unpack_nbits

MS = "com.microsoft"


def _run_ort(model, feeds: dict) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, "op", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)])


# ---- MatMulNBits ---------------------------------------------------------------------------------------------
NBITS_CASES = [  # (bits, K, N, block_size, zero points, bias, leading dims of A)
    (4, 32, 8, 16, "packed", False, (3,)),
    (4, 40, 6, 16, "packed", True, (1, 5)),     # K not a multiple of the block: the last block is padded
    (4, 64, 5, 32, None, False, (2, 3)),        # default zero point 8
    (4, 48, 7, 16, "float", True, (4,)),        # unpacked float zero points
    (4, 128, 3, 128, "packed", False, (2,)),    # odd number of blocks per row: zero points half a byte
    (8, 32, 4, 16, "packed", True, (3,)),
    (2, 64, 4, 16, "packed", False, (3,)),
]


@pytest.mark.parametrize("bits,k,n,block,zp_kind,with_bias,lead", NBITS_CASES,
                         ids=[f"b{c[0]}_k{c[1]}_n{c[2]}_bs{c[3]}_{c[4]}{'_bias' if c[5] else ''}" for c in NBITS_CASES])
def test_matmul_nbits(bits, k, n, block, zp_kind, with_bias, lead) -> None:
    rng = np.random.default_rng(bits * 1000 + k + n)
    k_blocks = -(-k // block)
    inits = {"B": rng.integers(0, 256, (n, k_blocks, block * bits // 8), dtype=np.uint8),
             "scales": (rng.random((n, k_blocks), np.float32) * 0.1 + 0.01).astype(np.float32)}
    inputs = ["A", "B", "scales"]
    if zp_kind == "packed":
        inits["zp"] = rng.integers(0, 256, (n, -(-k_blocks * bits // 8)), dtype=np.uint8)
    elif zp_kind == "float":
        inits["zp"] = (rng.random((n, k_blocks), np.float32) * 15).astype(np.float32)
    inputs.append("zp" if zp_kind else "")
    if with_bias:
        inits["bias"] = rng.standard_normal(n).astype(np.float32)
        inputs += ["", "bias"]
    node = helper.make_node("MatMulNBits", inputs, ["Y"], domain=MS, K=k, N=n, bits=bits, block_size=block)
    model = _model([node], [helper.make_tensor_value_info("A", TensorProto.FLOAT, [*lead, k])],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [*lead, n])], inits)
    a = rng.standard_normal((*lead, k)).astype(np.float32)
    want = _run_ort(model, {"A": a})[0]
    got = run_reference(model, {"A": a})["Y"]
    assert got.shape == want.shape and got.dtype == want.dtype
    # float32 dot products of length K summed in another order (MLAS blocks the K loop): a few ulps of |A||W|
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_unpack_nbits_order() -> None:
    """The low bits hold the first value (4 bits: 0x21 is 1 then 2)."""
    np.testing.assert_array_equal(unpack_nbits(np.array([0x21, 0x43], np.uint8), 4, 4), [1, 2, 3, 4])
    np.testing.assert_array_equal(unpack_nbits(np.array([0b11100100], np.uint8), 2, 4), [0, 1, 2, 3])


# ---- QGemm ---------------------------------------------------------------------------------------------------
QGEMM_CASES = [  # (A type, B type, per-column B, transA, transB, C, quantized output, alpha)
    (np.uint8, np.int8, False, 0, 1, True, True, 1.0),
    (np.uint8, np.uint8, True, 0, 0, False, True, 1.0),
    (np.int8, np.int8, True, 0, 1, True, True, 0.5),
    (np.uint8, np.int8, True, 1, 0, True, False, 1.0),
    (np.int8, np.int8, False, 0, 0, False, False, 2.0),
]


def _qtype(dtype) -> int:
    return TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8


@pytest.mark.parametrize("a_type,b_type,per_column,trans_a,trans_b,with_c,quantized,alpha", QGEMM_CASES,
                         ids=[f"{np.dtype(c[0]).name}x{np.dtype(c[1]).name}{'_percol' if c[2] else ''}"
                              f"_tA{c[3]}_tB{c[4]}{'_C' if c[5] else ''}{'_q' if c[6] else '_float'}_alpha{c[7]}"
                              for c in QGEMM_CASES])
def test_qgemm(a_type, b_type, per_column, trans_a, trans_b, with_c, quantized, alpha) -> None:
    rng = np.random.default_rng(7)
    m, k, n = 5, 12, 6
    a_zp = np.array(128 if a_type == np.uint8 else 3, a_type)
    # B within +-63 (or 0..127): x64 CPUs without VNNI sum pairs of u8*s8 products in int16 with saturation, so
    # full-range weights could make onnxruntime itself inexact (reduce_range quantization avoids it too)
    b = rng.integers(-63, 64, (n, k) if trans_b else (k, n)).astype(np.int16)
    b = (b + 64).astype(b_type) if b_type == np.uint8 else b.astype(b_type)
    b_zp = (np.array(64, b_type) if b_type == np.uint8 else np.array(-2, b_type))
    b_scale = np.float32(0.02)
    if per_column:
        b_zp = np.full(n, b_zp, b_type) + rng.integers(-3, 4, n).astype(b_type)
        b_scale = (rng.random(n, np.float32) * 0.02 + 0.01).astype(np.float32)
    inits = {"a_scale": np.array(0.05, np.float32), "a_zp": a_zp, "B": b,
             "b_scale": np.asarray(b_scale, np.float32), "b_zp": np.asarray(b_zp, b_type)}
    inputs = ["Aq", "a_scale", "a_zp", "B", "b_scale", "b_zp", ""]
    if with_c:
        inits["C"] = rng.integers(-2000, 2000, n).astype(np.int32)
        inputs[6] = "C"
    out_type = TensorProto.FLOAT
    if quantized:
        inits.update({"y_scale": np.array(0.7, np.float32), "y_zp": np.array(10, a_type)})
        inputs += ["y_scale", "y_zp"]
        out_type = _qtype(a_type)
    nodes = [helper.make_node("QuantizeLinear", ["A", "a_scale", "a_zp"], ["Aq"]),
             helper.make_node("QGemm", inputs, ["Y"], domain=MS, alpha=alpha, transA=trans_a, transB=trans_b)]
    a_shape = [k, m] if trans_a else [m, k]
    model = _model(nodes, [helper.make_tensor_value_info("A", TensorProto.FLOAT, a_shape)],
                   [helper.make_tensor_value_info("Y", out_type, [m, n])], inits)
    a = (rng.standard_normal(a_shape) * 3).astype(np.float32)
    want = _run_ort(model, {"A": a})[0]
    got = run_reference(model, {"A": a})["Y"]
    assert got.shape == want.shape and got.dtype == want.dtype
    if quantized:
        np.testing.assert_array_equal(got, want)  # int32 accumulation and one float32 requantization: exact
    else:
        # the same float32 products; ORT may fuse multiply and scale differently: within one ulp
        np.testing.assert_allclose(got, want, rtol=2e-7, atol=0)
