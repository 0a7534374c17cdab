"""Token pruning and early exit (docs/dynamic.md): the graph rewrites, their choices on calibration data, the
generated code, the host build and the firmware in the emulator against the numpy reference.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from support import DIGITS, run_cli

from mcu_attn.api import import_model
from mcu_attn.data import check_stack, top1
from mcu_attn.errors import UserError
from mcu_attn.options import BuildOptions
from mcu_attn.passes.early_exit import ExitChoice, add_exit, fit_head
from mcu_attn.passes.token_prune import PruneChoice, macs, prune_tokens
from mcu_attn.reference.dynamic import run_exits
from mcu_attn.reference.interpreter import run_stack

MODEL = DIGITS / "digits_vit.onnx"
CALIB = DIGITS / "data" / "calib.npy"
needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc not installed (scripts/install-system-deps.sh)")


@pytest.fixture(scope="module")
def graph():
    return import_model(MODEL)


@pytest.fixture(scope="module")
def samples(graph, digits_test):
    return check_stack(graph, digits_test[0][:40], "data").astype(np.float32)


def test_choices_parse_and_refuse():
    assert PruneChoice.parse("auto").auto and PruneChoice.parse("6,after:1") == PruneChoice(False, 6, 1)
    assert ExitChoice.parse("0.9") == ExitChoice(False, 0.9, 0) and ExitChoice.parse("auto").auto
    for bad in ("x", "-1", "3,after:", "3,before:1"):
        with pytest.raises(UserError):
            PruneChoice.parse(bad)
    for bad in ("0", "1.5", "abc", "0.9,after:-1"):
        with pytest.raises(UserError):
            ExitChoice.parse(bad)


def test_pruning_after_the_last_attention_keeps_the_outputs(graph, samples):
    """The output reads only the class token, and after the last attention every op works per token: keeping no
    other token leaves the float outputs as they were (the MLP and the final norm then run on one token)."""
    pruned = prune_tokens(graph, 1, 0)
    assert pruned.shape(pruned.outputs[0]) == graph.shape(graph.outputs[0])
    assert sum(n.op == "TokenSelect" for n in pruned.nodes) == 1
    # the same float32 arithmetic per token on fewer rows: equal up to the last bits of matrix products
    np.testing.assert_allclose(run_stack(pruned, samples), run_stack(graph, samples), rtol=0, atol=1e-5)


def test_pruning_after_block_0_runs_block_1_on_fewer_tokens(graph, samples):
    pruned = prune_tokens(graph, 0, 5)
    second = [n for n in pruned.nodes if n.op == "Attention"][1]
    assert pruned.shape(second.inputs[0])[-2] == 6  # the class token and 5 others
    assert macs(pruned) < macs(graph)
    outputs = run_stack(pruned, samples)
    assert outputs.shape == run_stack(graph, samples).shape and np.isfinite(outputs).all()


def test_pruning_refusals(graph):
    with pytest.raises(UserError, match="fewer than 16"):
        prune_tokens(graph, 0, 16)
    with pytest.raises(UserError, match="2 attention blocks"):
        prune_tokens(graph, 2, 1)


def test_exit_threshold_extremes(graph, samples):
    """A threshold no softmax reaches below 1 never exits (the outputs are the model's); one at 1/C always does
    (the outputs are the head's)."""
    weight, bias = np.zeros((32, 10), np.float32), np.zeros(10, np.float32)
    never = add_exit(graph, 0, 1.0, weight, bias + np.arange(10, dtype=np.float32) * 0.1)
    outputs, exits = run_exits(never, samples)
    assert not exits.any()
    np.testing.assert_array_equal(outputs, run_stack(graph, samples))
    always = add_exit(graph, 0, 0.1, weight, bias)
    outputs, exits = run_exits(always, samples)
    assert exits.all() and np.all(outputs == 0.0)


def test_fit_head_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((300, 16)).astype(np.float32)
    centred = features - features.mean(axis=1, keepdims=True)
    normalised = centred / np.sqrt((centred ** 2).mean(axis=1, keepdims=True) + 1e-5)
    truth = rng.standard_normal((16, 4))
    targets = normalised @ truth + 0.5
    weight, bias = fit_head(features, targets)
    predicted = normalised @ weight + bias
    # ridge shrinks the weights a little (RIDGE = 1e-2 of the mean diagonal): within 2% of the targets' spread
    assert np.abs(predicted - targets).max() < 0.02 * np.abs(targets - targets.mean()).max()


@pytest.fixture(scope="module")
def exit_compilation():
    from mcu_attn.compiler import compile_model

    return compile_model(MODEL, BuildOptions(calib=str(CALIB), early_exit="auto", token_prune="0,after:1"),
                         until="quantize")


def test_auto_exit_within_tolerance_on_calibration(exit_compilation):
    report = exit_compilation.reports["early_exit"]
    assert report["chosen"] is not None and report["changed"] <= report["tolerance"]
    assert 0.0 < report["exit_fraction"] < 1.0 and report["expected_macs"] < report["macs_full"]
    assert len(report["tried"]) > 1 and exit_compilation.reports["token_prune"]["keep"] == 0
    ops = [n.op for n in exit_compilation.graph.nodes]
    assert "QEarlyExit" in ops and "QTokenSelect" in ops


def test_integer_exits_follow_the_head(exit_compilation, digits_test):
    graph = exit_compilation.graph
    x = check_stack(graph, digits_test[0][:60], "data")
    from mcu_attn.reference.dynamic import run_float_exits

    outputs, exits = run_float_exits(graph, x)
    assert 0 < exits.sum() < len(exits)
    assert (top1(outputs) == digits_test[1][:60]).mean() > 0.85


def test_generated_code_returns_early(exit_compilation):
    from mcu_attn.compiler import Compilation

    compilation = Compilation(MODEL, exit_compilation.options, exit_compilation.calib).run("emit")
    model_c = compilation.project.files["model.c"].decode()
    assert "int32_t ma_last_exit;" in model_c and "ma_early_exit_s8(" in model_c
    assert "ma_last_exit = 1;\n        return;" in model_c
    assert "extern int32_t ma_last_exit;" in compilation.project.files["model.h"].decode()


def test_host_build_is_bit_exact_with_exits(tmp_path):
    from mcu_attn.build import build

    report = build(MODEL, "host", tmp_path / "host",
                   BuildOptions(calib=str(CALIB), early_exit="0.9", token_prune="4,after:0", check_samples=40))
    assert report["host_check"]["bit_exact"] and report["host_check"]["samples"] == 40
    assert report["dynamic"]["exit_symbol"] == "ma_last_exit"


def test_float_builds_are_refused(tmp_path):
    result = run_cli("build", MODEL, "--target", "host", "-o", tmp_path / "f", "--bits", "32", "--calib", CALIB,
                     "--early-exit", "0.9")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--bits 8 or 4" in result.stderr
    assert not (tmp_path / "f").exists()


def test_bad_options_are_one_line_errors(tmp_path):
    for flag, value in (("--token-prune", "x"), ("--early-exit", "2"), ("--token-prune", "99")):
        result = run_cli("eval", MODEL, "--data", CALIB, "--calib", CALIB, flag, value)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("mcu-attn: error: ")


@needs_gcc
def test_firmware_exits_match_the_reference(tmp_path, digits_test):
    """STM32F407 (Cortex-M4): the firmware's outputs and the exit it takes, sample by sample, equal the numpy
    reference's; an early-exited input runs fewer instructions than a full one."""
    from mcu_attn.build import build
    from mcu_attn.sim.run import SimOptions, simulate

    build(MODEL, "stm32f407", tmp_path / "fw", BuildOptions(calib=str(CALIB), early_exit="0.95",
                                                           token_prune="4,after:0"))
    x, y = digits_test
    result = simulate(str(tmp_path / "fw"), x[:24], y[:24], SimOptions(profile_per_class=2))
    assert result["bit_exact"] and result["accuracy"] == result["reference_accuracy"]
    mean = result["mean"]
    assert mean["exits_match"] and 0.0 < mean["exit_fraction"] < 1.0
    rows = {row["exit"]: row for row in mean["classes"]}
    assert rows[1]["instructions"] < rows[0]["instructions"]
    assert rows[1]["cycles"] < rows[0]["cycles"]
    assert min(rows[0]["instructions"], rows[1]["instructions"]) <= mean["mean_instructions"] <= max(
        rows[0]["instructions"], rows[1]["instructions"])
