"""--attention linformer:K (passes/linformer.py): the projections, the accuracy gate and its report, bad input,
and the projected blocks all the way to bit-exact firmware (QLinear along the sequence, ma_attention_kv_s8)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mcu_attn.api import import_model
from mcu_attn.build import BuildOptions, build
from mcu_attn.data import check_stack
from mcu_attn.errors import UserError
from mcu_attn.ir.ops.attention import attention
from mcu_attn.passes import linformer
from mcu_attn.ir.pattern import AttentionPattern
from mcu_attn.passes.sparsify import AttentionChoice, apply, choose, relative_error
from mcu_attn.reference.interpreter import run, run_stack
from support import DIGITS, run_cli

MODEL = DIGITS / "digits_vit.onnx"
DATA = DIGITS / "data"


@pytest.fixture(scope="module")
def graph():
    return import_model(MODEL)


@pytest.fixture(scope="module")
def calib(graph) -> np.ndarray:
    return check_stack(graph, np.load(DATA / "calib.npy")[:32], "calibration data")


def test_parse() -> None:
    assert AttentionChoice.parse("linformer:8") == AttentionChoice("linformer", rows=8)
    assert AttentionChoice.parse("linformer:8").describe() == "linformer:8"
    for text in ("linformer:0", "linformer:-2"):
        with pytest.raises(UserError, match="at least 1"):
            AttentionChoice.parse(text)


def test_pooling_rows_average_contiguous_segments() -> None:
    e = linformer.pooling(4, 10)
    assert np.allclose(e.sum(axis=1), 1.0) and np.array_equal((e > 0).sum(axis=0), np.ones(10))
    assert [int(np.flatnonzero(row)[0]) for row in e] == [0, 2, 5, 7]  # segments of 2, 3, 2, 3 tokens


def test_projection_is_attention_over_projected_keys(graph, calib) -> None:
    """The rewritten block computes softmax(q (E k)^T) (F v): the float reference of Attention over E k, F v."""
    node = next(n for n in graph.nodes if n.op == "Attention")
    rng = np.random.default_rng(0)
    e, f = rng.standard_normal((5, 17)), rng.standard_normal((5, 17))
    projected = graph.copy()
    linformer.project_block(projected, next(n for n in projected.nodes if n.name == node.name), e, f)
    values = run(graph, {graph.inputs[0]: calib[0]}, keep=list(node.inputs[:3]))
    out = run(projected, {graph.inputs[0]: calib[0]}, keep=[node.outputs[0]])[node.outputs[0]]
    q, k, v = (values[name][0].astype(np.float64) for name in node.inputs[:3])
    expected = attention(q, e @ k, f @ v, heads=4, head_dim=8, scale=float(node.attrs["scale"]))
    # float32 graph against a float64 recomputation: a few float32 ulps of values of order 1
    np.testing.assert_allclose(out[0], expected, atol=1e-4)


def test_fitted_values_beat_pooling_on_calibration(graph, calib) -> None:
    """F is E or a least-squares fit, whichever matches the dense block's output better: never worse than E."""
    node = next(n for n in graph.nodes if n.op == "Attention")
    activations = linformer._activations(graph, node, calib)
    e = linformer.pooling(8, 17)
    f = linformer.fit_values(activations, e, 4, 8, float(node.attrs["scale"]))

    def block_error(matrix):
        return sum(relative_error(o[0], attention(q[0], e @ k[0], matrix @ v[0], heads=4, head_dim=8,
                                                  scale=float(node.attrs["scale"]))) for q, k, v, o in activations)

    assert block_error(f) <= block_error(e)


def test_choose_reports_every_block_and_keeps_the_tolerance(graph, calib) -> None:
    dense = run_stack(graph, calib)
    strict, report = choose(graph, calib, AttentionChoice("linformer", rows=12), tolerance=0.0)
    assert [b["block"] for b in report["blocks"]] == [n.name for n in graph.nodes if n.op == "Attention"]
    kept = [b for b in report["blocks"] if b["replaced"]]
    assert all(b["error"] <= 0.0 for b in kept)
    np.testing.assert_array_equal(run_stack(strict, calib).argmax(-1), dense.argmax(-1))
    loose, report = choose(graph, calib, AttentionChoice("linformer", rows=12), tolerance=0.9)
    assert all(b["replaced"] for b in report["blocks"])
    projected = [n for n in loose.nodes if n.op == "Attention"]
    assert all(loose.shape(n.inputs[1])[-2] == 12 and loose.shape(n.inputs[2])[-2] == 12 for n in projected)


def test_causal_and_short_blocks_are_not_projected(graph) -> None:
    node = next(n for n in graph.nodes if n.op == "Attention")
    assert linformer.obstacle(graph, node, 17).startswith("17 tokens")
    causal = graph.copy()
    next(n for n in causal.nodes if n.op == "Attention").attrs["pattern"] = AttentionPattern(causal=True)
    assert "causal" in linformer.obstacle(causal, next(n for n in causal.nodes if n.op == "Attention"), 4)
    local = apply(graph, AttentionChoice.parse("local:4"))
    assert "already sparse (local:4)" == linformer.obstacle(local, next(n for n in local.nodes if n.op == "Attention"), 4)


@pytest.mark.parametrize("args, phrase", [(["--attention", "linformer:8"], "needs calibration data"),
                                          (["--attention", "linformer:0"], "at least 1")])
def test_cli_rejects(args, phrase) -> None:
    result = run_cli("eval", MODEL, "--float", "--data", DATA / "test_x.npy", *args)
    assert result.returncode == 2 and phrase in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
def test_linformer_firmware_is_bit_exact(tmp_path) -> None:
    """Both blocks projected (a loose tolerance), int8 on a Cortex-M7: the firmware's outputs are the reference's."""
    out = tmp_path / "linformer"
    built = run_cli("build", MODEL, "--target", "stm32f746", "-o", out, "--bits", "8", "--calib", DATA / "calib.npy",
                    "--attention", "linformer:8", "--tolerance", "0.9")
    assert built.returncode == 0, built.stderr
    report = json.loads((out / "report.json").read_text())
    assert [b["replaced"] for b in report["attention_choice"]["blocks"]] == [True, True]
    assert [b["keys"] for b in report["attention"]] == [8, 8]
    simulated = run_cli("simulate", out, "--data", DATA / "test_x.npy", "--limit", "6", "--json", cwd=tmp_path)
    assert simulated.returncode == 0, simulated.stderr
    assert json.loads(simulated.stdout)["bit_exact"] is True


def test_linformer_host_build_is_bit_exact(tmp_path) -> None:
    """The host-compiled C (portable kernels) of a projected model against the integer reference."""
    options = BuildOptions(bits=8, calib=str(DATA / "calib.npy"), attention="linformer:8", tolerance=0.9,
                           check_samples=8)
    report = build(MODEL, "host", tmp_path / "host", options)
    assert report["host_check"]["bit_exact"] is True and report["host_check"]["samples"] == 8
    assert [b["keys"] for b in report["attention"]] == [8, 8]


def test_float_firmware_refuses_projected_keys(tmp_path) -> None:
    options = BuildOptions(bits=32, calib=str(DATA / "calib.npy"), attention="linformer:8", tolerance=0.9)
    with pytest.raises(UserError, match="integer kernels only"):
        build(MODEL, "host", tmp_path / "float", options)
    assert not (tmp_path / "float").exists()
