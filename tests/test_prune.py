"""Structured pruning (--prune-heads, --prune-ffn): physical removal, importance on data, least-squares refit,
every exporter's attention, pre-quantized models, integer builds bit-exact, and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mcu_attn.api import evaluate, import_model
from mcu_attn.compiler import compile_model
from mcu_attn.data import check_stack
from mcu_attn.errors import UserError
from mcu_attn.ir.ops import node_macs
from mcu_attn.ir.ops.attention import node_pattern
from mcu_attn.options import BuildOptions
from mcu_attn.passes.prune import find_sublayers, importance, prune_graph, remove_units
from mcu_attn.passes.quantize import quantize_graph, run_quantized
from mcu_attn.reference.interpreter import run, run_stack
from support import DIGITS, FIXTURES, ROOT, run_cli

MODEL = DIGITS / "digits_vit.onnx"
DATA = DIGITS / "data"
CALIB = DATA / "calib.npy"
SAMPLES = 48  # calibration samples for the quick tests: enough to rank and refit the 33..65 features per layer
NO_FINETUNE = 0  # --prune-finetune for tests of everything else: fine-tuning has tests of its own (test_finetune.py)
EXPORTERS = {
    "torch legacy, packed in-projection": FIXTURES / "models" / "legacy_op17_mha.onnx",
    "ONNX Attention op": FIXTURES / "models" / "onnx_attention_op23.onnx",
    "tf2onnx (Keras)": ROOT / "examples" / "digits_vit_keras" / "digits_vit_keras.onnx",
    "dynamo, causal": FIXTURES / "models" / "dynamo_op17_causal.onnx",
}


def _calib(graph, count: int = SAMPLES) -> np.ndarray:
    return check_stack(graph, np.load(CALIB)[:count], "calib").astype(np.float32)


@pytest.fixture(scope="module")
def digits():
    graph = import_model(MODEL)
    return graph, _calib(graph), prune_graph(graph, _calib(graph), 0.5, 0.5)


def test_units_are_removed_physically(digits) -> None:
    graph, _, result = digits
    pruned, report = result.graph, result.report
    blocks = [n for n in pruned.nodes if n.op == "Attention"]
    assert [n.attrs["heads"] for n in blocks] == [b["heads_after"] for b in report["heads"]]
    assert sum(b["heads_before"] - b["heads_after"] for b in report["heads"]) == 4  # floor(0.5 x 8 heads)
    assert sum(c["channels_before"] - c["channels_after"] for c in report["channels"]) == 64  # half of 2 x 64
    for block in blocks:
        width = block.attrs["heads"] * block.attrs["head_dim"]
        for value in block.inputs[:3]:
            assert pruned.shape(value)[-1] == width
            assert pruned.shape(pruned.producer(value).inputs[1]) == (32, width)
        out_proj = pruned.consumers(block.outputs[0])[0]
        assert pruned.shape(out_proj.inputs[1]) == (width, 32)
    assert report["after"]["params"] < 0.7 * report["before"]["params"]  # the must-show's 30% cut
    assert report["after"]["macs"] == sum(node_macs(pruned, n) for n in pruned.nodes) < report["before"]["macs"]
    for graph_ in (pruned, result.unreconstructed):  # both run, with the narrower tensors
        assert run_stack(graph_, _calib(graph, 2)).shape == (2, 1, 10)


def test_channel_importance_is_the_exact_change_of_the_block_output(digits) -> None:
    """Δ = a_c · W_c is what removing channel c does to the FFN output; the importance is its energy over the
    block output's, so measuring it by removal must give the same number."""
    graph, calib, _ = digits
    _, ffns = find_sublayers(graph)
    scores = importance(graph, ffns[:1], calib[:8])[0]
    ffn = ffns[0]
    full = [run(graph, {graph.inputs[0]: s}, keep=[ffn.follow, ffn.block_output]) for s in calib[:8]]
    energy = sum(float(np.square(v[ffn.block_output].astype(np.float64)).sum()) for v in full)
    for channel in (0, 17, 63):
        trial = graph.copy()
        remove_units(trial, ffn, [c for c in range(ffn.units) if c != channel])
        change = sum(float(np.square(run(trial, {trial.inputs[0]: s}, keep=[ffn.follow])[ffn.follow]
                                     .astype(np.float64) - v[ffn.follow]).sum()) for s, v in zip(calib[:8], full))
        # float32 forward passes against the float64 formula: agreement to ~1e-5 relative
        assert change / energy == pytest.approx(scores[channel], rel=1e-4)


def test_reconstruction_lowers_every_layer_error_and_recovers_agreement(digits) -> None:
    _, _, result = digits
    rows = result.report["reconstruction"]
    assert [r["role"] for r in rows[:1]] == ["follows pruned units"] and len(rows) >= 4
    assert all(r["error_after"] <= r["error_before"] for r in rows)
    assert any(r["refit"] and r["error_after"] < 0.5 * r["error_before"] for r in rows)
    agreement = result.report["calib_agreement"]
    assert agreement["with_reconstruction"] > agreement["without_reconstruction"]


def test_the_last_head_of_a_block_always_stays(digits) -> None:
    graph, calib, _ = digits
    result = prune_graph(graph, calib[:8], 0.75, 0.0)  # 6 of 8 heads: exactly one left in each block
    assert [b["heads_after"] for b in result.report["heads"]] == [1, 1]
    with pytest.raises(UserError, match=r"would remove 7 of 8 heads, but every attention block keeps a head"):
        prune_graph(graph, calib[:8], 0.9, 0.0)


@pytest.mark.parametrize("name", list(EXPORTERS))
def test_every_exporter_prunes_and_quantizes(name) -> None:
    graph = import_model(EXPORTERS[name])
    calib = _calib(graph, 24)
    result = prune_graph(graph, calib, 0.5, 0.5)
    assert result.report["after"]["params"] < 0.7 * result.report["before"]["params"]
    quantized = quantize_graph(result.graph, calib, 8)  # int4 and int32 builds of pruned graphs: tests below
    assert run_quantized(quantized, calib[:2]).shape[0] == 2
    causal = [node_pattern(n).causal for n in result.graph.nodes if n.op == "Attention"]
    assert causal == ([True, True] if "causal" in name else [False, False])


def test_a_prequantized_model_is_pruned_on_float_weights_and_requantized() -> None:
    model = FIXTURES / "models" / "quant_qdq.onnx"
    options = BuildOptions(calib=str(CALIB), prune_heads=0.5, prune_ffn=0.5, prune_finetune=NO_FINETUNE)
    compilation = compile_model(model, options, until="quantize")
    assert "pre-quantized model" in compilation.reports["pruning"]["notes"][0]
    assert [n.attrs["heads"] for n in compilation.graph.nodes if n.op == "QAttention"] == [
        b["heads_after"] for b in compilation.reports["pruning"]["heads"]]


def test_pruning_with_local_attention(digits_test) -> None:
    images, labels = digits_test
    for bits in (32, 8):
        options = BuildOptions(bits=bits, calib=str(CALIB), prune_heads=0.5, attention="local:8,global:1",
                               prune_finetune=NO_FINETUNE)
        result = evaluate(MODEL, images[:40], labels[:40], options, np.load(CALIB)[:24])
        assert result["attention"]["chosen"] == "local:8,global:1"
        accuracy = result["pruning"]["accuracy"]
        assert set(accuracy) == {"unpruned", "without_reconstruction", "least_squares_only", "with_reconstruction"}
        assert result["pruning"]["after"]["flash_bytes"] < result["pruning"]["before"]["flash_bytes"]


def _small_calib(directory, count: int) -> str:
    path = directory / f"calib{count}.npy"
    np.save(path, np.load(CALIB)[:count])
    return str(path)


def test_pruned_host_builds_are_bit_exact(tmp_path) -> None:
    from mcu_attn.build import build

    calib = _small_calib(tmp_path, 24)
    for bits in (8, 4):
        options = BuildOptions(bits=bits, calib=calib, prune_heads=0.5, prune_ffn=0.5, check_samples=4,
                               prune_finetune=NO_FINETUNE)
        report = build(MODEL, "host", tmp_path / f"q{bits}", options)
        assert report["host_check"]["bit_exact"], report["host_check"]
        assert report["pruning"]["after"]["flash_bytes"] < report["pruning"]["before"]["flash_bytes"]
        assert report["options"]["prune_heads"] == 0.5 and report["params"] == report["pruning"]["after"]["params"]


@pytest.mark.parametrize("args, phrase", [
    (["--prune-heads", "1", "--calib", CALIB], "--prune-heads 1: give a fraction in [0, 1)"),
    (["--prune-ffn", "-0.1", "--calib", CALIB], "--prune-ffn -0.1: give a fraction in [0, 1)"),
    (["--prune-heads", "nan", "--calib", CALIB], "--prune-heads nan: give a fraction"),
    (["--prune-heads", "0.95", "--calib", CALIB], "would remove 7 of 8 heads"),
    (["--prune-ffn", "0.5", "--bits", "32"], "pass --calib C.npy"),
    (["--prune-ffn", "0.5", "--prune-finetune", "-1", "--calib", CALIB], "--prune-finetune -1: give a number of steps"),
])
def test_bad_ratios_are_one_line_errors(tmp_path, args, phrase) -> None:
    result = run_cli("build", MODEL, "--target", "host", "-o", tmp_path / "out", *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and phrase in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_model_without_attention_or_ffn_is_refused(tmp_path) -> None:
    from test_bad_input import _tiny_model

    model = _tiny_model(tmp_path / "tiny.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal((8, 1, 4, 4)).astype(np.float32))
    for flag, phrase in (("--prune-heads", "no attention block whose heads can be removed"),
                         ("--prune-ffn", "no FFN whose channels can be removed")):
        result = run_cli("eval", model, "--data", tmp_path / "calib.npy", "--calib", tmp_path / "calib.npy",
                         flag, "0.5")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and phrase in lines[0], result.stderr


def test_eval_json_reports_the_pruning(tmp_path, digits_test) -> None:
    images, labels = digits_test
    np.save(tmp_path / "x.npy", images[:150])
    np.save(tmp_path / "y.npy", labels[:150])
    result = run_cli("eval", MODEL, "--calib", _small_calib(tmp_path, 64), "--data", tmp_path / "x.npy",
                     "--labels", tmp_path / "y.npy", "--prune-heads", "0.5", "--prune-ffn", "0.5", "--json")
    assert result.returncode == 0, result.stderr
    pruning = json.loads(result.stdout)["pruning"]
    assert {"heads", "channels", "before", "after", "reconstruction", "accuracy"} <= set(pruning)
    assert {"params", "macs", "flash_bytes"} <= set(pruning["before"]) and {"params", "macs", "flash_bytes"} <= set(
        pruning["after"])
    accuracy = pruning["accuracy"]
    assert accuracy["least_squares_only"] > accuracy["without_reconstruction"] + 0.05  # the refit is what helps
    tuned = pruning["finetune"]
    assert {"applied", "objective", "held_out_samples", "step_kept"} <= set(tuned)
    if tuned["applied"]:
        assert tuned["held_out_loss_after"] < tuned["held_out_loss_before"]
    else:  # nothing kept: the model is the least-squares refit
        assert accuracy["with_reconstruction"] == accuracy["least_squares_only"]


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
def test_pruned_firmware_is_bit_exact_and_saves_instructions_with_the_macs(tmp_path, digits_test) -> None:
    from mcu_attn.build import build
    from mcu_attn.sim.run import SimOptions, simulate

    images, labels = digits_test
    calib = _small_calib(tmp_path, 48)
    results = {}
    for name, ratio in (("full", 0.0), ("pruned", 0.5)):
        options = BuildOptions(calib=calib, prune_heads=ratio, prune_ffn=ratio, prune_finetune=NO_FINETUNE)
        build(MODEL, "stm32", tmp_path / name, options)
        results[name] = simulate(str(tmp_path / name), images[:3], labels[:3], SimOptions())
    full, pruned = results["full"], results["pruned"]
    assert full["bit_exact"] and pruned["bit_exact"]
    before = {layer["name"]: layer for layer in full["layers"]}
    for layer in pruned["layers"]:
        if layer["macs"] < before[layer["name"]]["macs"]:
            assert layer["instructions"] < before[layer["name"]]["instructions"], layer["name"]
    matmuls = [layer for layer in full["layers"] if layer["op"] == "QLinear"]
    per_mac = sum(layer["instructions"] for layer in matmuls) / sum(layer["macs"] for layer in matmuls)
    saved = (full["instructions"] - pruned["instructions"]) / (full["macs"] - pruned["macs"])
    # each MAC removed saves about what a MAC costs in the matmul kernels: more where a removed output also
    # drops its requantization, less where a layer keeps its outputs and only its reductions get shorter
    assert 0.75 * per_mac < saved < 1.5 * per_mac, (saved, per_mac)
