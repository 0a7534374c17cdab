"""The integer fusion passes (passes/fuse.py), checked by the integer reference before and after on the digits ViT:
the table fusion changes no bit; the residual fusion is a new contract (one requantization of acc + residual) that
stays within a few output steps of the unfused pair and closer to the float model than it. Also the requantized
sum's parameters (qmath.sum_requant_params)."""

from __future__ import annotations

import numpy as np
import pytest

from mcu_attn.api import import_model
from mcu_attn.data import check_stack
from mcu_attn.passes import quantize as quantize_module
from mcu_attn.passes.fuse import FuseLinearResidual, FuseLinearTable
from mcu_attn.passes.manager import run_pipeline
from mcu_attn.passes.quantize import quantize_graph, run_quantized
from mcu_attn.reference.interpreter import run_stack
from mcu_attn.reference.qmath import SUM_PRODUCT_BITS, sum_requant_params
from support import DIGITS

SAMPLES = 100


@pytest.fixture(scope="module")
def graphs(monkeypatch_module):
    """(float graph, integer graph without the fusion passes) of the digits ViT."""
    floating = import_model(DIGITS / "digits_vit.onnx")
    calib = np.load(DIGITS / "data" / "calib.npy")
    monkeypatch_module.setattr(quantize_module, "integer_pipeline", lambda: [])
    return floating, quantize_graph(floating, calib, 8)


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def _outputs(graph, images):
    return run_quantized(graph, images)


def test_table_fusion_is_bit_exact(graphs, digits_test) -> None:
    _, unfused = graphs
    fused = unfused.copy()
    result = run_pipeline(fused, [FuseLinearTable()]).steps[0][1]
    assert result.stats["fused"] == 2
    assert [n.op for n in fused.nodes].count("QTable") == 0
    images = digits_test[0][:SAMPLES]
    np.testing.assert_array_equal(_outputs(fused, images), _outputs(unfused, images))


def test_residual_fusion_is_closer_to_float(graphs, digits_test) -> None:
    floating, unfused = graphs
    fused = unfused.copy()
    result = run_pipeline(fused, [FuseLinearTable(), FuseLinearResidual()]).steps[1][1]
    assert result.stats["fused"] == 4  # two blocks: the attention's output projection and the FFN's second linear
    assert [n.op for n in fused.nodes].count("QAdd") == 1  # the position embedding's add has no linear before it
    images = digits_test[0][:SAMPLES]
    exact = run_stack(floating, check_stack(floating, images, "data"))
    before, after = _outputs(unfused, images), _outputs(fused, images)
    # the contracts differ by the roundings and saturations the fusion removes, which the later layers carry on:
    # the change is of the size of the quantization error itself, and it brings the outputs closer to float
    assert np.max(np.abs(after - before)) <= 2 * np.max(np.abs(before - exact))
    assert np.mean((after - exact) ** 2) < np.mean((before - exact) ** 2)
    top1 = np.argmax(exact, -1)
    assert np.mean(np.argmax(after, -1) == top1) >= np.mean(np.argmax(before, -1) == top1)


def test_fusion_needs_a_private_output(graphs) -> None:
    """A linear whose output something else reads too (or that is a graph output) stays as it is."""
    _, unfused = graphs
    graph = unfused.copy()
    linear = next(n for n in graph.nodes if n.op == "QLinear" and graph.consumers(n.outputs[0])[0].op == "QTable")
    graph.outputs.append(linear.outputs[0])
    assert run_pipeline(graph, [FuseLinearTable()]).steps[0][1].stats["fused"] == 1  # the other block's only


@pytest.mark.parametrize("reals, value_bits", [([0.95], 8), ([1e-9], 8), ([3.0], 8), ([100.0], 8),
                                               ([0.002, 0.0015, 0.0031], 31), ([0.7], 31)])
def test_sum_requant_params(reals, value_bits) -> None:
    """Every product stays below 2^SUM_PRODUCT_BITS, v << k inside int32, and a term's multiplier is as precise as
    the shift allows: relative error at most 2^-(bits of M)."""
    terms = [(reals, value_bits), ([0.5], 8)]
    shift, chosen = sum_requant_params(terms)
    assert 1 <= shift <= 53
    for (values, bits), (k, multipliers) in zip(terms, chosen):
        assert (1 << bits) * (1 << k) <= 2 ** 31 or k == 0
        for real, m in zip(values, multipliers):
            assert abs(m) * 2 ** (bits + k) <= 2 ** SUM_PRODUCT_BITS
            assert abs(m * 2.0 ** (k - shift) - real) <= 2.0 ** (k - shift - 1) + 1e-300
    if max(reals) < (1 if value_bits == 8 else 0.5):
        assert shift >= 32  # the ARM kernels' fast form (an int32 accumulator's multiplier keeps 30 bits)
