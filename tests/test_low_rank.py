"""--low-rank auto|R: the truncated-SVD factors, the graph rewrite, the rank choice within the calibration
budget, bad input, and a factored model built as int8 C (host) and firmware (emulator), bit-exact."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mcu_attn.api import import_model
from mcu_attn.build import BuildOptions, build
from mcu_attn.data import check_stack
from mcu_attn.errors import UserError
from mcu_attn.ir.ops import node_macs
from mcu_attn.passes.low_rank import break_even, factor, factors, low_rank
from mcu_attn.passes.sparsify import top1_change
from mcu_attn.reference.interpreter import run_stack
from support import DIGITS, run_cli

MODEL = DIGITS / "digits_vit.onnx"
DATA = DIGITS / "data"


@pytest.fixture(scope="module")
def graph():
    return import_model(MODEL)


@pytest.fixture(scope="module")
def calib(graph) -> np.ndarray:
    return check_stack(graph, np.load(DATA / "calib.npy")[:64], "calibration")


def _macs(graph) -> int:
    return sum(node_macs(graph, node) for node in graph.nodes)


def test_factors_are_the_best_approximation() -> None:
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((24, 40))
    singular = np.linalg.svd(weight, compute_uv=False)
    for rank in (1, 5, 24):
        a, b = factors(weight, rank)
        assert a.shape == (24, rank) and b.shape == (rank, 40)
        # Eckart-Young: the spectral error is the first dropped singular value (float32 factors: 1e-5 relative)
        error = np.linalg.norm(weight - a.astype(np.float64) @ b, 2)
        expected = singular[rank] if rank < 24 else 0.0
        assert abs(error - expected) <= 1e-5 * singular[0]
        # the singular values split evenly: both factors carry sqrt(s) per component
        assert np.allclose(np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=1), rtol=1e-5)


def test_full_rank_factoring_keeps_the_outputs(graph, calib) -> None:
    name = next(n.name for n in graph.nodes if n.op == "Linear" and graph.shape(n.inputs[1]) == (32, 64))
    factored = factor(graph, name, 32)
    assert [n.op for n in factored.nodes].count("Linear") == [n.op for n in graph.nodes].count("Linear") + 1
    # float32 products in another association order: logits of magnitude ~10 agree to ~1e-5
    assert np.abs(run_stack(factored, calib[:8]) - run_stack(graph, calib[:8])).max() < 1e-4


def test_a_fixed_rank_factors_the_layers_it_makes_cheaper(graph) -> None:
    factored, report = low_rank(graph, None, "8", 0.01)
    shapes = {layer["layer"]: (layer["k"], layer["n"]) for layer in report["layers"]}
    assert shapes and all(8 < break_even(k, n) for k, n in shapes.values())
    # the 4 -> 32 patch embedding and the 32 -> 10 head are below break-even at rank 8 and stay whole
    assert all(k > 4 and n > 10 for k, n in shapes.values())
    assert _macs(graph) - _macs(factored) == report["macs_saved"] > 0
    assert report["weights_saved"] == sum(graph.const(n.inputs[1]).size for n in graph.nodes if n.op == "Linear") - \
        sum(factored.const(n.inputs[1]).size for n in factored.nodes if n.op == "Linear")


def test_auto_stays_within_the_budget(graph, calib) -> None:
    factored, report = low_rank(graph, calib, "auto", 0.02)
    assert report["layers"] and report["macs_saved"] > 0
    error = top1_change(run_stack(graph, calib), run_stack(factored, calib))
    assert error == report["error"] <= 0.02
    _, strict = low_rank(graph, calib, "auto", 0.0)  # no change allowed: only layers that change no prediction
    assert strict["error"] == 0.0 and strict["macs_saved"] <= report["macs_saved"]


@pytest.mark.parametrize("text", ["0", "-2", "x", "auto8", "1.5"])
def test_bad_values_are_one_line_errors(text) -> None:
    result = run_cli("eval", MODEL, "--data", DATA / "test_x.npy", "--float", "--low-rank", text)
    assert result.returncode == 2 and "--low-rank" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_auto_needs_calibration_data(graph) -> None:
    with pytest.raises(UserError, match="calibration data"):
        low_rank(graph, None, "auto", 0.01)


def test_int8_host_build_is_bit_exact(tmp_path) -> None:
    options = BuildOptions(bits=8, calib=str(DATA / "calib.npy"), low_rank="8", check_samples=8)
    report = build(MODEL, "host", tmp_path / "host", options)
    assert report["low_rank"]["layers"] and report["host_check"]["bit_exact"]


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
def test_firmware_is_bit_exact_and_does_less_work(tmp_path) -> None:
    instructions = {}
    for name, extra in (("whole", []), ("factored", ["--low-rank", "8"])):
        out = tmp_path / name
        built = run_cli("build", MODEL, "--target", "stm32f407", "-o", out, "--bits", "8", "--calib",
                        DATA / "calib.npy", *extra)
        assert built.returncode == 0, built.stderr
        simulated = run_cli("simulate", out, "--data", DATA / "test_x.npy", "--limit", "2", "--json")
        assert simulated.returncode == 0, simulated.stderr
        result = json.loads(simulated.stdout)
        assert result["bit_exact"] is True
        instructions[name] = result["instructions"]
    assert "low rank (--low-rank 8)" in built.stdout
    assert instructions["factored"] < instructions["whole"]
